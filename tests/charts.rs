//! `ssehub bench --plot` and `ssehub bench compare`: real runs against the real hub, their SVG
//! parsed as XML, and the refusals of files that are not bench reports.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A fresh directory for one test's files, under cargo's scratch directory for tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("charts-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ssehub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(args)
        .output()
        .expect("run ssehub")
}

/// A short bench against `hub` with `--json --plot svg --label label`: the report.
fn bench_run(hub: &HubProcess, label: &str, svg: &Path, extra: &[&str]) -> serde_json::Value {
    let (url, publish, pid) = (
        hub.url("/events?topic=chart"),
        hub.publish_url("/publish?topic=chart"),
        hub.pid().to_string(),
    );
    let svg = svg.to_str().unwrap();
    let mut args = vec![
        "bench",
        "--json",
        "--url",
        &url,
        "--publish-url",
        &publish,
        "--pid",
        &pid,
        "--hold",
        "0.3",
        "--drain-timeout",
        "5",
        "--subscribers",
        "10",
        "--events",
        "600",
        "--rate",
        "1000",
        "--label",
        label,
        "--plot",
        svg,
    ];
    args.extend_from_slice(extra);
    let out = ssehub(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `<text>` of an SVG that must parse as XML, with its root checked to be `<svg>`.
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn assert_has(texts: &[String], wanted: &[&str]) {
    for w in wanted {
        assert!(
            texts.iter().any(|t| t.contains(w)),
            "no text {w:?} in the chart: {texts:?}"
        );
    }
}

#[test]
fn a_run_is_drawn_and_compared_side_by_side() {
    let dir = scratch("run");
    let hub = HubProcess::start(&[]);
    let (first_svg, second_svg) = (dir.join("first.svg"), dir.join("second.svg"));
    let first = bench_run(&hub, "fresh", &first_svg, &[]);
    let second = bench_run(&hub, "reused", &second_svg, &["--reuse-connection"]);

    // The report carries what the chart is drawn from.
    for r in [&first, &second] {
        assert_eq!(r["deliveries"]["received"], 6000, "{r}");
        let t = &r["timeline"];
        assert_eq!(t["interval_ms"], 100);
        let sum = |k: &str| -> u64 {
            t[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        };
        // Every delivery and publish falls in exactly one 100 ms sample.
        assert_eq!(sum("deliveries"), 6000, "{t}");
        assert_eq!(sum("published"), 600, "{t}");
        assert!(
            t["connected"].as_array().unwrap().contains(&10.into()),
            "{t}"
        );
        let cdf = r["latency_cdf"].as_array().unwrap();
        assert!(cdf.len() > 10, "{cdf:?}");
        assert_eq!(cdf.last().unwrap()[1], 1.0);
        assert_eq!(
            cdf.last().unwrap()[0].as_f64(),
            r["latency_ms"]["max"].as_f64()
        );
    }
    assert_eq!(first["label"], "fresh");

    let texts = svg_texts(&first_svg);
    assert_has(
        &texts,
        &[
            "ssehub bench: fresh (10 streams, 600 events published, 0 lost)",
            "Delivery latency distribution (publish to receive)",
            "delivery latency (ms, log scale)",
            "fraction of deliveries at or below",
            "delivery latency CDF",
            "p50 ",
            "p99 ",
            "p99.9 ",
            "Throughput per 100 ms",
            "deliveries/s (left axis)",
            "publishes/s (right axis)",
            "time since the bench started (s)",
            "Connected subscribers",
            "connected subscribers",
            "open streams",
        ],
    );

    // Compare the two recorded reports: ratios printed, chart drawn.
    let (a, b, svg) = (
        dir.join("fresh.json"),
        dir.join("b.json"),
        dir.join("cmp.svg"),
    );
    std::fs::write(&a, first.to_string()).unwrap();
    std::fs::write(&b, second.to_string()).unwrap();
    let out = ssehub(&[
        "bench",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("deliveries/s") && lines[0].contains("ratio"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("fresh ") && lines[1].contains("1.00x"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("reused "), "{stdout}");
    assert!(
        stdout.contains("each run divided by the first (fresh)"),
        "{stdout}"
    );
    let texts = svg_texts(&svg);
    assert_has(
        &texts,
        &[
            "ssehub bench compare: fresh vs reused (ratios to fresh)",
            "Deliveries per second",
            "Events published per second",
            "Memory per idle stream",
            "server RSS per stream (bytes)",
            "Delivery latency (publish to receive)",
            "Publish request latency",
            "(1.00x)",
        ],
    );
    // Each run is a bar label and a legend entry of both distributions.
    for label in ["fresh", "reused"] {
        let n = texts.iter().filter(|t| t.as_str() == label).count();
        assert!(n >= 3, "{label} shown {n} times: {texts:?}");
    }
}

#[test]
fn compare_refuses_files_that_are_not_bench_reports() {
    let dir = scratch("refuse");
    let not_report = dir.join("package.json");
    std::fs::write(&not_report, r#"{"name": "x", "deliveries": 3}"#).unwrap();
    let not_json = dir.join("notes.txt");
    std::fs::write(&not_json, "p99 was 12 ms\n").unwrap();
    let svg = dir.join("never.svg");
    let cases = [
        (&not_report, "not an `ssehub bench --json` report"),
        (
            &not_json,
            "not JSON, so not an `ssehub bench --json` report",
        ),
    ];
    for (file, why) in cases {
        let out = ssehub(&[
            "bench",
            "compare",
            file.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("ssehub: {}: ", file.display())),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{stderr}");
        assert!(!svg.exists(), "no chart from a refused file");
    }
    let missing = dir.join("missing.json");
    let out = ssehub(&["bench", "compare", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("missing.json: cannot read it"), "{stderr}");
    // A chart that could not be written is refused before the run.
    let out = ssehub(&["bench", "--plot", "/nonexistent-dir/run.svg"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--plot /nonexistent-dir/run.svg: no directory"),
        "{stderr}"
    );
    // No file at all is a usage error, and bench flags do not mix with compare.
    assert_eq!(ssehub(&["bench", "compare"]).status.code(), Some(2));
    let mixed = ssehub(&["bench", "--subscribers", "3", "compare", "a.json"]);
    assert_eq!(mixed.status.code(), Some(2));
}

#[test]
fn a_report_recorded_before_the_charts_still_compares_and_plots() {
    // Recorded in the repo by an older bench: percentiles only, no timeline or distributions.
    let old = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/results/issue12/native-exact-1.json"
    );
    let dir = scratch("old");
    let svg = dir.join("old.svg");
    let out = ssehub(&["bench", "plot", old, svg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let texts = svg_texts(&svg);
    assert_has(
        &texts,
        &[
            "ssehub bench: native-exact-1 (1000 streams, 2000 events published, 0 lost)",
            "delivery latency CDF",
            "no timeline in this report",
        ],
    );
    let out = ssehub(&["bench", "compare", old, old]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(stdout.matches("1.00x").count(), 6, "{stdout}");
}
