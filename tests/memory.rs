//! Memory held by the history is bounded in bytes (`--history-bytes`): the oldest events leave,
//! a resume from before them gets a `gap`, a publish the history cannot hold is refused, and the
//! process's memory stays bounded however large the events are.

mod common;

use std::time::Duration;

use common::*;

/// `len` bytes of data starting with `i`, so each event can be told apart.
fn sized(i: usize, len: usize) -> String {
    let mut data = format!("{i:04} ");
    data.push_str(&"x".repeat(len - data.len()));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_bytes_bound_what_is_kept_and_a_resume_from_before_gets_a_gap() {
    const LIMIT: u64 = 1_000_000;
    let hub = HubProcess::start(&["--history-bytes", &LIMIT.to_string()]);
    let mut ids = Vec::new();
    for i in 0..200 {
        let answer = hub.publish_ok("?topic=big", &sized(i, 100_000)).await;
        ids.push(answer["id"].as_str().unwrap().to_string());
        let bytes = hub.metric("ssehub_history_bytes").await;
        assert!(bytes <= LIMIT, "{bytes} bytes kept after event {i}");
    }
    // Each event is about 100,030 bytes encoded: nine fit.
    assert_eq!(hub.metric("ssehub_history_events").await, 9);
    assert!(hub.metric("ssehub_history_bytes").await > 9 * 100_000);

    let mut stream =
        EventStream::open(&hub.url("/events?topic=big"), &[("last-event-id", &ids[0])]).await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "gap");
    let info: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(info["reason"], "evicted");
    assert_eq!(info["lastEventId"], ids[0].as_str());
    assert_eq!(info["resumedAt"], ids[191].as_str());
    let events = stream.events(9).await;
    for (e, i) in events.iter().zip(191..) {
        assert_eq!((&e.id, &e.data), (&ids[i], &sized(i, 100_000)));
    }
    assert!(stream
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());

    // A publish bigger than the whole history is refused, naming the flag, and takes no id.
    let (status, text) = hub
        .publish_raw("?topic=big", sized(0, LIMIT as usize))
        .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--history-bytes"), "{text}");
    assert_eq!(hub.metric("ssehub_history_events").await, 9);
    let next = hub.publish_ok("?topic=big", "small").await;
    let seq = |id: &str| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    assert_eq!(seq(next["id"].as_str().unwrap()), seq(&ids[199]) + 1);
    // The stream still open gets it: nothing of the refused publish reached it.
    assert_eq!(stream.next_event().await.data, "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_do_not_grow_the_process_past_the_bytes_limit() {
    const LIMIT: u64 = 16 << 20;
    let hub = HubProcess::start(&["--history-bytes", &LIMIT.to_string()]);
    let before = hub.rss_kib();
    for i in 0..300 {
        // The largest body --max-body allows by default.
        let (status, text) = hub.publish_raw("?topic=big", sized(i, 1 << 20)).await;
        assert_eq!(status, 200, "{text}");
    }
    let bytes = hub.metric("ssehub_history_bytes").await;
    let after = hub.rss_kib();
    eprintln!(
        "RSS {before} KiB before, {after} KiB after 300 MiB published; history {bytes} bytes"
    );
    assert!(bytes <= LIMIT);
    // 300 MiB went through; without the limit all of it would be held.
    assert!(after < 200 << 10, "RSS {after} KiB");
}

#[cfg(feature = "durable")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_data_dir_the_bytes_bound_memory_and_the_file_keeps_the_rest() {
    const LIMIT: u64 = 1_000_000;
    let dir = std::env::temp_dir().join(format!("ssehub-test-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hub = HubProcess::start(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--history-bytes",
        &LIMIT.to_string(),
    ]);
    let mut ids = Vec::new();
    for i in 0..30 {
        let answer = hub.publish_ok("?topic=big", &sized(i, 100_000)).await;
        ids.push(answer["id"].as_str().unwrap().to_string());
        // Evicted once durable, before the publish is answered.
        let bytes = hub.metric("ssehub_history_bytes").await;
        assert!(bytes <= LIMIT, "{bytes} bytes in memory after event {i}");
    }
    assert_eq!(hub.metric("ssehub_history_events").await, 9);
    // A resume from the first id reads the older events from the file: no gap.
    let mut stream =
        EventStream::open(&hub.url("/events?topic=big"), &[("last-event-id", &ids[0])]).await;
    let events = stream.events(29).await;
    for (e, i) in events.iter().zip(1..) {
        assert_eq!((&e.event, &e.id), (&"message".to_string(), &ids[i]));
        assert_eq!(e.data, sized(i, 100_000));
    }
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}
