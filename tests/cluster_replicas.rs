//! `--redis-wait-replicas N`: a publish is answered only once N replicas of its Redis hold it
//! (Redis `WAIT`), so an acknowledged event survives a failover; with a replica gone the
//! publisher gets `503` and tries again; concurrent publishes share their `WAIT`s (a group
//! commit). A real `redis-server` and a real replica of it.

mod common;
mod redis_server;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, HubProcess, WAIT};
use redis_server::{free_port, Redis};

/// A replica of `master` on `port`, once its link to the master is up.
fn replica_of(master: &Redis, port: u16) -> Redis {
    let master_port = master.port.to_string();
    let replica = Redis::start_with(port, None, &["--replicaof", "127.0.0.1", &master_port]);
    let deadline = Instant::now() + WAIT;
    loop {
        let info = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "replication"])
            .output()
            .expect("redis-cli (redis-tools; scripts/test installs it)");
        if String::from_utf8_lossy(&info.stdout).contains("master_link_status:up") {
            return replica;
        }
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn publish(hub: &HubProcess, data: &str) -> (u16, String) {
    hub.publish_raw("?topic=r", data.to_string()).await
}

async fn publish_with_id(hub: &HubProcess, id: &str) -> (u16, String) {
    let body = serde_json::json!({"topic": "r", "id": id, "data": id});
    hub.publish_json(&body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_wait_for_the_replicas_asked_for() {
    let master = Redis::start(None);
    let replica_port = free_port();
    let replica = replica_of(&master, replica_port);
    let waits = HubProcess::start(&["--redis", &master.url(), "--redis-wait-replicas", "1"]);
    let plain = HubProcess::start(&["--redis", &master.url()]);
    let mut stream = waits.subscribe("?topic=r").await.opened().await;
    assert_eq!(publish(&waits, "replicated").await.0, 200);
    assert_eq!(stream.next_event().await.data, "replicated");

    // No replica: not acknowledged, said why; written all the same, so delivered.
    drop(replica);
    let (status, reason) = publish(&waits, "unreplicated").await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("--redis-wait-replicas"), "{reason}");
    assert_eq!(stream.next_event().await.data, "unreplicated");
    // A hub that does not ask for replicas is answered by the master alone.
    assert_eq!(publish(&plain, "master-only").await.0, 200);
    assert_eq!(stream.next_event().await.data, "master-only");

    // With an id, retried while the replica is away: never a 409 (which a publisher counts as
    // done) until the replica holds the event.
    let (status, reason) = publish_with_id(&waits, "u-1").await;
    assert_eq!(status, 503, "{reason}");
    assert_eq!(stream.next_event().await.data, "u-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, reason) = publish_with_id(&waits, "u-1").await;
        assert_eq!(status, 503, "{reason}");
        if reason.contains("not yet on the replicas") {
            break;
        }
        assert!(Instant::now() < deadline, "{reason}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The replica back: acknowledged again, and the retry is told its event is in.
    let _replica = replica_of(&master, replica_port);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, reason) = publish(&waits, "again").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(publish_with_id(&waits, "u-1").await.0, 409);
    assert_eq!(stream.next_event().await.data, "again");
}

/// `calls` of `cmdstat_wait` in the server's `INFO commandstats`.
fn waits_sent(redis: &Redis) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "INFO", "commandstats"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_their_waits() {
    let master = Redis::start(None);
    let replica = replica_of(&master, free_port());
    let hub = HubProcess::start(&["--redis", &master.url(), "--redis-wait-replicas", "1"]);
    let mut stream = hub.subscribe("?topic=r").await.opened().await;
    assert_eq!(publish(&hub, "first").await.0, 200);
    assert_eq!(stream.next_event().await.data, "first");
    let before = waits_sent(&master);
    let post = |data: String| {
        let url = hub.publish_url("/publish?topic=r");
        tokio::spawn(async move {
            let resp = client().post(url).body(data).send().await.expect("publish");
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    // The replica stalls, so the next publish's WAIT holds the hub's connection; twenty more
    // publishes come in behind it; the replica is back well before that WAIT gives up (500 ms).
    replica.signal("-STOP");
    let blocked = post("blocked".to_string());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let behind: Vec<_> = (0..20).map(|i| post(format!("behind-{i}"))).collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    replica.signal("-CONT");
    let (status, reason) = blocked.await.unwrap();
    assert_eq!(status, 200, "{reason}");
    for publish in behind {
        let (status, reason) = publish.await.unwrap();
        assert_eq!(status, 200, "{reason}");
    }
    // Without a group commit, a WAIT per publish: 21.
    let waits = waits_sent(&master) - before;
    assert!((2..10).contains(&waits), "{waits} WAITs for 21 publishes");
    let mut got: Vec<String> = stream
        .events(21)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    got.sort();
    let mut sent: Vec<String> = (0..20).map(|i| format!("behind-{i}")).collect();
    sent.push("blocked".to_string());
    sent.sort();
    assert_eq!(got, sent);
}
