//! Cluster mode's ids, every one a client can see and send back: the `Last-Event-ID` header of
//! a fresh Mercure stream, the subscriptions API's `lastEventID` and a `gap`'s `resumedAt` are
//! cluster ids, so a client resumes from them on any hub with no gap and no duplicate.

mod common;
mod redis_server;

use std::time::Duration;

use common::{client, hs256, EventStream, HubProcess};
use redis_server::{free_port, Redis};
use ssehub::parse::ParsedEvent;

const SECRET: &str = "cluster-ids-secret";

async fn publish(hub: &HubProcess, body: serde_json::Value) -> String {
    let resp = client()
        .post(hub.publish_url("/publish"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 200);
    let json: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    json["id"].as_str().expect("an id").to_string()
}

/// A Mercure form publish on `hub`'s publish listener: the id it answers with.
async fn publish_mercure(hub: &HubProcess, form: &str) -> String {
    let resp = client()
        .post(hub.publish_url("/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

fn pairs(events: &[ParsedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

/// `<epoch>-<ms>-<n>-<shard>`: the cluster's shape, not a hub's own `<epoch>-<seq>`.
fn cluster_shaped(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 4 && parts[1..].iter().all(|p| p.parse::<u64>().is_ok())
}

/// Opens `topic` on `hub` after `id` and asserts it gets exactly `want`, then nothing more.
async fn resumes_exactly(hub: &HubProcess, topic: &str, id: &str, want: &[(String, String)]) {
    let url = hub.url(&format!("/events?topic={topic}"));
    let mut stream = EventStream::open(&url, &[("last-event-id", id)]).await;
    assert_eq!(pairs(&stream.events(want.len()).await), want, "after {id}");
    let more = stream.try_next_event(Duration::from_millis(300)).await;
    assert!(more.is_err(), "nothing more after {id}: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_mercure_stream_s_id_resumes_on_another_hub() {
    let redis = Redis::start(None);
    let url = redis.url();
    let args = ["--redis", &url, "--heartbeat", "1"];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    // The newest event before the stream opens has its publisher's id: "now" is still a
    // cluster id, which every hub places.
    publish(&a, serde_json::json!({"topic": "t", "data": "before-0"})).await;
    let chosen = serde_json::json!({"topic": "t", "data": "before-1", "id": "order-1"});
    assert_eq!(publish(&a, chosen).await, "order-1");
    for hub in [&a, &b] {
        hub.wait_metric("ssehub_history_events", |n| n == 2).await;
    }
    let mercure = EventStream::open(&a.url("/.well-known/mercure?topic=t"), &[])
        .await
        .opened()
        .await;
    let now = mercure.headers["last-event-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cluster_shaped(&now), "{now}");
    // Resumed on B at once (its newest event is still that one), and later (below).
    let mut from_now_on_b = EventStream::open(
        &b.url("/events?topic=t"),
        &[("last-event-id", now.as_str())],
    )
    .await
    .opened()
    .await;
    let mut after = Vec::new();
    for i in 0..5 {
        let data = format!("after-{i}");
        // Mercure's publish too, with and without its publisher's id.
        let id = match i {
            2 => publish_mercure(&a, &format!("topic=t&data={data}")).await,
            3 => publish_mercure(&a, &format!("topic=t&data={data}&id=urn:order:3")).await,
            _ => publish(&a, serde_json::json!({"topic": "t", "data": data})).await,
        };
        if i == 3 {
            assert_eq!(id, "urn:order:3");
        } else {
            assert!(cluster_shaped(&id), "a publish answers cluster ids: {id}");
        }
        after.push((id, data));
    }
    assert_eq!(pairs(&from_now_on_b.events(5).await), after);
    resumes_exactly(&b, "t", &now, &after).await;
    resumes_exactly(&a, "t", &now, &after).await;
    resumes_exactly(&b, "t", &after[2].0, &after[3..]).await;
    resumes_exactly(&b, "t", "urn:order:3", &after[4..]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_s_resumed_at_resumes_on_another_hub() {
    // Redis trims exactly: `MAXLEN ~` trims whole nodes of this many entries.
    let redis = Redis::start_with(free_port(), None, &["--stream-node-max-entries", "4"]);
    let url = redis.url();
    let args = [
        "--redis",
        &url,
        "--redis-shards",
        "1",
        "--history",
        "40",
        "--memory-history",
        "10",
        "--heartbeat",
        "1",
    ];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    let mut acked = Vec::new();
    for i in 0..120 {
        let data = i.to_string();
        let id = publish(&a, serde_json::json!({"topic": "t", "data": data})).await;
        acked.push((id, data));
    }
    for hub in [&a, &b] {
        hub.wait_metric("ssehub_history_events", |n| n == 10).await;
    }
    // From an event Redis trimmed: a gap, then what is left.
    let mut stream = EventStream::open(
        &a.url("/events?topic=t"),
        &[("last-event-id", acked[4].0.as_str())],
    )
    .await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "gap", "{gap:?}");
    let gap: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["reason"], "evicted", "{gap}");
    let resumed_at = gap["resumedAt"].as_str().expect("resumedAt").to_string();
    assert!(cluster_shaped(&resumed_at), "{gap}");
    let first = stream.next_event().await;
    assert_eq!(first.id, resumed_at, "the first event it gets");
    let at = acked
        .iter()
        .position(|(id, _)| *id == resumed_at)
        .expect("a published id");
    // On the other hub, from that id: everything after it, no gap, no duplicate.
    resumes_exactly(&b, "t", &resumed_at, &acked[at + 1..]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_api_s_last_event_id_resumes_on_another_hub() {
    let redis = Redis::start(None);
    let url = redis.url();
    let args = [
        "--redis",
        &url,
        "--heartbeat",
        "1",
        "--jwt-key",
        SECRET,
        "--mercure-subscriptions",
    ];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    let mut live_on_b = b.subscribe("?topic=t").await.opened().await;
    let mut after = Vec::new();
    for i in 0..3 {
        let data = format!("e-{i}");
        let id = publish(&a, serde_json::json!({"topic": "t", "data": data})).await;
        after.push((id, data));
    }
    // The subscriptions API's `lastEventID`, read on B once it has them all, resumes on A
    // from B's newest event.
    assert_eq!(pairs(&live_on_b.events(3).await), after);
    let token = hs256(
        serde_json::json!({"mercure": {"subscribe": ["/.well-known/mercure/subscriptions/{topic}/{subscriber}"]}}),
        SECRET,
    );
    let text = client()
        .get(b.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let newest = list["lastEventID"]
        .as_str()
        .expect("lastEventID")
        .to_string();
    assert_eq!(newest, after[2].0, "{list}");
    let last = publish(&b, serde_json::json!({"topic": "t", "data": "last"})).await;
    resumes_exactly(&a, "t", &newest, &[(last, "last".into())]).await;
}

/// The `Last-Event-ID` header of a fresh Mercure stream on `hub`.
async fn now_on(hub: &HubProcess) -> String {
    let stream = EventStream::open(&hub.url("/.well-known/mercure?topic=h"), &[])
        .await
        .opened()
        .await;
    stream.headers["last-event-id"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_in_a_history_with_no_event_yet_resumes_on_another_hub() {
    let mut redis = Redis::start(None);
    let url = redis.url();
    let args = ["--redis", &url, "--heartbeat", "1"];
    let (a, b) = (HubProcess::start(&args), HubProcess::start(&args));
    let old = publish(&a, serde_json::json!({"topic": "h", "data": "old"})).await;
    for hub in [&a, &b] {
        hub.wait_metric("ssehub_history_events", |n| n == 1).await;
    }
    // Redis comes back empty: both hubs take up a new history, with no event in it yet.
    redis.kill();
    let _redis = Redis::start_on(redis.port, None);
    let old_epoch = old.split('-').next().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let now = loop {
        let (on_a, on_b) = (now_on(&a).await, now_on(&b).await);
        let new = |id: &str| id.split('-').next() != Some(old_epoch.as_str());
        if new(&on_a) && new(&on_b) {
            break on_a;
        }
        assert!(std::time::Instant::now() < deadline, "{on_a} {on_b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cluster_shaped(&now), "{now}");
    // From there on B: the new history only, not what B still holds of the lost one.
    let mut from_now = EventStream::open(
        &b.url("/events?topic=h"),
        &[("last-event-id", now.as_str())],
    )
    .await
    .opened()
    .await;
    // A's writer takes up the new history on its next connection: 503 until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let resp = client()
            .post(a.publish_url("/publish"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"topic": "h", "data": "new"}).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if status == 200 {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            break json["id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "{status} {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pairs(&from_now.events(1).await), [(first, "new".into())]);
}
