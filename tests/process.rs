//! The process: flags, env and config file, --help, stdin feed, /healthz, /metrics, signals.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn ssehub(args: &[&str]) -> std::process::Output {
    bare_command().args(args).output().expect("run ssehub")
}

#[test]
fn help_lists_every_flag_with_default_and_env() {
    let out = ssehub(&["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, default) in [
        ("--listen", Some("127.0.0.1:8080")),
        ("--max-clients", Some("10000")),
        ("--history", Some("10000")),
        ("--heartbeat", Some("15")),
        ("--retry", Some("3000")),
        ("--max-body", Some("1048576")),
        ("--publish-token", None),
        ("--stdin", None),
        ("--stdin-topic", Some("default")),
        ("--stdin-event", None),
        ("--when-full", Some("503")),
        ("--max-topics-per-client", Some("64")),
        ("--max-topics-per-event", Some("64")),
        ("--max-backlog", Some("1048576")),
        ("--max-clients-per-ip", Some("0")),
        ("--cors-origin", None),
        ("--batch-window", Some("10")),
        ("--log-level", Some("info")),
        ("--config", None),
    ] {
        let start = help
            .find(&format!("\n      {flag} "))
            .unwrap_or_else(|| panic!("{flag} missing"))
            + 1;
        // The flag's entry runs until the next flag.
        let entry = &help[start..];
        let end = entry[2..].find("\n      --").map_or(entry.len(), |i| i + 2);
        let entry = entry[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let env = format!("SSEHUB_{}", flag[2..].to_uppercase().replace('-', "_"));
        assert!(
            entry.contains(&format!("[env: {env}")),
            "{flag} has no env twin: {entry}"
        );
        if let Some(d) = default {
            assert!(
                entry.contains(&format!("[default: {d}]")),
                "{flag}: {entry}"
            );
        }
    }
}

#[test]
fn a_bad_flag_or_config_is_a_clear_error() {
    let out = ssehub(&["serve", "--max-clients", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-clients"));
    let out = ssehub(&["serve", "--stdin-topic", "a\nb"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdin-topic"));
    let dir = std::env::temp_dir().join(format!("ssehub-bad-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(&file, "max-clients = 5\nmax-clientz = 6\n").unwrap();
    let out = ssehub(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max-clientz") && err.contains("hub.toml"),
        "{err}"
    );
    let out = ssehub(&["serve", "--config", "/nonexistent/hub.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ssehub(&["serve", "--listen", "203.0.113.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_env_beat_file() {
    let dir = std::env::temp_dir().join(format!("ssehub-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(&file, "max-clients = 5\nmax_body = 7\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let start = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = HubProcess::command(&["--config", &file, "--listen", "127.0.0.1:0"]);
        if let Some(v) = env {
            cmd.env("SSEHUB_MAX_CLIENTS", v);
        }
        if let Some(v) = flag {
            cmd.args(["--max-clients", v]);
        }
        HubProcess::spawn(cmd)
    };
    assert_eq!(start(None, None).metric("ssehub_max_clients").await, 5);
    assert_eq!(start(Some("6"), None).metric("ssehub_max_clients").await, 6);
    assert_eq!(
        start(Some("6"), Some("7"))
            .metric("ssehub_max_clients")
            .await,
        7
    );
    // The file's max_body applies (snake_case keys work too).
    let hub = start(None, None);
    assert_eq!(hub.publish_raw("", "12345678").await.0, 413);
    assert_eq!(hub.publish_raw("", "1234567").await.0, 200);
    // Env alone, no file.
    let mut cmd = HubProcess::command(&["--listen", "127.0.0.1:0"]);
    cmd.env("SSEHUB_MAX_CLIENTS", "9");
    assert_eq!(HubProcess::spawn(cmd).metric("ssehub_max_clients").await, 9);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let hub = HubProcess::start(&[]);
    let resp = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().trim(), "ok");
    let _s = hub.subscribe("").await.opened().await;
    hub.publish_ok("", "x").await;
    assert_eq!(hub.metric("ssehub_clients").await, 1);
    assert_eq!(hub.metric("ssehub_published_total").await, 1);
    assert_eq!(hub.metric("ssehub_rejected_total").await, 0);
    assert_eq!(hub.metric("ssehub_slow_disconnects_total").await, 0);
    let page = client()
        .get(hub.url("/?topic=default"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("/assets/viewer.js"));
    for (path, kind) in [
        ("/assets/viewer.js", "text/javascript"),
        ("/assets/viewer.css", "text/css"),
    ] {
        let asset = client().get(hub.url(path)).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert!(asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let text = asset.text().await.unwrap();
        assert!(kind != "text/javascript" || text.contains("new EventSource("));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_lines_become_events_and_serving_goes_on_after_eof() {
    let mut cmd = HubProcess::command(&[
        "--stdin",
        "--stdin-topic",
        "log",
        "--stdin-event",
        "line",
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd.stdin(Stdio::piped());
    let mut hub = HubProcess::spawn(cmd);
    let mut stream = hub.subscribe("?topic=log").await.opened().await;
    let mut stdin = hub.child.stdin.take().unwrap();
    stdin
        .write_all(b"first line\nsecond\r\n\nthird \xff bytes\nlast")
        .unwrap();
    drop(stdin);
    let events = stream.events(5).await;
    assert_eq!(
        data(&events),
        ["first line", "second", "", "third \u{fffd} bytes", "last"]
    );
    assert!(events.iter().all(|e| e.event == "line"));
    // EOF on stdin does not stop the hub.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hub.publish_ok("?topic=log", "after eof").await;
    assert_eq!(stream.next_event().await.data, "after eof");
}

async fn signal_ends_streams_and_exits_zero(signal: &str) {
    let mut hub = HubProcess::start(&[]);
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(hub.subscribe("").await.opened().await);
    }
    // A raw HTTP/1.0 stream too (its body ends at close).
    let (mut raw, status, _) = raw_get(&hub.addr, "/events", &[]).await;
    assert_eq!(status, 200);
    hub.publish_ok("", "before").await;
    let (took, code) = tokio::task::block_in_place(|| hub.signal_and_wait(signal));
    assert_eq!(code, Some(0), "exit code after {signal}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for mut s in streams {
        assert_eq!(s.next_event().await.data, "before");
        assert_eq!(s.next_frame(WAIT).await.unwrap_err(), Stop::Closed);
    }
    let (bytes, closed) = read_to_close(&mut raw, WAIT).await;
    assert!(closed);
    // The chunked body was ended properly, after the event.
    assert!(String::from_utf8_lossy(&bytes).ends_with("0\r\n\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_and_exits_zero() {
    signal_ends_streams_and_exits_zero("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_streams_and_exits_zero() {
    signal_ends_streams_and_exits_zero("INT").await;
}
