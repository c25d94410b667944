//! A smoke run of `ssehub bench` against the real hub: it must count what it claims to count.

mod common;

use std::process::Command;

use common::*;

fn bench(hub: &HubProcess, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["bench", "--json", "--hold", "0.2"])
        .args(if extra.contains(&"--drain-timeout") {
            &[][..]
        } else {
            &["--drain-timeout", "5"][..]
        })
        .args(["--url", &hub.url("/events?topic=bench")])
        .args(["--publish-url", &hub.publish_url("/publish?topic=bench")])
        .args(["--pid", &hub.pid().to_string()])
        .args(extra)
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr)
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
    let d = &r["deliveries"];
    assert_eq!(
        (d["expected"].as_u64(), d["received"].as_u64()),
        (Some(6000), Some(6000))
    );
    for k in ["lost", "duplicated", "out_of_order", "malformed"] {
        assert_eq!(d[k], 0, "{k}");
    }
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
    let hub = HubProcess::start(&["--max-clients", "4"]);
    let (code, r, err) = bench(&hub, &["--subscribers", "10", "--events", "50"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["subscribers"]["connected"], 4);
    assert_eq!(r["subscribers"]["refused"]["503"], 6);
    assert_eq!(r["deliveries"]["received"], 200);
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
        .args(["--publish-url", &hub.publish_url("/publish?topic=b")])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["deliveries"]["lost"], 60);
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
