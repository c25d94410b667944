//! The relay when its hub cannot take events for a while (cluster mode with Redis down): it
//! drops the upstream connection and resumes it from the last event the hub took, so an
//! upstream that keeps history sends the rest again and nothing is lost or repeated.

#![cfg(feature = "cluster")]

mod common;
mod redis_server;

use std::time::{Duration, Instant};

use common::*;
use redis_server::Redis;

/// Waits until the relay says its upstream is connected.
async fn connected(hub: &HubProcess) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = hub.metrics_text().await;
        let up = text
            .lines()
            .any(|l| l.starts_with("ssehub_upstream_connected{topic=\"dev\"") && l.ends_with(" 1"));
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "the relay never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The data of the relayed events (not the relay's own `upstream` events) up to `last`.
async fn data_until(stream: &mut EventStream, last: &str) -> Vec<String> {
    tokio::time::timeout(3 * WAIT, read_data_until(stream, last))
        .await
        .unwrap_or_else(|_| panic!("{last} never came"))
}

async fn read_data_until(stream: &mut EventStream, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let e = stream.next_event().await;
        if e.event == "upstream" {
            continue;
        }
        let done = e.data == last;
        got.push(e.data);
        if done {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_hub_could_not_take_are_fetched_again_from_the_upstream() {
    let dir = std::env::temp_dir().join(format!("ssehub-upstream-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Redis::start(Some(&dir));
    let source = HubProcess::start(&["--publish-listen", "127.0.0.1:0"]);
    let upstream = format!("dev={}", source.url("/events?topic=t"));
    let relay = HubProcess::start(&[
        "--redis",
        &redis.url(),
        "--upstream",
        &upstream,
        "--heartbeat",
        "1",
    ]);
    connected(&relay).await;
    let mut on_relay = relay.subscribe("?topic=dev").await.opened().await;
    for i in 0..5 {
        source.publish_ok("?topic=t", &format!("e{i}")).await;
    }
    let before = data_until(&mut on_relay, "e4").await;
    assert_eq!(before, ["e0", "e1", "e2", "e3", "e4"]);

    // Redis down: the relay's publishes are refused; the source keeps the events.
    let port = redis.port;
    redis.kill();
    for i in 5..10 {
        source.publish_ok("?topic=t", &format!("e{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _redis = Redis::start_on(port, Some(&dir));

    let after = data_until(&mut on_relay, "e9").await;
    assert_eq!(
        after,
        ["e5", "e6", "e7", "e8", "e9"],
        "every event the hub could not take came again, once, in order"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
