//! Hostile clients: each attack gets a clear answer or a prompt disconnect, and a normal client
//! (from another address) gets every event while they all run at once.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn send_raw(addr: &str, request: &[u8]) -> (u16, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The hub may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(request).await;
    let (bytes, closed) = read_to_close(&mut s, WAIT).await;
    let text = String::from_utf8_lossy(&bytes);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_client_gets_every_event_during_attacks() {
    let hub = HubProcess::start(&["--max-clients-per-ip", "40", "--max-backlog", "65536"]);
    let addr = hub.addr.clone();
    // The normal client, from another address.
    let (mut normal, status, _) = get_from("127.0.0.2", &addr, "/events?topic=news").await;
    assert_eq!(status, 200);
    // It reads as events come, as a normal client does.
    let normal = tokio::spawn(async move { raw_events(&mut normal, 400).await });

    // Slowloris: heads that never end, one byte now and then.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Clients that subscribe and never read, with tiny buffers.
    let mut deaf = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
        s.write_all(b"GET /events?topic=news HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        deaf.push(s);
    }

    // Publishing goes on throughout: 400 events of 32 KiB (more than socket buffers hold).
    let publishing = {
        let url = hub.publish_url("/publish?topic=news");
        tokio::spawn(async move {
            let c = client();
            for i in 0..400 {
                let body = format!("{i} {}", "p".repeat(32 * 1024));
                let resp = c.post(url.clone()).body(body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Huge headers and query strings: 431, then closed.
    let huge_header = format!(
        "GET /events HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "h".repeat(100_000)
    );
    let huge_query = format!(
        "GET /events?topic={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "q".repeat(20_000)
    );
    let many_topics: String = (0..2000).map(|i| format!("topic=t{i}&")).collect();
    let too_many = format!("GET /events?{many_topics} HTTP/1.1\r\nhost: x\r\n\r\n");
    let few_too_many: String = (0..100).map(|i| format!("topic=t{i}&")).collect();
    let over_limit = format!("GET /events?{few_too_many} HTTP/1.1\r\nhost: x\r\n\r\n");
    let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n".to_vec();
    for _ in 0..5 {
        assert_eq!(send_raw(&addr, huge_header.as_bytes()).await, (431, true));
        assert_eq!(send_raw(&addr, huge_query.as_bytes()).await, (431, true));
        assert_eq!(send_raw(&addr, too_many.as_bytes()).await, (431, true));
        assert_eq!(send_raw(&addr, over_limit.as_bytes()).await, (400, true)); // past --max-topics-per-client
        assert_eq!(send_raw(&addr, &garbage).await, (400, true));
    }
    // A connection flood from one address: past 40, 429.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let (s, status, _) = raw_get(&addr, "/events?topic=other", &[]).await;
        match status {
            200 => flood.push(s),
            429 => refused += 1,
            other => panic!("flood got {other}"),
        }
    }
    // 40 per address, minus the deaf clients from the same address.
    assert_eq!(flood.len(), 40 - deaf.len());
    assert_eq!(refused, 200 - flood.len());

    // The normal client gets all 400 events, in order, through all of it.
    publishing.await.unwrap();
    let events = normal.await.unwrap();
    let numbers: Vec<usize> = events
        .iter()
        .map(|e| e.data.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (0..400).collect::<Vec<_>>());

    // The deaf clients were cut loose (12.8 MB published, 64 KiB allowed behind).
    assert!(
        hub.wait_metric("ssehub_slow_disconnects_total", |n| n >= 10)
            .await
            >= 10
    );
    // The slowloris heads are closed once their 10 s are up.
    for mut s in slow {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a slow head was not closed: {read:?}"
        );
    }
}
