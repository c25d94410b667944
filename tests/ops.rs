//! Operations: `/readyz` for load balancers, structured logs, `--version` and `check-config`,
//! each against the real binary (and a real `redis-server` for cluster mode).

mod common;
#[cfg(feature = "cluster")]
mod redis_server;

use std::time::{Duration, Instant};

use common::*;

/// `GET path`: status and body, or `None` when the hub does not answer (not listening).
async fn get(url: &str) -> Option<(u16, String)> {
    let resp = client()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

/// Polls `url` until `ok` holds (or WAIT passes); returns the last answer.
async fn poll(url: &str, ok: impl Fn(&Option<(u16, String)>) -> bool) -> Option<(u16, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get(url).await;
        if ok(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_while_serving_and_not_once_shutting_down() {
    let mut hub = HubProcess::start(&[]);
    assert_eq!(
        get(&hub.url("/readyz")).await,
        Some((200, "ok\n".to_string()))
    );
    assert_eq!(get(&hub.url("/healthz")).await.map(|a| a.0), Some(200));
    // A stream is open when the signal comes; from then on no load balancer may see "ready".
    let _stream = hub.subscribe("?topic=a").await.opened().await;
    let pid = hub.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let after = poll(&hub.url("/readyz"), |a| {
        a.as_ref().is_none_or(|(s, _)| *s != 200)
    })
    .await;
    assert!(
        after.as_ref().is_none_or(|(s, _)| *s == 503),
        "after SIGTERM: {after:?}"
    );
    let (_, code) = hub.signal_and_wait("0");
    assert_eq!(code, Some(0), "{}", hub.stderr_text());
}

fn signal(hub: &HubProcess, signal: &str) {
    let killed = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// `--shutdown-delay`: after SIGTERM, `/readyz` answers 503 (what a balancer needs to see
/// before the hub goes) while streams, new streams and publishes go on; a second signal ends the
/// wait, and the hub ends its streams and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_delay_fails_readyz_first_and_serves_meanwhile() {
    let mut hub = HubProcess::start(&["--shutdown-delay", "10m"]);
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    signal(&hub, "TERM");
    let answer = poll(&hub.url("/readyz"), |a| {
        a.as_ref().is_none_or(|(s, _)| *s != 200)
    })
    .await;
    assert_eq!(answer, Some((503, "not ready: shutting down\n".into())));
    assert_eq!(get(&hub.url("/healthz")).await.map(|a| a.0), Some(200));
    let mut late = hub.subscribe("?topic=a").await.opened().await;
    hub.publish_ok("?topic=a", "during the delay").await;
    assert_eq!(stream.next_event().await.data, "during the delay");
    assert_eq!(late.next_event().await.data, "during the delay");
    assert!(hub.stderr_text().contains("shutting down in 600s"));
    // An operator's second Ctrl-C: the usual shutdown at once.
    let (_, code) = tokio::task::block_in_place(|| hub.signal_and_wait("INT"));
    assert_eq!(code, Some(0), "{}", hub.stderr_text());
    assert_eq!(stream.next_frame(WAIT).await.unwrap_err(), Stop::Closed);
}

/// Past the delay the hub shuts down by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_shutdown_delay_the_hub_exits_by_itself() {
    let mut hub = HubProcess::start(&["--shutdown-delay", "1"]);
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    signal(&hub, "TERM");
    let (_, code) = tokio::task::block_in_place(|| hub.signal_and_wait("0"));
    assert_eq!(code, Some(0), "{}", hub.stderr_text());
    assert_eq!(stream.next_frame(WAIT).await.unwrap_err(), Stop::Closed);
}

/// Without `--shutdown-delay` the binary stops listening as it drains, so its `503` cannot be
/// seen from outside; the same router mounted in an app that keeps serving shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_hub_answers_503_with_the_reason() {
    let hub = ssehub::Hub::builder().build();
    let app = ssehub::http::router(hub.clone(), ssehub::http::HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        Some((200, "ok\n".into()))
    );
    hub.close();
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        Some((503, "not ready: shutting down\n".into()))
    );
    // Alive all the same.
    assert_eq!(
        get(&format!("{base}/healthz")).await.map(|a| a.0),
        Some(200)
    );
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn not_ready_while_redis_is_down_and_ready_once_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = redis_server::Redis::start_on(port, None);
    let hub = HubProcess::start(&["--redis", &format!("redis://127.0.0.1:{port}")]);
    let url = hub.url("/readyz");
    assert_eq!(get(&url).await, Some((200, "ok\n".into())));
    drop(redis);
    let down = poll(&url, |a| a.as_ref().is_some_and(|(s, _)| *s == 503)).await;
    let (status, reason) = down.expect("the hub answers while Redis is down");
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("Redis"), "{reason}");
    let _redis = redis_server::Redis::start_on(port, None);
    let back = poll(&url, |a| a.as_ref().is_some_and(|(s, _)| *s == 200)).await;
    assert_eq!(back, Some((200, "ok\n".into())));
}

/// Waits until the hub's stderr has a line for which `found` holds; returns it.
async fn log_line(hub: &HubProcess, found: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let line = hub
            .stderr
            .lock()
            .unwrap()
            .iter()
            .find(|l| found(l))
            .cloned();
        if line.is_some() || Instant::now() > deadline {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_logs_with_a_start_line_and_nothing_per_event_at_info() {
    let hub = HubProcess::start(&["--log-format", "json", "--max-clients", "1"]);
    let _one = hub.subscribe("?topic=a").await.opened().await;
    for i in 0..5 {
        hub.publish_ok("?topic=a", &format!("e{i}")).await;
    }
    let refused = client()
        .get(hub.url("/events?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = hub.stderr.lock().unwrap().clone();
    let mut started = None;
    for line in &lines {
        // The plain lines tools read ("ssehub: listening on http://...") stay as they were.
        if line.starts_with("ssehub: ") {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(json["level"].is_string(), "{line}");
        assert!(json["message"].is_string(), "{line}");
        if json["message"] == "ssehub started" {
            started = Some(json);
        }
    }
    let started = started.unwrap_or_else(|| panic!("no start line in {lines:#?}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["listen"], hub.addr.as_str());
    assert_eq!(started["store"], "memory");
    assert_eq!(started["max_clients"], 1);
    assert!(started["protocols"].is_string(), "{started}");
    assert!(
        lines.len() < 8,
        "a line per event or refusal at info: {lines:#?}"
    );
}

#[tokio::test]
async fn with_rust_log_debug_a_refusal_is_logged_with_its_reason() {
    let mut cmd = HubProcess::command(&["--max-clients", "1", "--listen", "127.0.0.1:0"]);
    cmd.env("RUST_LOG", "ssehub=debug");
    let hub = HubProcess::spawn(cmd);
    let _one = hub.subscribe("?topic=a").await.opened().await;
    let refused = client()
        .get(hub.url("/events?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    let line = log_line(&hub, |l| l.contains("refused")).await;
    let line = line.unwrap_or_else(|| panic!("no refusal logged: {}", hub.stderr_text()));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("status=503"), "{line}");
    assert!(line.contains("the hub is full"), "{line}");
    // Streams opening are there too, at debug.
    assert!(log_line(&hub, |l| l.contains("stream opened"))
        .await
        .is_some());
}

#[test]
fn a_bad_rust_log_is_refused_naming_it() {
    let out = bare_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "ssehub=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

#[test]
fn version_names_the_git_commit() {
    let out = bare_command().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let commit = head.unwrap_or_else(|| "unknown".into());
    assert_eq!(
        text.trim(),
        format!("ssehub {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// `ssehub check-config` on a file with this text: exit code, stdout, stderr.
fn check_config(text: &str) -> (Option<i32>, String, String) {
    let file = std::env::temp_dir().join(format!(
        "ssehub-check-{}-{}.toml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&file, text).unwrap();
    let out = bare_command()
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_says_ok_or_the_reason() {
    let (code, out, _) =
        check_config("max-clients = 500\nlog-format = \"json\"\nmax-stream-age = \"30m\"\n");
    assert_eq!((code, out.as_str()), (Some(0), "ok\n"));
    for (text, named) in [
        ("max-clientz = 5\n", "max-clientz"),
        ("max-clients = 0\n", "max-clients"),
        ("max-clients = \"many\"\n", "max-clients"),
        ("log-format = \"xml\"\n", "log-format"),
        ("max-stream-age = \"soon\"\n", "max-stream-age"),
        ("[serve]\nmax-clients = 5\n", "serve"),
        ("max-clients = 5\nmax-clients = 6\n", "max-clients"),
        (
            "redis = \"redis://127.0.0.1:6379\"\ndata-dir = \"/tmp/x\"\n",
            "--redis and --data-dir",
        ),
        (
            "subscribers-need-token = true\n",
            "--subscribers-need-token",
        ),
    ] {
        let (code, out, err) = check_config(text);
        assert_eq!(code, Some(1), "{text:?}: {out} {err}");
        assert!(out.is_empty(), "{text:?}: {out}");
        assert!(err.contains(named), "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let missing = bare_command()
        .args(["check-config", "/nonexistent/ssehub.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// The file the Debian package installs as /etc/ssehub/ssehub.toml.
#[test]
fn the_packaged_config_file_checks() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/ssehub.toml");
    let out = bare_command()
        .args(["check-config", file])
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "ok\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
