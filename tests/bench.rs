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
        hub.publish_url("/publish?topic=bench"),
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

/// A fake server on a free port: reads each connection's first request head, writes `answer`,
/// then closes the connection. Runs until the test process ends.
fn answer_once_and_close(answer: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = conn.write_all(answer);
        }
    });
    addr
}

/// 20 subscribers, 300 events from 3 publishers: the report, once it says all 6,000 arrived.
fn twenty_subscribers_get_every_event(hub: &HubProcess, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--subscribers",
        "20",
        "--events",
        "300",
        "--publishers",
        "3",
    ];
    args.extend_from_slice(extra);
    let (code, r, err) = bench(hub, &args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["subscribers"]["connected"], 20, "{r}");
    assert_eq!(r["events"]["published"], 300);
    all_delivered(&r, 6000);
    r
}

#[test]
fn bench_counts_every_delivery() {
    let hub = HubProcess::start(&[]);
    let r = twenty_subscribers_get_every_event(&hub, &[]);
    assert_eq!(r["connections"], "fresh");
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
        .args(["--publish-url", &hub.publish_url("/publish?topic=b")])
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
        &hub.publish_url("/publish?topic=bench"),
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
fn a_base_url_means_the_hubs_events_and_publish() {
    // Publishing on the base URL's own listener: a hub that allows it there.
    let hub = HubProcess::start(&["--publish-open"]);
    for base in [hub.url(""), hub.url("/")] {
        let (code, r, err) = run_bench(&["--url", &base, "--subscribers", "4", "--events", "30"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(r["url"], hub.url("/events?topic=bench"));
        assert_eq!(r["publish_url"], hub.url("/publish?topic=bench"));
        assert_eq!(r["subscribers"]["connected"], 4);
        all_delivered(&r, 120);
    }
    // With several topics, each subscriber and each event gets its own.
    let (code, r, err) = run_bench(&[
        "--url",
        &hub.url(""),
        "--topics",
        "2",
        "--subscribers",
        "4",
        "--events",
        "30",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["url"], hub.url("/events?topic=bench{topic}"));
    all_delivered(&r, 60);
}

#[test]
fn a_hub_that_wants_a_token_stops_the_bench_with_one_line() {
    let hub = HubProcess::start(&["--publish-token", "s3cret"]);
    let base = hub.url("");
    let (code, r, err) = run_bench(&["--url", &base, "--subscribers", "2", "--events", "10"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(r, serde_json::Value::Null);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for needed in [
        "answered 401",
        "token",
        "--header 'Authorization: Bearer",
        "--publish-url",
        "http://127.0.0.1:8081/publish",
    ] {
        assert!(err.contains(needed), "{needed}: {err}");
    }
    // With the token it runs.
    let (code, r, err) = run_bench(&[
        "--url",
        &base,
        "--subscribers",
        "2",
        "--events",
        "10",
        "--header",
        "Authorization: Bearer s3cret",
    ]);
    assert_eq!(code, Some(0), "{err}");
    all_delivered(&r, 20);
    // 403 too, from any server.
    let addr = answer_once_and_close(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    let (code, _, err) = run_bench(&[
        "--subscribers",
        "0",
        "--events",
        "5",
        "--publish-url",
        &format!("http://{addr}/publish"),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("answered 403"), "{err}");
}

#[test]
fn streams_on_reused_connections() {
    let hub = HubProcess::start(&[]);
    let r = twenty_subscribers_get_every_event(&hub, &["--reuse-connection"]);
    assert_eq!(r["connections"], "reused");
    assert_eq!(r["first_request"], "/healthz");
    assert_eq!(r["subscribers"]["failed_total"], 0, "{r}");
    // Any path: the viewer page, as a browser loads it before its EventSource.
    let (code, r, err) = bench(
        &hub,
        &[
            "--reuse-connection",
            "/",
            "--subscribers",
            "3",
            "--events",
            "20",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["first_request"], "/");
    all_delivered(&r, 60);
    // The report's first line says which scenario it measured.
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args([
            "bench",
            "--hold",
            "0",
            "--subscribers",
            "1",
            "--events",
            "1",
        ])
        .args(["--url", &hub.url(""), "--reuse-connection"])
        .args(["--publish-url", &hub.publish_url("/publish?topic=bench")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().next().is_some_and(|l| l
            .ends_with("each stream on a reused connection (GET /healthz first, then the stream)")),
        "{table}"
    );
    // A first request that fails fails its subscriber, saying so.
    let (code, r, err) = bench(
        &hub,
        &[
            "--reuse-connection",
            "/nope",
            "--subscribers",
            "3",
            "--events",
            "5",
            "--drain-timeout",
            "0.5",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["subscribers"]["connected"], 0);
    assert_eq!(
        r["subscribers"]["failed"],
        serde_json::json!({"GET /nope answered 404": 3})
    );
}

#[test]
fn a_connection_the_server_did_not_keep_fails_its_subscriber() {
    // Closed silently after the first answer: the stream's request finds it gone.
    let silent = answer_once_and_close(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    // Closed with notice: the bench does not even try.
    let said = answer_once_and_close(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    );
    for (addr, why) in [
        (silent, "closed by the server after GET /healthz"),
        (said, "GET /healthz: the server closes the connection"),
    ] {
        let (code, r, err) = run_bench(&[
            "--url",
            &format!("http://{addr}/events"),
            "--reuse-connection",
            "--subscribers",
            "4",
            "--events",
            "0",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(r["subscribers"]["connected"], 0, "{r}");
        assert_eq!(r["subscribers"]["failed"], serde_json::json!({ why: 4 }));
    }
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
    let (code, _, err) = bench(&hub, &["--reuse-connection", "healthz"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--reuse-connection"), "{err}");
}

#[test]
fn the_mercure_scenario_runs_against_the_hub_with_tokens() {
    let key = "bench-mercure-secret";
    let hub = HubProcess::start(&["--jwt-key", key]);
    let base = hub.url("");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            &base,
            "--mercure",
            "--jwt-key",
            key,
            "--subscribers",
            "4",
            "--events",
            "30",
        ];
        args.extend_from_slice(extra);
        run_bench(&args)
    };
    // A URI template, with private updates: subscribers hold tokens that allow them.
    let (code, r, err) = run(&["--private"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["scenario"]["protocol"], "mercure", "{r}");
    assert_eq!(r["scenario"]["private"], true, "{r}");
    all_delivered(&r, 120);
    // An exact selector.
    let (code, r, err) = run(&["--mercure-selector", "https://example.com/bench/1"]);
    assert_eq!(code, Some(0), "{err}");
    all_delivered(&r, 120);
}
