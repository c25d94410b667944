//! Publisher ids in cluster mode when a fault falls between an id's claim and its event's
//! script (docs/cluster.md, "Publisher-chosen ids"): a retry publishes the event when the script
//! never ran (and fences it off for good), and is refused (`409`) when it ran and only its answer
//! was lost; two retries at once publish it once. Never a loss, never a duplicate. Against a
//! real `redis-server`, with the states a fault leaves written into it.

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

/// Writes what a hub leaves between claim and script: id `id` claimed (for a day) `age` ago by
/// an attempt whose done key is returned, and, if `ran`, that key as its script writes it.
fn leave_claim(redis: &Redis, id: &str, age_secs: u64, ran: bool) -> String {
    let done = format!("ssehub:{{t}}:done:{id}-0123456789abcdef");
    let claim = format!("pending 86400000 {done}");
    let left = (86_400 - age_secs).to_string();
    redis_cli(
        redis,
        &["SET", &format!("ssehub:id:{{{id}}}"), &claim, "EX", &left],
    );
    if ran {
        redis_cli(redis, &["SET", &done, "ran", "EX", &left]);
    }
    done
}

/// A claim just made may belong to a publish still running: a retry is told to come back
/// (`503`); once the claim is older than any publish runs, the retry fences the claimed attempt
/// off, takes the claim over and publishes the event, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_publish_cut_off_is_settled_and_the_retry_published() {
    let redis = Redis::start(None);
    let hub = HubProcess::start(&["--redis", &redis.url()]);
    let mut stream = hub.subscribe("?topic=c").await.opened().await;
    let done = leave_claim(&redis, "order-1", 0, false);
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
    // The cut-off attempt can never run now: its script would find its done key.
    assert_eq!(redis_cli(&redis, &["GET", &done]), "fenced");
    // Once, and the id is the event's now.
    assert_eq!(publish(&hub, "order-1", "again").await.0, 409);
    assert_eq!(publish(&hub, "order-2", "next").await.0, 200);
    assert_eq!(stream.next_event().await.data, "next");
}

/// A claim pending for longer than any publish runs: its done key says `ran`, so the script
/// ran and only its answer was lost (the connection dropped): the retry is `409`. Without it,
/// the hub died before its script: the retry publishes; so does one after a retry that fenced
/// the claim and died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_answer_was_lost_is_not_published_twice() {
    let redis = Redis::start(None);
    let hub = HubProcess::start(&["--redis", &redis.url()]);
    leave_claim(&redis, "ran", 10, true);
    let fenced = leave_claim(&redis, "never-ran", 10, false);
    // A retry fenced this one and died before it took the claim over: the next one takes it.
    let died = leave_claim(&redis, "fenced-by-a-retry", 10, false);
    redis_cli(&redis, &["SET", &died, "fenced", "EX", "86390"]);
    assert_eq!(publish(&hub, "ran", "x").await.0, 409);
    assert_eq!(publish(&hub, "never-ran", "y").await.0, 200);
    assert_eq!(publish(&hub, "fenced-by-a-retry", "z").await.0, 200);
    assert_eq!(redis_cli(&redis, &["GET", &fenced]), "fenced");
    // Answered, the claims hold their events' places, and the done keys their scripts wrote
    // are gone: only the ones written here are left.
    let held = redis_cli(&redis, &["GET", "ssehub:id:{never-ran}"]);
    assert!(!held.starts_with("pending"), "{held}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys = redis_cli(&redis, &["KEYS", "ssehub:*:done:*"]);
        if keys.lines().all(|k| k.starts_with("ssehub:{t}:")) {
            break;
        }
        assert!(Instant::now() < deadline, "done keys: {keys}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two hubs retry the same ids at once against claims left stale: each event is published
/// once, by one of them; the other is told to come back (`503`) or that it is taken (`409`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_settle_a_claim_once() {
    let redis = Redis::start(None);
    let a = HubProcess::start(&["--redis", &redis.url()]);
    let b = HubProcess::start(&["--redis", &redis.url()]);
    let mut stream = a.subscribe("?topic=c").await.opened().await;
    let ids: Vec<String> = (0..10).map(|i| format!("race-{i}")).collect();
    for id in &ids {
        leave_claim(&redis, id, 10, false);
    }
    for id in &ids {
        let (on_a, on_b) = tokio::join!(publish(&a, id, "a"), publish(&b, id, "b"));
        let mut statuses = [on_a.0, on_b.0];
        statuses.sort_unstable();
        assert!(
            statuses == [200, 409] || statuses == [200, 503],
            "{id}: {on_a:?} {on_b:?}"
        );
    }
    let got: Vec<String> = stream
        .events(ids.len())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, ids);
    assert!(stream
        .try_next_event(Duration::from_millis(500))
        .await
        .is_err());
}
