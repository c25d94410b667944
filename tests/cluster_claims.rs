//! Publisher ids in cluster mode when a fault falls between an id's claim and its event's
//! transaction (docs/cluster.md, "Publisher-chosen ids"): a retry publishes the event when the
//! transaction never ran, and is refused (`409`) when it ran and only its answer was lost; never
//! a loss, never a duplicate. Against a real `redis-server`.

mod common;
mod redis_server;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, HubProcess};
use redis_server::Redis;

/// `redis-cli -p PORT ARGS...` (the Debian package redis-tools; scripts/test installs it).
fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn publish(hub: &HubProcess, id: &str, data: &str) -> (u16, String) {
    let body = serde_json::json!({"topic": "c", "id": id, "data": data});
    let resp = client()
        .post(hub.publish_url("/publish"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("publish");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Publishes `id` until the answer is not `503` (at most 30 s, as `ssehub publish` would);
/// that answer, and the reasons of the `503`s met.
async fn publish_until_answered(hub: &HubProcess, id: &str, data: &str) -> (u16, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refusals = Vec::new();
    loop {
        let (status, reason) = publish(hub, id, data).await;
        if status != 503 || Instant::now() > deadline {
            return (status, refusals);
        }
        refusals.push(reason);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes what a hub leaves between claim and transaction: id `id` claimed (for a day) `age`
/// ago, and, if `ran`, the done key its transaction writes.
fn leave_claim(redis: &Redis, id: &str, age_secs: u64, ran: bool) {
    let done = format!("ssehub:{{t}}:done:{id}");
    let claim = format!("pending 86400000 {done}");
    let left = (86_400 - age_secs).to_string();
    redis_cli(
        redis,
        &["SET", &format!("ssehub:id:{{{id}}}"), &claim, "EX", &left],
    );
    if ran {
        redis_cli(redis, &["SET", &done, "1", "EX", &left]);
    }
}

/// A claim just made may belong to a publish still running: a retry is told to come back
/// (`503`), and once the claim is older than any publish can be, with no transaction behind
/// it, the retry publishes the event, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_publish_cut_off_is_settled_and_the_retry_published() {
    let redis = Redis::start(None);
    let hub = HubProcess::start(&["--redis", &redis.url()]);
    let mut stream = hub.subscribe("?topic=c").await.opened().await;
    leave_claim(&redis, "order-1", 0, false);
    let (status, reason) = publish(&hub, "order-1", "placed").await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("being published"), "{reason}");
    let (status, refusals) = publish_until_answered(&hub, "order-1", "placed").await;
    assert_eq!(status, 200, "{refusals:?}");
    let event = stream.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        ("order-1", "placed")
    );
    // Once, and the id is the event's now.
    assert_eq!(publish(&hub, "order-1", "again").await.0, 409);
    assert_eq!(publish(&hub, "order-2", "next").await.0, 200);
    assert_eq!(stream.next_event().await.data, "next");
}

/// A claim pending for longer than any publish runs: with its done key, Redis ran the
/// transaction and only the answer was lost (the connection dropped), so the retry is `409`;
/// without, the hub died before it, and the retry publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_answer_was_lost_is_not_published_twice() {
    let redis = Redis::start(None);
    let hub = HubProcess::start(&["--redis", &redis.url()]);
    leave_claim(&redis, "ran", 10, true);
    leave_claim(&redis, "never-ran", 10, false);
    assert_eq!(publish(&hub, "ran", "x").await.0, 409);
    assert_eq!(publish(&hub, "never-ran", "y").await.0, 200);
    // Answered, the claim now holds the event's place and the done keys are gone.
    let held = redis_cli(&redis, &["GET", "ssehub:id:{never-ran}"]);
    assert!(!held.starts_with("pending"), "{held}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis_cli(&redis, &["KEYS", "ssehub:*:done:never-ran"]).is_empty() {
        assert!(Instant::now() < deadline, "done keys left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
