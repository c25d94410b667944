//! `--max-stream-age`: streams end cleanly after 80 to 100% of it (plus scheduling slack on a
//! busy machine), and a client that resumes with `Last-Event-ID` while events keep coming gets
//! every event exactly once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;

/// Opens a raw stream and reads it to its end: how long it lasted, and its last bytes.
async fn lifetime(hub: &HubProcess) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let (mut stream, status, _) = raw_get(&hub.addr, "/events?topic=t", &[]).await;
    assert_eq!(status, 200);
    let mut body = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut body))
        .await
        .expect("the stream did not end")
        .expect("read");
    (started.elapsed(), body)
}

#[tokio::test]
async fn streams_end_cleanly_between_80_and_100_percent_of_the_age() {
    let hub = HubProcess::start(&["--max-stream-age", "1s"]);
    let ends = futures_util::future::join_all((0..8).map(|_| lifetime(&hub))).await;
    for (lasted, body) in &ends {
        assert!(
            *lasted >= Duration::from_millis(800) && *lasted <= Duration::from_millis(1750),
            "a stream lasted {lasted:?}"
        );
        // The chunked body's last chunk: an end, not a cut connection.
        assert!(
            body.ends_with(b"0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Each stream draws its own share: they do not all end together.
    let times: Vec<_> = ends.iter().map(|(lasted, _)| *lasted).collect();
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(spread >= Duration::from_millis(20), "no jitter: {times:?}");
    // Off by default: a stream outlives the second.
    let plain = HubProcess::start(&[]);
    let mut stream = plain.subscribe("?topic=t").await.opened().await;
    assert_eq!(
        stream.next_frame(Duration::from_millis(1500)).await.err(),
        Some(Stop::Timeout)
    );
}

#[tokio::test]
async fn a_client_resuming_after_its_stream_aged_out_gets_every_event_once() {
    let hub = HubProcess::start(&["--max-stream-age", "1s", "--batch-window", "0"]);
    let url = hub.url("/events?topic=t");
    let total = 120;
    let publisher = async {
        for i in 0..total {
            hub.publish_ok("?topic=t", &format!("e{i}")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Subscribed before the first publish: a fresh stream starts at "now".
    let mut first = Some(EventStream::open(&url, &[]).await.opened().await);
    let reader = async {
        let mut got: Vec<(String, String)> = Vec::new();
        let mut streams = 0;
        while got.len() < total {
            let last = got.last().map(|(id, _)| id.clone());
            let headers: Vec<(&str, &str)> = match &last {
                Some(id) => vec![("last-event-id", id.as_str())],
                None => vec![],
            };
            let mut stream = match first.take() {
                Some(stream) => stream,
                None => EventStream::open(&url, &headers).await,
            };
            assert_eq!(stream.status, 200);
            streams += 1;
            // A stream ages out in a second at most, the publisher is done in a few: so many
            // streams means events that never come (a failure, not a hang).
            let data: Vec<&str> = got.iter().map(|(_, d)| d.as_str()).collect();
            assert!(
                streams < 60,
                "{streams} streams, {} events: {data:?}",
                got.len()
            );
            loop {
                match stream.try_next_event(WAIT).await {
                    Ok(e) => {
                        assert_ne!(e.event, "gap", "a gap: {e:?}");
                        got.push((e.id, e.data));
                    }
                    Err(Stop::Closed) => break,
                    Err(Stop::Timeout) => panic!("no event and no end after {got:?}"),
                }
                if got.len() == total {
                    break;
                }
            }
        }
        (got, streams)
    };
    let ((got, streams), ()) = tokio::join!(reader, publisher);
    let data: Vec<_> = got.iter().map(|(_, d)| d.clone()).collect();
    let want: Vec<_> = (0..total).map(|i| format!("e{i}")).collect();
    assert_eq!(data, want, "every event, once, in order");
    assert!(
        streams >= 3,
        "the streams should have aged out: {streams} streams"
    );
}
