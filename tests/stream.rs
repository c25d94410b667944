//! `GET /events` against the real binary: headers, first bytes, framing, topics, heartbeats.

mod common;

use std::time::Duration;

use common::*;
use ssehub::parse::Frame;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_with_headers_and_flushes_at_once() {
    let hub = HubProcess::start(&["--retry", "1234"]);
    let mut stream = hub.subscribe("").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    // Nothing was published: the first bytes (a comment, then retry:) must still arrive at once,
    // which is what makes EventSource.onopen fire.
    let first = stream.next_frame(Duration::from_secs(2)).await;
    assert!(matches!(first, Ok(Frame::Comment(_))), "{first:?}");
    assert_eq!(
        stream.next_frame(Duration::from_secs(2)).await,
        Ok(Frame::Retry(1234))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatwg_framing_round_trips() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("").await.opened().await;
    let cases = [
        ("", "a\rb\r\nc\nd", "a\nb\nc\nd"),
        ("", "", ""),
        ("", "trailing\n", "trailing\n"),
        ("", "  two leading spaces", "  two leading spaces"),
        ("", "héllo ✓ 🚀 日本", "héllo ✓ 🚀 日本"),
        ("&event=status", "{\"up\":true}", "{\"up\":true}"),
        ("&event=ünï", "x", "x"),
    ];
    let mut ids = Vec::new();
    for (query, body, _) in &cases {
        let answer = hub
            .publish_ok(&format!("?topic=default{query}"), body)
            .await;
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    for (i, (query, _, want)) in cases.iter().enumerate() {
        let e = stream.next_event().await;
        assert_eq!(e.data, *want, "case {i}");
        assert_eq!(e.id, ids[i]);
        let name = query.strip_prefix("&event=").unwrap_or("message");
        assert_eq!(e.event, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_data_and_retry_fields() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=t").await.opened().await;
    let (status, _) = hub
        .publish_json(r#"{"topic": "t", "data": {"a": [1, 2.5, null], "b": "x y"}, "retry": 700}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stream.next_frame(WAIT).await, Ok(Frame::Retry(700)));
    assert_eq!(
        stream.next_event().await.data,
        r#"{"a":[1,2.5,null],"b":"x y"}"#
    );
    hub.publish_json(r#"{"topic": "t", "data": 42}"#).await;
    hub.publish_json(r#"{"topic": "t", "data": "plain"}"#).await;
    assert_eq!(data(&stream.events(2).await), ["42", "plain"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_default_and_several() {
    let hub = HubProcess::start(&[]);
    let mut default = hub.subscribe("").await.opened().await;
    let mut ab = hub
        .subscribe("?topic=a&topic=b&topic=a")
        .await
        .opened()
        .await;
    hub.publish_ok("", "to-default").await;
    hub.publish_ok("?topic=a", "to-a").await;
    hub.publish_ok("?topic=c", "to-c").await;
    hub.publish_ok("?topic=b", "to-b").await;
    let both = hub.publish_ok("?topic=a&topic=b", "to-a-and-b").await;
    // Counted once per topic it is on.
    assert_eq!(both["subscribers"], 2);
    hub.publish_ok("?topic=default", "to-default-again").await;
    assert_eq!(
        data(&default.events(2).await),
        ["to-default", "to-default-again"]
    );
    assert_eq!(data(&ab.events(3).await), ["to-a", "to-b", "to-a-and-b"]);
    assert_eq!(
        ab.try_next_event(Duration::from_millis(300)).await,
        Err(Stop::Timeout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_on_idle_streams() {
    let hub = HubProcess::start(&["--heartbeat", "1"]);
    let mut stream = hub.subscribe("").await.opened().await;
    let mut comments = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < deadline {
        match stream.next_frame(Duration::from_millis(200)).await {
            Ok(Frame::Comment(_)) => comments += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(Stop::Timeout) => {}
            Err(Stop::Closed) => panic!("stream closed"),
        }
    }
    assert!(comments >= 2, "{comments} heartbeats in 3.5 s");
    // With heartbeats off, an idle stream stays silent.
    let quiet = HubProcess::start(&["--heartbeat", "0"]);
    let mut stream = quiet.subscribe("").await.opened().await;
    assert_eq!(
        stream.next_frame(Duration::from_millis(1500)).await,
        Err(Stop::Timeout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_subscription_gets_400() {
    let hub = HubProcess::start(&["--max-topics-per-client", "3"]);
    for query in [
        "?topic=",
        "?topic=a%0Ab",
        "?topic=%FF",
        "?topic=a&topic=b&topic=c&topic=d",
    ] {
        let (mut socket, status, head) = raw_get(&hub.addr, &format!("/events{query}"), &[]).await;
        assert_eq!(status, 400, "{query}: {head}");
        let (body, closed) = read_to_close(&mut socket, WAIT).await;
        assert!(closed);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(body.matches('\n').count(), 1, "one-line reason: {body:?}");
    }
    assert_eq!(hub.metric("ssehub_clients").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_keep_alive_connection_streams_too() {
    // The first requests on a connection are served by hyper; the stream that follows on the same
    // connection must take the same path as on a fresh connection (whose response carries no
    // `date` header, unlike hyper's).
    let hub = HubProcess::start(&[]);
    let mut socket = tokio::net::TcpStream::connect(&hub.addr).await.unwrap();
    for path in ["/", "/healthz", "/assets/viewer.js"] {
        plain_request_first(&mut socket, path).await;
    }
    socket
        .write_all(b"GET /events?topic=k HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.contains("text/event-stream"), "{head}");
    let fresh = hub.subscribe("?topic=k").await;
    assert_eq!(
        head.to_ascii_lowercase().contains("date:"),
        fresh.headers.contains_key("date"),
        "the same path as a fresh connection: {head}"
    );
    hub.wait_metric("ssehub_clients", |n| n == 2).await;
    hub.publish_ok("?topic=k", "second").await;
    let got = raw_events(&mut socket, 1).await;
    assert_eq!(data(&got), ["second"]);
}

/// Requests in one write (pipelined), a chunked publish, then a stream: each request is served
/// once, in order, and the stream still comes out right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_chunked_requests_before_a_stream() {
    let hub = HubProcess::start(&["--publish-listen", "127.0.0.1:0"]);
    let publish = hub.publish_addr.clone().expect("publish listener");
    let mut socket = tokio::net::TcpStream::connect(&publish).await.unwrap();
    let requests = "POST /publish?topic=p HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\none\
        POST /publish?topic=p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
        GET /events?topic=p&lastEventId=0 HTTP/1.1\r\nhost: x\r\n\r\n";
    socket.write_all(requests.as_bytes()).await.unwrap();
    for _ in 0..2 {
        let head = read_head(&mut socket).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        tokio::io::AsyncReadExt::read_exact(&mut socket, &mut body)
            .await
            .unwrap();
    }
    let head = read_head(&mut socket).await;
    assert!(head.contains("text/event-stream"), "{head}");
    // "0" is no id of ours: a `gap` event, then everything retained.
    let got = raw_events(&mut socket, 3).await;
    assert_eq!(got[0].event, "gap");
    assert_eq!(data(&got[1..]), ["one", "two"]);
    assert_eq!(hub.metric("ssehub_published_total").await, 2);
}

/// hyper and the router route by the parsed URI's path, so a `GET /events` in absolute form or
/// with a fragment is a stream request too: it must take the stream path (no `date` header, see
/// above), not become a hyper-served stream on the request thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_get_events_takes_the_stream_path() {
    let hub = HubProcess::start(&[]);
    for target in [
        "/events?topic=s",
        "http://x/events?topic=s",
        "/events?topic=s#here",
        "/events#here",
    ] {
        let (mut socket, status, head) = raw_get(&hub.addr, target, &[]).await;
        assert_eq!(status, 200, "{target}: {head}");
        assert!(head.contains("text/event-stream"), "{target}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("date:"),
            "{target} was served by hyper: {head}"
        );
        if target.contains("topic=s") {
            hub.wait_metric("ssehub_clients", |n| n == 1).await;
            hub.publish_ok("?topic=s", target).await;
            assert_eq!(data(&raw_events(&mut socket, 1).await), [target]);
        }
        drop(socket);
        hub.wait_metric("ssehub_clients", |n| n == 0).await;
    }
}
