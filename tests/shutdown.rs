//! SIGTERM under load: 5,000 clients streaming while events are published. Every event
//! acknowledged to a publisher before the signal reaches every client, and the hub exits 0
//! within 5 s.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 5000;

/// Reads a chunked stream to its end; returns the ids of the events it carried, and whether the
/// body was ended properly (the last chunk) rather than cut.
async fn read_ids(mut s: tokio::net::TcpStream) -> (HashSet<String>, bool) {
    let mut body = ssehub::bench::http1::Body::chunked();
    let mut parser = ssehub::parse::Parser::new();
    let mut ids = HashSet::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        if n == 0 {
            return (ids, body.is_done());
        }
        let _ = body.decode(&buf[..n], &mut |p| {
            parser.feed_ref(p, &mut |f| {
                if let ssehub::parse::FrameRef::Event { id, .. } = f {
                    ids.insert(id.to_string());
                }
            })
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_delivers_everything_acknowledged() {
    let mut hub = HubProcess::start(&["--max-clients", "6000"]);
    let addr = hub.addr.clone();
    // 5,000 streams, opened 250 at a time.
    let mut readers = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS / 250 {
        let opened = futures_util::future::join_all((0..250).map(|_| async {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(b"GET /events?topic=load HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            read_head(&mut s).await;
            s
        }))
        .await;
        readers.extend(opened.into_iter().map(|s| tokio::spawn(read_ids(s))));
    }
    assert_eq!(
        hub.wait_metric("ssehub_clients", |n| n == CLIENTS as u64)
            .await,
        CLIENTS as u64
    );

    // Publish steadily; remember what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let publisher = {
        let (acked, url) = (acked.clone(), hub.publish_url("/publish?topic=load"));
        tokio::spawn(async move {
            let c = client();
            for i in 0.. {
                let Ok(resp) = c.post(url.clone()).body(format!("event {i}")).send().await else {
                    return; // the hub has stopped
                };
                if resp.status() != 200 {
                    return;
                }
                let Ok(text) = resp.text().await else { return };
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(answer["id"].as_str().unwrap().to_string());
            }
        })
    };
    // Let a good number be acknowledged first (how long that takes depends on the machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 50 {
        assert!(
            Instant::now() < deadline,
            "fewer than 50 events published in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM: what was acknowledged by now must reach everyone.
    let before: Vec<String> = acked.lock().unwrap().clone();
    let start = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = loop {
        if let Some(status) = hub.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = start.elapsed();
    publisher.await.unwrap();
    assert!(
        before.len() >= 20,
        "only {} events were published before the signal",
        before.len()
    );
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "exit took {took:?}");

    let mut ended_cleanly = 0;
    for reader in readers {
        let (ids, clean) = reader.await.unwrap();
        let missing: Vec<&String> = before.iter().filter(|id| !ids.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "a client missed {} acknowledged events: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        ended_cleanly += clean as usize;
    }
    assert_eq!(
        ended_cleanly, CLIENTS,
        "every stream ended with its last chunk"
    );
}
