//! As `tests/vanish.rs`, over TLS: HTTP/1.1 and HTTP/2 clients whose packets stop (no FIN, no
//! RST) lose their streams within seconds.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::support::*;

const INSIDE: &str = "SSEHUB_TEST_TLS_INSIDE_NETNS";

/// As `tests/vanish.rs`, over TLS: HTTP/1.1 and HTTP/2 clients whose packets stop (no FIN, no
/// RST) lose their streams within seconds. Runs itself again in a network namespace of its own,
/// so that dropping packets (iptables on that namespace's loopback) touches nothing else.
#[test]
fn vanished_tls_clients_lose_their_streams_soon() {
    if std::env::var_os(INSIDE).is_some() {
        return tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(vanish_inside());
    }
    crate::common::run_in_network_namespace(
        "ssehub-tls-vanish",
        "vanish::vanished_tls_clients_lose_their_streams_soon",
        INSIDE,
    );
}

async fn vanish_inside() {
    let dir = temp_dir("vanish");
    let cert = make_cert(&dir, "a");
    let mut args = tls_args(&cert);
    args.extend(["--heartbeat".into(), "1".into()]);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // One HTTP/2 connection with two streams, and one HTTP/1.1 connection with one.
    let mut gone_ports = Vec::new();
    let tls = tls_connect(&hub.addr, &[&cert], vec![b"h2".to_vec()])
        .await
        .unwrap();
    gone_ports.push(tls.get_ref().0.local_addr().unwrap().port());
    let mut h2 = h2_handshake(TokioIo::new(tls)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(h2_get(&mut h2, "localhost", "https", "/events?topic=v").await);
    }
    let tls = tls_connect(&hub.addr, &[&cert], vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    gone_ports.push(tls.get_ref().0.local_addr().unwrap().port());
    let (mut h1, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/events?topic=v")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h1.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut normal = Sse::from_reqwest(
        reqwest_client(&cert, true)
            .get(format!("https://localhost:{}/events?topic=v", port(&hub)))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 4);
    for port in &gone_ports {
        let out = Command::new("iptables")
            .args([
                "-A",
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                "--sport",
                &port.to_string(),
                "-j",
                "DROP",
            ])
            .output()
            .expect("iptables");
        assert!(
            out.status.success(),
            "iptables: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let start = std::time::Instant::now();
    while hub_metric(&hub, &cert, "ssehub_clients").await != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vanished clients still hold their slots"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.publish_ok("?topic=v", "still here").await;
    assert_eq!(normal.event().await.data, "still here");
    drop((held, response));
    let _ = std::fs::remove_dir_all(&dir);
}
