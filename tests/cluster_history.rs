//! Cluster mode's history beyond a hub's memory: a resume older than the memory window is
//! replayed from Redis (every shard, in the cluster's order) and goes on from memory with no
//! gap and no duplicate; one from before what Redis trimmed gets a `gap` first.

mod common;
mod redis_server;

use std::time::Duration;

use common::{client, EventStream, HubProcess};
use redis_server::{free_port, Redis};
use ssehub::parse::ParsedEvent;

/// Redis trimming exactly: `MAXLEN ~` trims whole nodes of this many entries.
fn redis() -> Redis {
    Redis::start_with(free_port(), None, &["--stream-node-max-entries", "4"])
}

async fn publish(url: &str, topic: &str, data: &str) -> String {
    publish_json(url, serde_json::json!({"topic": topic, "data": data})).await
}

async fn publish_json(url: &str, body: serde_json::Value) -> String {
    let body = body.to_string();
    let resp = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 200);
    let json: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    json["id"].as_str().expect("an id").to_string()
}

fn pairs(events: &[ParsedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

#[tokio::test]
async fn a_resume_older_than_memory_is_read_from_redis() {
    let redis = redis();
    let args = [
        "--redis",
        &redis.url(),
        "--memory-history",
        "20",
        "--heartbeat",
        "1",
    ];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    let url = a.publish_url("/publish");
    // Two topics in (most likely) different shards, interleaved.
    let mut acked = Vec::new();
    for i in 0..300 {
        let topic = ["x", "news"][i % 2];
        let data = format!("{topic}-{i}");
        // One with its publisher's id, resumed from below.
        let body = match i {
            50 => serde_json::json!({"topic": topic, "data": data, "id": "order-50"}),
            _ => serde_json::json!({"topic": topic, "data": data}),
        };
        acked.push((publish_json(&url, body).await, data));
    }
    assert_eq!(acked[50].0, "order-50");
    b.wait_metric("ssehub_history_events", |n| n == 20).await;
    // From the 30th event, far older than B's 20 in memory: all 270 after it, in order.
    let from = acked[29].0.clone();
    let mut all = EventStream::open(
        &b.url("/events?topic=x&topic=news"),
        &[("last-event-id", from.as_str())],
    )
    .await;
    assert_eq!(pairs(&all.events(270).await), acked[30..].to_vec());
    // Still live after the replay: the next event comes once.
    let next = publish(&url, "x", "after").await;
    assert_eq!(pairs(&all.events(1).await), [(next, "after".to_string())]);
    assert!(all
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
    // One topic only: its events alone.
    let mut x = EventStream::open(
        &b.url("/events?topic=x"),
        &[("last-event-id", from.as_str())],
    )
    .await;
    let only_x: Vec<(String, String)> = acked[30..]
        .iter()
        .filter(|(_, d)| d.starts_with("x-"))
        .cloned()
        .collect();
    let mut got = pairs(&x.events(only_x.len()).await);
    got.extend(pairs(&x.events(1).await));
    assert_eq!(got[..only_x.len()], only_x[..]);
    assert_eq!(got[only_x.len()].1, "after");
    // From a publisher's id that left memory: Redis knows its place.
    let mut by_id = EventStream::open(
        &b.url("/events?topic=x&topic=news"),
        &[("last-event-id", "order-50")],
    )
    .await;
    assert_eq!(pairs(&by_id.events(249).await), acked[51..].to_vec());
}

#[tokio::test]
async fn a_resume_from_what_redis_trimmed_gets_a_gap() {
    let redis = redis();
    let args = [
        "--redis",
        &redis.url(),
        "--redis-shards",
        "1",
        "--history",
        "40",
        "--memory-history",
        "10",
        "--heartbeat",
        "1",
    ];
    let hub = HubProcess::start(&args);
    let url = hub.publish_url("/publish");
    let mut acked = Vec::new();
    for i in 0..120 {
        let data = i.to_string();
        acked.push((publish(&url, "t", &data).await, data));
    }
    hub.wait_metric("ssehub_history_events", |n| n == 10).await;
    let from = acked[4].0.clone();
    let mut stream = EventStream::open(
        &hub.url("/events?topic=t"),
        &[("last-event-id", from.as_str())],
    )
    .await;
    let first = stream.next_event().await;
    assert_eq!(first.event, "gap", "{first:?}");
    assert!(first.data.contains("evicted"), "{}", first.data);
    // Then what Redis kept (about 40: trimming is by whole nodes), in order, to the newest.
    let kept = pairs(&stream.events(30).await);
    let at = acked
        .iter()
        .position(|e| *e == kept[0])
        .expect("a published event");
    assert!(at > 5, "the trimmed ones are not replayed");
    assert_eq!(kept, acked[at..at + 30].to_vec());
}

#[tokio::test]
async fn a_hub_whose_reader_trimming_passed_tells_its_clients_with_a_gap() {
    let redis = redis();
    let args = [
        "--redis",
        &redis.url(),
        "--redis-shards",
        "1",
        "--history",
        "40",
        "--heartbeat",
        "1",
    ];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    let url = a.publish_url("/publish");
    let mut on_b = b.subscribe("?topic=t").await.opened().await;
    let first = publish(&url, "t", "first").await;
    assert_eq!(
        pairs(&on_b.events(1).await),
        [(first.clone(), "first".into())]
    );
    // B stalls (its reader with it) while A publishes past what Redis keeps.
    let stop = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &b.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    stop("-STOP");
    for i in 0..150 {
        publish(&url, "t", &i.to_string()).await;
    }
    stop("-CONT");
    // B's stream ends (never a silent hole): nothing of what follows the loss comes on it.
    match on_b.try_next_event(Duration::from_secs(5)).await {
        Ok(e) => panic!("an event after the loss on the same stream: {e:?}"),
        Err(common::Stop::Timeout) => panic!("B's stream did not end"),
        Err(common::Stop::Closed) => {}
    }
    // Its client comes back with its last id and is told.
    let mut again = EventStream::open(
        &b.url("/events?topic=t"),
        &[("last-event-id", first.as_str())],
    )
    .await;
    let gap = again.next_event().await;
    assert_eq!(gap.event, "gap", "{gap:?}");
    assert!(gap.data.contains("evicted"), "{}", gap.data);
    b.wait_metric("ssehub_redis_trimmed_unread_total", |n| n >= 1)
        .await;
}
