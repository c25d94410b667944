//! TLS and HTTP/2: streams over TLS with HTTP/1.1 and HTTP/2 (reqwest, hyper's h2 client and
//! curl), resume, the certificate reloaded on SIGHUP under an open stream, `--max-clients` over
//! one HTTP/2 connection, a deaf HTTP/2 stream cut off, vanished clients, shutdown, and h2c with
//! `--http2-cleartext`. Certificates are made here (rcgen).

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod support;
mod vanish;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bare_command, WAIT};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn streams_over_tls_with_http1_and_http2_and_resume() {
    let dir = temp_dir("versions");
    let cert = make_cert(&dir, "a");
    let args = tls_args(&cert);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(hub.stderr_text().contains("listening on https://"));
    let url = format!("https://localhost:{}/events?topic=t", port(&hub));
    let mut last_id = String::new();
    for (h2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let client = reqwest_client(&cert, h2);
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version);
        let mut stream = Sse::from_reqwest(response);
        // The opening has gone out once the answer is here; give the subscription a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let published = hub
            .publish_ok("?topic=t", &format!("over {version:?}"))
            .await;
        let event = stream.event().await;
        assert_eq!(event.data, format!("over {version:?}"));
        assert_eq!(Some(event.id.as_str()), published["id"].as_str());
        last_id = event.id;
    }
    // Resume over HTTP/2 from the first event: the second is replayed.
    hub.publish_ok("?topic=t", "after").await;
    let marker = hub.publish_ok("?topic=t", "x").await;
    let client = reqwest_client(&cert, true);
    let response = client
        .get(&url)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut stream = Sse::from_reqwest(response);
    assert_eq!(stream.event().await.data, "after");
    assert_eq!(
        Some(stream.event().await.id.as_str()),
        marker["id"].as_str()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn curl_gets_a_stream_over_http2() {
    let dir = temp_dir("curl");
    let cert = make_cert(&dir, "a");
    let args = tls_args(&cert);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let url = format!("https://localhost:{}/events?topic=c", port(&hub));
    let mut curl = Command::new("curl")
        .args(["-sSN", "--http2", "--max-time", "10"])
        .arg("--cacert")
        .arg(&cert.cert_path)
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let out = curl.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The opening comment says the stream is open.
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), ": ssehub");
    hub.publish_ok("?topic=c", "to curl").await;
    let data = (0..5)
        .filter_map(|_| rx.recv_timeout(WAIT).ok())
        .find(|l| l.starts_with("data:"));
    assert_eq!(data.as_deref(), Some("data: to curl"));
    let _ = curl.kill();
    let _ = curl.wait();
    // The same over HTTP/2, checked by curl's own report on a plain request.
    let version = Command::new("curl")
        .args(["-s", "--http2", "-o", "/dev/null", "-w", "%{http_version}"])
        .arg("--cacert")
        .arg(&cert.cert_path)
        .arg(format!("https://localhost:{}/healthz", port(&hub)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout), "2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_and_open_streams_keep_going() {
    let dir = temp_dir("reload");
    let first = make_cert(&dir, "first");
    let second = make_cert(&dir, "second");
    // The hub reads the files at these paths; a renewal overwrites them.
    let cert_path = dir.join("live.crt");
    let key_path = dir.join("live.key");
    std::fs::copy(&first.cert_path, &cert_path).unwrap();
    std::fs::copy(&first.key_path, &key_path).unwrap();
    let hub = start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let both = [&first, &second];
    let (mut old, served) = h2_over_tls(&hub.addr, &both).await;
    assert_eq!(served, first.der);
    let response = h2_get(&mut old, "localhost", "https", "/events?topic=r").await;
    assert_eq!(response.status(), 200);
    let mut stream = Sse::from_hyper(response);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.publish_ok("?topic=r", "before").await;
    assert_eq!(stream.event().await.data, "before");

    std::fs::copy(&second.cert_path, &cert_path).unwrap();
    std::fs::copy(&second.key_path, &key_path).unwrap();
    let pid = hub.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, served) = h2_over_tls(&hub.addr, &both).await;
        if served == second.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client trusting only the old certificate is now refused.
    assert!(tls_connect(&hub.addr, &[&first], vec![]).await.is_err());
    hub.publish_ok("?topic=r", "after").await;
    assert_eq!(stream.event().await.data, "after", "the old stream goes on");

    // A broken file on reload: the certificate served stays, and the log says why.
    std::fs::write(&cert_path, "garbage\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !hub.stderr_text().contains("reload failed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            hub.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hub.stderr_text().contains("no CERTIFICATE block"));
    let (_, served) = h2_over_tls(&hub.addr, &both).await;
    assert_eq!(served, second.der);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn each_http2_stream_takes_a_slot() {
    let dir = temp_dir("slots");
    let cert = make_cert(&dir, "a");
    let mut args = tls_args(&cert);
    args.extend(["--max-clients".into(), "3".into()]);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // One connection, four streams: the fourth finds the hub full.
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
        assert_eq!(response.status(), 200);
        open.push(Sse::from_hyper(response));
    }
    let full = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
    assert_eq!(full.status(), 503);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 3);
    // Closing one stream (not the connection) frees its slot.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
        if response.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn h2c_with_http2_cleartext_and_http1_on_the_same_port() {
    let hub = start(&["--http2-cleartext"]);
    let tcp = TcpStream::connect(&hub.addr).await.unwrap();
    let mut h2 = h2_handshake(TokioIo::new(tcp)).await;
    let response = h2_get(&mut h2, &hub.addr, "http", "/events?topic=h").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let mut stream = Sse::from_hyper(response);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.publish_ok("?topic=h", "cleartext").await;
    assert_eq!(stream.event().await.data, "cleartext");
    // An HTTP/1.1 client on the same port is served too.
    let mut plain = common::EventStream::open(&hub.url("/events?topic=h"), &[])
        .await
        .opened()
        .await;
    hub.publish_ok("?topic=h", "both").await;
    assert_eq!(plain.next_event().await.data, "both");
    assert_eq!(stream.event().await.data, "both");
}

#[test]
fn half_a_tls_pair_or_a_bad_file_is_refused_by_name() {
    let dir = temp_dir("flags");
    let cert = make_cert(&dir, "a");
    let run = |args: &[&str]| {
        let out = bare_command()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert_path = cert.cert_path.to_str().unwrap();
    let key_path = cert.key_path.to_str().unwrap();
    assert!(run(&["--tls-cert", cert_path]).contains("--tls-cert needs --tls-key"));
    assert!(run(&["--tls-key", key_path]).contains("--tls-key needs --tls-cert"));
    // The key given as the certificate, and the certificate as the key.
    let swapped = run(&["--tls-cert", key_path, "--tls-key", cert_path]);
    assert!(
        swapped.contains("--tls-cert") && swapped.contains(key_path),
        "{swapped}"
    );
    let other = make_cert(&dir, "b");
    let mismatched = run(&[
        "--tls-cert",
        cert_path,
        "--tls-key",
        other.key_path.to_str().unwrap(),
    ]);
    assert!(mismatched.contains("--tls-key"), "{mismatched}");
    let both = run(&[
        "--tls-cert",
        cert_path,
        "--tls-key",
        key_path,
        "--http2-cleartext",
    ]);
    assert!(both.contains("--http2-cleartext"), "{both}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deaf_http2_stream_is_cut_off_and_its_neighbour_gets_everything() {
    let dir = temp_dir("deaf");
    let cert = make_cert(&dir, "a");
    let hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // Two streams on one connection: one read, one never read (its window and the hub's buffer
    // for it fill up; only the backlog check can end it).
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let deaf = h2_get(&mut h2, "localhost", "https", "/events?topic=big").await;
    let mut reader =
        Sse::from_hyper(h2_get(&mut h2, "localhost", "https", "/events?topic=big").await);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 2);
    // 24 MiB in 64 KiB events: far more than flow-control windows and buffers hold.
    let chunk = "z".repeat(64 * 1024);
    const EVENTS: usize = 384;
    let publishing = {
        let url = hub.publish_url("/publish?topic=big");
        tokio::spawn(async move {
            let c = common::client();
            for _ in 0..EVENTS {
                let resp = c
                    .post(url.clone())
                    .body(chunk.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        })
    };
    for i in 0..EVENTS {
        let event = reader.try_event(WAIT).await;
        let event = event.unwrap_or_else(|| panic!("event {i}; hub said: {}", hub.stderr_text()));
        assert_eq!(event.data.len(), 64 * 1024, "event {i}");
    }
    publishing.await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub_metric(&hub, &cert, "ssehub_slow_disconnects_total").await < 1
        || hub_metric(&hub, &cert, "ssehub_clients").await != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deaf stream was cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(deaf);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_ends_tls_streams_and_the_hub_exits() {
    let dir = temp_dir("shutdown");
    let cert = make_cert(&dir, "a");
    let mut hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let mut over_h2 =
        Sse::from_hyper(h2_get(&mut h2, "localhost", "https", "/events?topic=d").await);
    let url = format!("https://localhost:{}/events?topic=d", port(&hub));
    let response = reqwest_client(&cert, false).get(&url).send().await.unwrap();
    let mut over_h1 = Sse::from_reqwest(response);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 2);
    let (took, code) = tokio::task::spawn_blocking(move || hub.signal_and_wait("TERM"))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Both bodies end (no event is left to come).
    assert!(over_h2.try_event(WAIT).await.is_none());
    assert!(over_h1.try_event(WAIT).await.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads until the hub closes the connection; how long that took, if within 15 s.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(mut stream: S) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut sink = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(15), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
    .ok()?;
    Some(start.elapsed())
}

#[tokio::test]
async fn connections_that_send_no_request_are_closed_after_the_head_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = temp_dir("silent");
    let cert = make_cert(&dir, "a");
    let tls = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let h2c = start(&["--http2-cleartext"]);
    // TLS done, then nothing: with ALPN http/1.1, with ALPN h2; on h2c: nothing, or half a
    // preface.
    let h1 = tls_connect(&tls.addr, &[&cert], vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    let h2 = tls_connect(&tls.addr, &[&cert], vec![b"h2".to_vec()])
        .await
        .unwrap();
    let silent = TcpStream::connect(&h2c.addr).await.unwrap();
    let mut half = TcpStream::connect(&h2c.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (h1, h2, silent, half) = tokio::join!(
        closed_within(h1),
        closed_within(h2),
        closed_within(silent),
        closed_within(half)
    );
    for (what, took) in [
        ("TLS h1", h1),
        ("TLS h2", h2),
        ("h2c", silent),
        ("half a preface", half),
    ] {
        let took = took.unwrap_or_else(|| panic!("{what}: still open after 15 s"));
        assert!(
            took >= Duration::from_secs(9),
            "{what}: closed after {took:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_bench_measures_streams_over_tls_and_http2() {
    let dir = temp_dir("bench");
    let cert = make_cert(&dir, "a");
    let hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let publish = hub.publish_addr.clone().expect("a publish listener");
    for http2 in [false, true] {
        let mut cmd = bare_command();
        cmd.args(["bench", "--json", "--subscribers", "30", "--events", "40"])
            .args(["--url", &format!("http://localhost:{}", port(&hub))])
            .args([
                "--publish-url",
                &format!("http://{publish}/publish?topic=bench"),
            ])
            .arg("--subscribe-tls")
            .arg(&cert.cert_path);
        if http2 {
            cmd.args(["--subscribe-http2", "--streams-per-connection", "10"]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["subscribers"]["connected"], 30, "{report}");
        assert_eq!(report["deliveries"]["received"], 30 * 40, "{report}");
        assert_eq!(report["deliveries"]["lost"], 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
