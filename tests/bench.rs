//! A smoke run of `ssehub bench` against the real hub: it must count what it claims to count.

mod common;

use std::process::Command;

use common::*;

/// `ssehub bench --json` with short waits and these flags: exit code, report, stderr.
fn run_bench(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["bench", "--json", "--hold", "0.2"])
        .args(if args.contains(&"--drain-timeout") {
            &[][..]
        } else {
            &["--drain-timeout", "5"][..]
        })
        .args(args)
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr)
}

/// The bench against `hub`'s topic `bench`, with its pid.
fn bench(hub: &HubProcess, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let (url, publish, pid) = (
        hub.url("/events?topic=bench"),
        hub.url("/publish?topic=bench"),
        hub.pid().to_string(),
    );
    let mut args = vec!["--url", &url, "--publish-url", &publish, "--pid", &pid];
    args.extend_from_slice(extra);
    run_bench(&args)
}

/// Asserts that every expected delivery arrived, once and in order.
fn all_delivered(r: &serde_json::Value, expected: u64) {
    let d = &r["deliveries"];
    assert_eq!(
        (d["expected"].as_u64(), d["received"].as_u64()),
        (Some(expected), Some(expected)),
        "{r}"
    );
    for k in ["lost", "duplicated", "out_of_order", "malformed"] {
        assert_eq!(d[k], 0, "{k}: {r}");
    }
}

#[test]
fn bench_counts_every_delivery() {
    let hub = HubProcess::start(&[]);
    let (code, r, err) = bench(
        &hub,
        &[
            "--subscribers",
            "20",
            "--events",
            "300",
            "--publishers",
            "3",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["subscribers"]["connected"], 20);
    assert_eq!(r["events"]["published"], 300);
    all_delivered(&r, 6000);
    assert_eq!(r["latency_ms"]["count"], 6000);
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let server = &r["server"];
    assert!(server["connected"]["rss_kib"].as_u64().unwrap() > 0);
    assert!(server["rss_per_connection_bytes"].is_number());
}

#[test]
fn bench_publishes_json_batches_and_forms() {
    let hub = HubProcess::start(&[]);
    let (code, r, err) = bench(
        &hub,
        &[
            "--subscribers",
            "5",
            "--events",
            "1000",
            "--body",
            "json",
            "--batch",
            "100",
            "--rate",
            "5000",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["deliveries"]["received"], 5000);
    assert_eq!(r["deliveries"]["lost"], 0);
    // A form body is raw data to ssehub (it has no form fields): the bench sees malformed data,
    // and says so rather than counting it.
    let (code, r, err) = bench(
        &hub,
        &[
            "--subscribers",
            "2",
            "--events",
            "10",
            "--body",
            "form",
            "--drain-timeout",
            "0.5",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["deliveries"]["malformed"], 20);
    assert_eq!(r["deliveries"]["lost"], 20);
}

#[test]
fn bench_reports_refusals_and_losses() {
    let hub = HubProcess::start(&["--max-clients", "5"]);
    let (code, r, err) = bench(&hub, &["--subscribers", "8", "--events", "50"]);
    assert_eq!(code, Some(0), "{err}");
    let s = &r["subscribers"];
    assert_eq!(s["connected"], 5, "{r}");
    assert_eq!(s["refused_total"], 3, "{r}");
    assert_eq!(s["refused"], serde_json::json!({"503 text/plain": 3}));
    assert_eq!(s["failed_total"], 0, "{r}");
    // The refused do not spoil the run: the five others each got every event (250 distinct
    // deliveries, none twice).
    all_delivered(&r, 250);
    // Publishing to a topic nobody listens on: every expected delivery is lost, and counted so.
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args([
            "bench",
            "--json",
            "--hold",
            "0",
            "--drain-timeout",
            "0.5",
            "--subscribers",
            "3",
            "--events",
            "20",
        ])
        .args(["--url", &hub.url("/events?topic=a")])
        .args(["--publish-url", &hub.url("/publish?topic=b")])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["deliveries"]["lost"], 60);
}

#[test]
fn a_200_that_is_not_an_event_stream_is_refused() {
    let hub = HubProcess::start(&[]);
    let args = [
        "--url",
        &hub.url("/healthz"),
        "--publish-url",
        &hub.url("/publish?topic=bench"),
        "--subscribers",
        "3",
        "--events",
        "5",
        "--drain-timeout",
        "0.5",
    ];
    let (code, r, err) = run_bench(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["subscribers"]["connected"], 0, "{r}");
    assert_eq!(
        r["subscribers"]["refused"],
        serde_json::json!({"200 text/plain": 3})
    );
    assert_eq!(r["deliveries"]["expected"], 0);
    // The table says it the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["bench", "--hold", "0"])
        .args(args)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("0 connected, refused 3 (200 text/plain: 3), failed 0"),
        "{table}"
    );
}

#[test]
fn bench_flags_are_checked() {
    let hub = HubProcess::start(&[]);
    let (code, _, err) = bench(&hub, &["--batch", "5"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--batch"), "{err}");
    let (code, _, err) = bench(&hub, &["--url", "https://127.0.0.1:1/"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--url"), "{err}");
}
