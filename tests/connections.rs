//! Connections, whatever they carry: refusals that reach the client, and floods of connections
//! that never send a request.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Sends `head` and 4 MiB of body before reading anything, as many clients do (Python's
/// `http.client`, a blocking `curl --data-binary @file` without `Expect`), then reads the answer.
/// A hub that closes the connection with the body unread resets it: the client's write fails
/// and it never reads the answer, which says what was wrong.
async fn answer_to_a_big_upload(addr: &str, head: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut upload = head.as_bytes().to_vec();
    upload.resize(upload.len() + (4 << 20), b'x');
    tokio::time::timeout(WAIT, socket.write_all(&upload))
        .await
        .expect("the upload stalled")
        .expect("the upload was cut off before the client could read the answer");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_was_read_reaches_the_client() {
    let hub = HubProcess::start(&["--max-body", "1000"]);
    // Too large, known from the head (413), on the publish listener.
    let publish = hub.publish_addr.clone().unwrap();
    let answer = answer_to_a_big_upload(
        &publish,
        "POST /publish?topic=t HTTP/1.1\r\nhost: x\r\ncontent-length: 50000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("--max-body"), "{answer}");
    // Too large, found while reading a chunked body.
    let answer = answer_to_a_big_upload(
        &publish,
        "POST /publish?topic=t HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1000000\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Anonymous on the main listener (401), refused before the body is looked at.
    let answer = answer_to_a_big_upload(
        &hub.addr,
        "POST /publish?topic=t HTTP/1.1\r\nhost: x\r\ncontent-length: 50000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // A head that never ends (431): the rest of it is still on its way.
    let answer =
        answer_to_a_big_upload(&hub.addr, "GET /events HTTP/1.1\r\nhost: x\r\nx-filler: ").await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
}

/// A connection from `source` to `addr` that sends nothing.
async fn silent(source: &str, addr: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().ok()?).ok()?;
    socket.connect(addr).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_silent_connections_leave_real_clients_working() {
    ssehub::http::raise_open_file_limit();
    let hub = HubProcess::start(&[
        "--max-pending-connections",
        "1000",
        "--max-pending-per-ip",
        "100",
    ]);
    let addr: SocketAddr = hub.addr.parse().unwrap();
    let before = hub.rss_kib();

    // 5,000 silent connections from one address: past 100 of them, the hub says 429.
    let mut flood = Vec::new();
    for _ in 0..5000 {
        if let Some(s) = silent("127.0.0.3", addr).await {
            flood.push(s);
        }
    }
    assert!(flood.len() > 4000, "connected {}", flood.len());
    let mut told = 0;
    for s in flood.iter_mut().rev().take(50) {
        let (bytes, _) = read_to_close(s, Duration::from_secs(2)).await;
        if String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 429") {
            told += 1;
        }
    }
    assert!(told > 40, "{told} of the last 50 got 429");
    assert!(hub.metric("ssehub_pending_connections").await <= 100);

    // 5,000 more from 5,000 addresses: the oldest waiting ones make room.
    for i in 0..5000u32 {
        let source = format!("127.1.{}.{}", i / 250, i % 250 + 1);
        if let Some(s) = silent(&source, addr).await {
            flood.push(s);
        }
    }
    let waiting = hub.metric("ssehub_pending_connections").await;
    assert!(waiting <= 1000, "{waiting} waiting");

    // A real subscriber and publisher, meanwhile, are served.
    let mut stream = EventStream::open(&hub.url("/events?topic=f"), &[])
        .await
        .opened()
        .await;
    hub.publish_ok("?topic=f", "through the flood").await;
    assert_eq!(stream.next_event().await.data, "through the flood");

    let grown = hub.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    drop(flood);
    assert_eq!(
        hub.wait_metric("ssehub_pending_connections", |n| n == 0)
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_asks_to_close_is_closed_after_its_answer() {
    let hub = HubProcess::start(&[]);
    for request in [
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let (bytes, closed) = read_to_close(&mut socket, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&bytes);
        assert!(
            answer.contains(" 200 OK") && answer.ends_with("ok\n"),
            "{answer}"
        );
        assert!(closed, "{request:?} left open");
    }
    // Kept alive otherwise: a second request on the same connection is answered.
    let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
    plain_request_first(&mut socket, "/healthz").await;
    plain_request_first(&mut socket, "/metrics").await;
}

/// A chunked body whose trailer section starts with a bare LF: hyper reads trailer lines up to
/// CR LF, so for it the request that seems to follow is still trailers (ignored), and its body
/// is `one`. Ending the body at the LF instead, and serving what follows as a request of its own,
/// would serve a request hidden where hyper (and any proxy framing like it) sees trailers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hidden_in_a_chunked_bodys_trailers_is_not_served() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=t").await.opened().await;
    let publish = hub.publish_addr.clone().unwrap();
    let mut socket = TcpStream::connect(&publish).await.unwrap();
    socket
        .write_all(
            b"POST /publish?topic=t HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
              3\r\none\r\n0\r\n\n\
              POST /publish?topic=t HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\nsmuggled",
        )
        .await
        .unwrap();
    let (bytes, _) = read_to_close(&mut socket, Duration::from_secs(2)).await;
    let answer = String::from_utf8_lossy(&bytes);
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(stream.next_event().await.data, "one");
    assert_eq!(
        stream.try_next_event(Duration::from_millis(300)).await,
        Err(Stop::Timeout)
    );
}

/// A request whose body framing we do not follow (a transfer coding other than chunked before
/// it, `CONNECT`) is the connection's last: hyper must not go on reading and
/// serving the requests after it itself, where a `GET /events` would become a hyper-served stream
/// on the request thread instead of taking the one stream path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_we_cannot_frame_ends_its_connection() {
    let hub = HubProcess::start(&[]);
    for first in [
        "POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "CONNECT x:80 HTTP/1.1\r\nhost: x:80\r\n\r\n",
    ] {
        let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
        let requests = format!("{first}GET /events?topic=u HTTP/1.1\r\nhost: x\r\n\r\n");
        socket.write_all(requests.as_bytes()).await.unwrap();
        let (bytes, closed) = read_to_close(&mut socket, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&bytes);
        assert!(closed, "{first:?}: {answer}");
        assert!(!answer.contains("text/event-stream"), "{first:?}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{first:?}: {answer}");
    }
    assert_eq!(hub.metric("ssehub_clients").await, 0);
}

/// A client that asks for answers and stops reading them (here: 1,000 pipelined requests for the
/// viewer's script, about 10 MB, read by nobody) must not hold its connection forever, out of
/// reach of every other bound: once a write has made no progress for 10 s, the hub gives up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answers_is_let_go() {
    let hub = HubProcess::start(&[]);
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut socket = socket.connect(hub.addr.parse().unwrap()).await.unwrap();
    let requests = "GET /assets/viewer.js HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1000);
    socket.write_all(requests.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let (bytes, closed) = read_to_close(&mut socket, Duration::from_secs(5)).await;
    let answers = String::from_utf8_lossy(&bytes)
        .matches("HTTP/1.1 200")
        .count();
    assert!(
        closed && answers < 1000,
        "{answers} answers, closed: {closed}"
    );
}

/// An `Upgrade: h2c` offer (`curl --http2`, Java's `HttpClient` on `http://`) is not taken, and
/// changes nothing else: the connection is kept, and a stream after it takes the stream path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_offer_is_ignored_and_the_connection_kept() {
    let hub = HubProcess::start(&[]);
    let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
    socket
        .write_all(
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n\
              upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut body = [0u8; 3];
    socket.read_exact(&mut body).await.unwrap();
    socket
        .write_all(b"GET /events?topic=h HTTP/1.1\r\nhost: x\r\nupgrade: h2c\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("date:"), "{head}");
}
