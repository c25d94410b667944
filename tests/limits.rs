//! The client limit under a burst, refusals, freed slots, and slow subscribers cut loose.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connects_never_exceeds_max_clients() {
    const MAX: usize = 50;
    const BURST: usize = 400;
    let hub = HubProcess::start(&["--max-clients", &MAX.to_string(), "--retry", "2500"]);
    let addr = hub.addr.clone();
    // Everyone connects at once; nobody lets go until all have their answer.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let addr = addr.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                raw_get(&addr, "/events", &[]).await
            })
        })
        .collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (socket, status, head) = t.await.unwrap();
        match status {
            200 => open.push(socket),
            503 => {
                assert!(
                    head.to_ascii_lowercase().contains("retry-after: 3\r\n"),
                    "{head}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {head}"),
        }
    }
    assert_eq!(open.len(), MAX);
    assert_eq!(refused, BURST - MAX);
    assert_eq!(hub.metric("ssehub_clients").await, MAX as u64);
    assert_eq!(
        hub.metric("ssehub_rejected_total").await,
        (BURST - MAX) as u64
    );
    // Closing the streams frees their slots promptly (no publish or heartbeat needed).
    drop(open);
    assert_eq!(hub.wait_metric("ssehub_clients", |n| n == 0).await, 0);
    let stream = hub.subscribe("").await;
    assert_eq!(stream.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_says_503_with_a_reason() {
    let hub = HubProcess::start(&["--max-clients", "1"]);
    let _first = hub.subscribe("").await.opened().await;
    let (mut socket, status, head) = raw_get(&hub.addr, "/events", &[]).await;
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after:"));
    let (body, closed) = read_to_close(&mut socket, WAIT).await;
    assert!(closed);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("full") && body.lines().count() == 1,
        "{body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_full_retry_sends_only_retry_and_ends() {
    let hub = HubProcess::start(&[
        "--max-clients",
        "1",
        "--when-full",
        "retry",
        "--retry",
        "900",
    ]);
    let first = hub.subscribe("").await.opened().await;
    let (mut socket, status, head) = raw_get(&hub.addr, "/events", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/event-stream"));
    let (body, closed) = read_to_close(&mut socket, WAIT).await;
    assert!(closed, "the refusal stream ends");
    assert_eq!(String::from_utf8(body).unwrap(), "retry: 900\n\n");
    assert_eq!(hub.metric("ssehub_rejected_total").await, 1);
    drop(first);
    hub.wait_metric("ssehub_clients", |n| n == 0).await;
    assert_eq!(hub.subscribe("").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_cut_loose() {
    never_reading_subscriber(false).await;
}

/// What browsers do: the stream comes on a connection that served a request first. It must be
/// cut loose the same way (it used to keep its slot forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_a_reused_connection_that_never_reads_is_cut_loose() {
    never_reading_subscriber(true).await;
}

async fn never_reading_subscriber(reused: bool) {
    let hub = HubProcess::start(&["--max-backlog", "262144"]);
    // A client with a tiny receive buffer that reads nothing after its request.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(hub.addr.parse().unwrap()).await.unwrap();
    if reused {
        plain_request_first(&mut stuck, "/healthz").await;
        plain_request_first(&mut stuck, "/metrics").await;
    }
    stuck
        .write_all(b"GET /events?topic=big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = hub.subscribe("?topic=big").await.opened().await;
    hub.wait_metric("ssehub_clients", |n| n == 2).await;
    // 24 MiB in 64 KiB events: far more than any socket buffers hold.
    let chunk = "z".repeat(64 * 1024);
    const EVENTS: usize = 384;
    let publishing = {
        let url = hub.publish_url("/publish?topic=big");
        tokio::spawn(async move {
            let c = client();
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
    // The reading subscriber gets every event while the other one sits there.
    for i in 0..EVENTS {
        let e = match reader.try_next_event(WAIT).await {
            Ok(e) => e,
            Err(stop) => panic!("event {i}: {stop:?}; hub said: {}", hub.stderr_text()),
        };
        assert_eq!(e.data.len(), 64 * 1024, "event {i}");
    }
    publishing.await.unwrap();
    assert!(
        hub.wait_metric("ssehub_slow_disconnects_total", |n| n >= 1)
            .await
            >= 1
    );
    assert_eq!(hub.wait_metric("ssehub_clients", |n| n == 1).await, 1);
    // The stuck client finds its stream closed by the hub once it reads.
    let (bytes, closed) = read_to_close(&mut stuck, Duration::from_secs(20)).await;
    assert!(closed, "the hub ended the stuck stream");
    assert!(
        bytes.len() < EVENTS * 64 * 1024,
        "it did not get everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let hub = HubProcess::start(&[
        "--max-clients-per-ip",
        "3",
        "--max-clients",
        "10",
        "--retry",
        "2000",
    ]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, status, _) = get_from("127.0.0.1", &hub.addr, "/events").await;
        assert_eq!(status, 200);
        held.push(s);
    }
    // The flood from that address is refused with 429 and a Retry-After...
    for _ in 0..20 {
        let (mut s, status, head) = get_from("127.0.0.1", &hub.addr, "/events").await;
        assert_eq!(status, 429, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 2\r\n"),
            "{head}"
        );
        let (body, _) = read_to_close(&mut s, WAIT).await;
        assert!(String::from_utf8_lossy(&body).contains("127.0.0.1"));
    }
    // ...while another address is served, and the global slots were not used up by the flood.
    let (_other, status, _) = get_from("127.0.0.2", &hub.addr, "/events").await;
    assert_eq!(status, 200);
    assert_eq!(hub.metric("ssehub_clients").await, 4);
    assert_eq!(hub.metric("ssehub_rejected_total").await, 0);
    // A closed stream frees its address's count.
    drop(held.pop());
    hub.wait_metric("ssehub_clients", |n| n == 3).await;
    let (_again, status, _) = get_from("127.0.0.1", &hub.addr, "/events").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_ever_new_topics_keeps_the_topic_table_bounded() {
    let hub = HubProcess::start(&["--history", "100"]);
    let mut kept = hub.subscribe("?topic=kept").await.opened().await;
    let first = hub.publish_ok("?topic=t0", "first").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for batch in 0..20 {
        let items: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"topic": "t{}", "data": "x"}}"#, batch * 1000 + i + 1))
            .collect();
        let (status, text) = hub.publish_json(&format!("[{}]", items.join(","))).await;
        assert_eq!(status, 200, "{text}");
    }
    let topics = hub.metric("ssehub_topics").await;
    assert!(
        topics < 2500,
        "{topics} topics kept after 20,000 were used once"
    );
    // The subscribed topic was never dropped: it still gets what is published to it.
    hub.publish_ok("?topic=kept", "still here").await;
    assert_eq!(kept.next_event().await.data, "still here");
    // A resume on a dropped topic is told that events may be gone.
    let mut again =
        EventStream::open(&hub.url("/events?topic=t0"), &[("last-event-id", &first)]).await;
    let gap = again.next_event().await;
    assert_eq!(gap.event, "gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_body_that_stalls_gets_408_and_publishes_nothing() {
    let hub = HubProcess::start(&["--publish-body-timeout", "1"]);
    let mut stream = hub.subscribe("?topic=slow").await.opened().await;
    let addr = hub.publish_addr.clone().expect("the publish listener");
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A head that promises 100 bytes, then 4 of them, then nothing.
    let head = format!(
        "POST /publish?topic=slow HTTP/1.1\r\nhost: {addr}\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nhalf"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let (answer, _) = read_to_close(&mut socket, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--publish-body-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing of it was published: the next event is the first the stream sees.
    hub.publish_ok("?topic=slow", "whole").await;
    assert_eq!(stream.next_event().await.data, "whole");
    let metrics = hub.metrics_text().await;
    assert!(
        metrics.contains("ssehub_refusals_total{reason=\"slow_body\"} 1"),
        "{metrics}"
    );
    // A zero timeout is refused at start, naming the flag.
    let out = bare_command()
        .args(["serve", "--publish-body-timeout", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--publish-body-timeout"), "{said}");
}
