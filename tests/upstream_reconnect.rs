//! The upstream relay's reconnecting against tiny TCP servers written here for what a device
//! does not do on demand: stall, send `retry:`, answer `503` with `Retry-After`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ssehub::parse::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A tiny server: each connection's request head and the time it came, answered by `answer`
/// (given the connection's number, from 0).
struct Script {
    addr: String,
    heads: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Script {
    async fn start<F, Fut>(answer: F) -> Script
    where
        F: Fn(usize, TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (mut socket, _) = listener.accept().await.unwrap();
                let head = read_head(&mut socket).await;
                kept.lock()
                    .unwrap()
                    .push((Instant::now(), head.to_ascii_lowercase()));
                tokio::spawn(answer(n, socket));
            }
        });
        Script { addr, heads }
    }

    fn url(&self) -> String {
        format!("http://{}/event", self.addr)
    }

    /// Waits for connection `n` (from 0); its time and head.
    async fn connection(&self, n: usize, within: Duration) -> (Instant, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.heads.lock().unwrap().get(n) {
                return c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no connection {n} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_is_left_and_reconnected() {
    // Accepts, answers the head, then sends nothing, not even a comment; notes when the
    // relay closes its side.
    let closed = Arc::new(Mutex::new(Vec::new()));
    let seen = closed.clone();
    let server = Script::start(move |_, mut socket| {
        let seen = seen.clone();
        async move {
            socket.write_all(STREAM_HEAD).await.unwrap();
            let (_, closed) = read_to_close(&mut socket, Duration::from_secs(30)).await;
            if closed {
                seen.lock().unwrap().push(Instant::now());
            }
        }
    })
    .await;
    let upstream = format!("dev={}", server.url());
    let _hub = HubProcess::start(&["--upstream", &upstream, "--upstream-idle-timeout", "1"]);
    let (first, _) = server.connection(0, WAIT).await;
    let (second, _) = server.connection(1, WAIT).await;
    // Not before the idle timeout; then a backoff (at most 3 s for a first failure).
    let gap = second - first;
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    assert!(gap <= Duration::from_secs(6), "{gap:?}");
    // The stalled connection was closed before the next one opened.
    let closed_at = closed.lock().unwrap().first().copied().expect("closed");
    assert!(closed_at <= second, "one connection at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_retry_after_and_last_event_id_are_honoured() {
    let server =
        Script::start(|n, mut socket| async move {
            let answer: &[u8] = match n {
            // An event with an id and a reconnection time, then the end of the stream.
            0 => b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                   retry: 1500\nid: dev-7\nevent: reading\ndata: 21.5\n\n",
            // Busy: come back in 2 s.
            1 => b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 5\r\n\
                   connection: close\r\n\r\nbusy\n",
            _ => STREAM_HEAD,
        };
            socket.write_all(answer).await.unwrap();
            if n < 2 {
                let _ = socket.shutdown().await;
            } else {
                let _ = read_to_close(&mut socket, Duration::from_secs(30)).await;
            }
        })
        .await;
    let upstream = format!("dev={}", server.url());
    let hub = HubProcess::start(&["--upstream", &upstream]);
    let (first, head) = server.connection(0, WAIT).await;
    assert!(!head.contains("last-event-id"), "{head}");
    assert!(head.contains("accept: text/event-stream"), "{head}");
    let (second, head) = server.connection(1, WAIT).await;
    assert!(
        second - first >= Duration::from_millis(1500),
        "{:?}",
        second - first
    );
    assert!(head.contains("last-event-id: dev-7"), "{head}");
    let (third, head) = server.connection(2, WAIT).await;
    assert!(
        third - second >= Duration::from_secs(2),
        "{:?}",
        third - second
    );
    assert!(head.contains("last-event-id: dev-7"), "{head}");
    // Relayed with its name, data and retry, under the hub's own id.
    let mut stream = hub.subscribe("?topic=dev&tail=100").await.opened().await;
    let mut retry = None;
    let event = loop {
        match stream.next_frame(WAIT).await.unwrap() {
            Frame::Retry(ms) => retry = Some(ms),
            Frame::Event(e) if e.event == "reading" => break e,
            _ => {}
        }
    };
    assert_eq!(event.data, "21.5");
    assert_ne!(event.id, "dev-7");
    assert_eq!(retry, Some(1500));
}
