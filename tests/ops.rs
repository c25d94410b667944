//! Operations: `/readyz` for load balancers, structured logs, `--version` and `check-config`,
//! each against the real binary (and a real `redis-server` for cluster mode).

mod common;

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

/// The binary stops listening as it drains, so its `503` cannot be seen from outside; the same
/// router mounted in an app that keeps serving shows it.
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
    let redis = redis::start(port);
    let hub = HubProcess::start(&["--redis", &format!("redis://127.0.0.1:{port}")]);
    let url = hub.url("/readyz");
    assert_eq!(get(&url).await, Some((200, "ok\n".into())));
    drop(redis);
    let down = poll(&url, |a| a.as_ref().is_some_and(|(s, _)| *s == 503)).await;
    let (status, reason) = down.expect("the hub answers while Redis is down");
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("Redis"), "{reason}");
    let _redis = redis::start(port);
    let back = poll(&url, |a| a.as_ref().is_some_and(|(s, _)| *s == 200)).await;
    assert_eq!(back, Some((200, "ok\n".into())));
}

/// A throwaway `redis-server` (as tests/cluster.rs starts it), killed when dropped.
#[cfg(feature = "cluster")]
mod redis {
    use std::io::{Read, Write};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Redis(Child);

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (the Debian package redis-server; scripts/test installs it)");
        let redis = Redis(child);
        let deadline = Instant::now() + super::WAIT;
        while !pong(port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn pong(port: u16) -> bool {
        let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        socket.write_all(b"PING\r\n").is_ok()
            && socket.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}
