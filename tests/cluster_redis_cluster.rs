//! Cluster mode on a Redis Cluster (`--redis-cluster`): three real `redis-server
//! --cluster-enabled yes` on loopback, joined by `redis-cli --cluster create`, and three real
//! hubs. An event published on one hub reaches the others' subscribers in one order; a client
//! resumes on another hub with no gap and no duplicate while publishing goes on; the shards
//! spread over the three masters.

mod common;
mod redis_server;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, EventStream, HubProcess, WAIT};
use redis_server::cluster::{cli, RedisCluster};
use ssehub::parse::ParsedEvent;

async fn publish(url: &str, topic: &str, data: &str) -> String {
    let body = serde_json::json!({"topic": topic, "data": data}).to_string();
    let resp = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["id"].as_str().expect("an id").to_string()
}

/// Publishes until the cluster takes it (503 while a master is away): the id.
async fn publish_until_taken(url: &str, topic: &str, data: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = serde_json::json!({"topic": topic, "data": data}).to_string();
        let resp = client()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("publish");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if status == 200 {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            return json["id"].as_str().expect("an id").to_string();
        }
        assert_eq!(status, 503, "{text}");
        assert!(Instant::now() < deadline, "no failover within 20s: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pairs(events: &[ParsedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

#[tokio::test]
async fn hubs_on_a_redis_cluster_deliver_resume_and_spread_the_shards() {
    let redis = RedisCluster::start(false);
    let seeds = redis.seeds();
    let start = || HubProcess::start(&["--redis-cluster", &seeds, "--heartbeat", "1"]);
    let (a, b, c) = (start(), start(), start());
    let topics: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    let query: String = topics.iter().map(|t| format!("&topic={t}")).collect();
    let query = format!("?{}", &query[1..]);
    let mut on_b = b.subscribe(&query).await.opened().await;
    let mut on_c = c.subscribe(&query).await.opened().await;

    // Published on A, one topic after another (each topic in its shard), 3 rounds over them.
    let url = a.publish_url("/publish");
    let names = topics.clone();
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        for round in 0..3 {
            for t in &names {
                let data = format!("{t}-{round}");
                acked.push((publish(&url, t, &data).await, data));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        acked
    });
    let total = 3 * topics.len();
    // B's client takes 30 events, then reconnects to hub C with the last id it got from B,
    // while A is still publishing: no gap, no duplicate.
    let first = pairs(&on_b.events(30).await);
    drop(on_b);
    let last_id = first.last().unwrap().0.clone();
    let mut resumed = EventStream::open(
        &c.url(&format!("/events{query}")),
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    assert!(
        !publisher.is_finished(),
        "the resume came while A was publishing"
    );
    let rest = pairs(&resumed.events(total - 30).await);
    let acked = publisher.await.unwrap();
    let on_c_events = pairs(&on_c.events(total).await);

    // Everything reached C, in one order, with the ids A answered (a topic's events in their
    // publish order).
    let mut sorted_c = on_c_events.clone();
    sorted_c.sort();
    let mut sorted_acked = acked.clone();
    sorted_acked.sort();
    assert_eq!(
        sorted_c, sorted_acked,
        "C got every acknowledged event once"
    );
    for t in &topics {
        let of = |events: &[(String, String)]| -> Vec<(String, String)> {
            let prefix = format!("{t}-");
            events
                .iter()
                .filter(|(_, d)| d.starts_with(&prefix))
                .cloned()
                .collect()
        };
        assert_eq!(of(&on_c_events), of(&acked), "topic {t} in publish order");
    }
    // B's client: the same events in the same order, across the move between hubs.
    let got: Vec<(String, String)> = first.into_iter().chain(rest).collect();
    assert_eq!(got, on_c_events, "B then C delivered as C alone did");
    assert!(
        resumed
            .try_next_event(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing more"
    );

    // The shards spread over the masters: each holds some of the streams written, each
    // stream in its own slot.
    let mut slots = Vec::new();
    for port in &redis.ports {
        let keys = cli(*port, &["--scan", "--pattern", "ssehub:{*}:log"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        assert!(!keys.is_empty(), "master {port} holds no shard");
        for key in keys {
            let slot = cli(*port, &["cluster", "keyslot", key]);
            slots.push(slot.trim().to_string());
        }
    }
    let count = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), count, "one slot per shard");

    // Publisher ids are claimed cluster-wide (each claim in its own slot, the done key in its
    // shard's): taken on A, refused on B. A claim left pending (a hub that died before its
    // transaction) is settled by the retry and taken over.
    let with_id = |id: &str| serde_json::json!({"topic": "c0", "id": id, "data": id}).to_string();
    let post = |url: String, body: String| async move {
        let resp = client()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("publish");
        resp.status().as_u16()
    };
    assert_eq!(post(a.publish_url("/publish"), with_id("rc-1")).await, 200);
    assert_eq!(post(b.publish_url("/publish"), with_id("rc-1")).await, 409);
    let left = "pending 86400000 ssehub:{t}:done:rc-2";
    cli(
        redis.ports[0],
        &["-c", "SET", "ssehub:id:{rc-2}", left, "EX", "86390"],
    );
    assert_eq!(post(b.publish_url("/publish"), with_id("rc-2")).await, 200);
    assert_eq!(post(c.publish_url("/publish"), with_id("rc-2")).await, 409);
    drop(a);
}

#[test]
fn redis_cluster_is_refused_with_data_dir_or_redis() {
    let refused = |args: &[&str]| {
        let out = common::bare_command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--redis-cluster",
                "127.0.0.1:1",
            ])
            .args(args)
            .output()
            .expect("run ssehub");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = refused(&["--data-dir", "/nonexistent/ssehub"]);
    assert!(dir.contains("--redis-cluster and --data-dir"), "{dir}");
    let both = refused(&["--redis", "redis://127.0.0.1:1"]);
    assert!(both.contains("--redis-cluster"), "{both}");
    let unreachable = refused(&[]);
    assert!(
        unreachable.contains("--redis-cluster: cannot reach Redis"),
        "{unreachable}"
    );
}

#[tokio::test]
async fn a_failover_loses_nothing_acknowledged() {
    let mut redis = RedisCluster::start(true);
    let nodes = redis.all();
    // Acknowledged once the shard's master and its replica hold it (WAIT on that master).
    let start = || {
        HubProcess::start(&[
            "--redis-cluster",
            &nodes,
            "--heartbeat",
            "1",
            "--redis-wait-replicas",
            "1",
        ])
    };
    let (a, b) = (start(), start());
    let topics: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let query: String = topics.iter().map(|t| format!("&topic={t}")).collect();
    let mut on_b = b
        .subscribe(&format!("?{}", &query[1..]))
        .await
        .opened()
        .await;
    let url = a.publish_url("/publish");
    let mut acked = Vec::new();
    for t in &topics {
        let data = format!("{t}-before");
        acked.push((publish(&url, t, &data).await, data));
    }
    assert_eq!(pairs(&on_b.events(acked.len()).await), acked);
    // Each publish's WAIT went to the master of its shard: on every node, as many WAITs as
    // entries in the streams it is master of (replicas: none of either).
    for port in &redis.ports {
        let role = cli(*port, &["role"]);
        let entries: usize = if role.starts_with("master") {
            cli(*port, &["--scan", "--pattern", "ssehub:{*}:log"])
                .lines()
                .filter(|k| !k.is_empty())
                .map(|k| cli(*port, &["xlen", k]).trim().parse::<usize>().unwrap())
                .sum()
        } else {
            0
        };
        let stats = cli(*port, &["info", "commandstats"]);
        let waits: usize = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap());
        assert_eq!(
            waits,
            entries,
            "node {port} ({})",
            role.lines().next().unwrap_or("")
        );
    }
    // A publish with an id whose claim is on another master than its event is answered only
    // once that master's replica holds the claim too: a failover there cannot forget the id.
    publish(&url, "held", "probe").await;
    let event_master = master_with_entry(&redis, "probe");
    let id = (0..)
        .map(|i| format!("held-{i}"))
        // Not the first master's: its replica must be in shape to take over below.
        .find(|id| {
            let master = redis.master_of(&format!("ssehub:id:{{{id}}}"));
            master != event_master && master != redis.ports[0]
        })
        .unwrap();
    let claim_master = redis.master_of(&format!("ssehub:id:{{{id}}}"));
    let replica = redis.replica_of(claim_master);
    let signal = |sig: &str| {
        let pid = redis.nodes[replica].id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    let with_id = serde_json::json!({"topic": "held", "data": "with id", "id": id}).to_string();
    let post = || a.publish_json(&with_id);
    // Also a claim on the same master left pending by a publish whose script ran (its done key,
    // on the event's master, says so) and whose answer was lost.
    let ran_id = (0..)
        .map(|i| format!("ran-{i}"))
        .find(|id| redis.master_of(&format!("ssehub:id:{{{id}}}")) == claim_master)
        .unwrap();
    let done = (0..)
        .map(|i| format!("ssehub:{{d{i}}}:done:test"))
        .find(|key| redis.master_of(key) == event_master)
        .unwrap();
    let claim = format!("pending 86400000 {done}");
    let ran_key = format!("ssehub:id:{{{ran_id}}}");
    cli(claim_master, &["SET", &ran_key, &claim, "EX", "86390"]);
    cli(event_master, &["SET", &done, "ran", "EX", "86400"]);
    let ran_body = serde_json::json!({"topic": "held", "data": "ran", "id": ran_id}).to_string();
    signal("-STOP");
    let (status, reason) = post().await;
    // A retry is not told the id is taken while its claim is on no replica.
    let (again, why) = post().await;
    let (ran, ran_why) = a.publish_json(&ran_body).await;
    signal("-CONT");
    assert_eq!(ran, 503, "{ran_why}");
    assert!(ran_why.contains("not yet on the replicas"), "{ran_why}");
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.contains("publisher ids are on 0 of the 1 replicas"),
        "{reason}"
    );
    assert_eq!(again, 503, "{why}");
    assert!(why.contains("not yet on the replicas"), "{why}");
    // Written all the same: once the replica is back, the retry is told so.
    let deadline = Instant::now() + WAIT;
    while !cli(redis.ports[replica], &["info", "replication"]).contains("master_link_status:up") {
        assert!(Instant::now() < deadline, "the replica did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(post().await.0, 409);
    assert_eq!(a.publish_json(&ran_body).await.0, 409);
    // Every acknowledged event is on a replica: the first master goes at once.
    let _ = redis.nodes[0].kill();
    let _ = redis.nodes[0].wait();

    let mut after = Vec::new();
    for t in &topics {
        let data = format!("{t}-after");
        after.push((publish_until_taken(&url, t, &data).await, data));
    }
    // Every event acknowledged after the failover reaches B, once; each topic in order.
    let Ok(got) = tokio::time::timeout(Duration::from_secs(20), on_b.events(after.len())).await
    else {
        panic!(
            "B delivered nothing after the failover: {}",
            b.stderr_text()
        );
    };
    let got = pairs(&got);
    let mut sorted = got.clone();
    sorted.sort();
    let mut expected = after.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    assert!(on_b
        .try_next_event(Duration::from_millis(500))
        .await
        .is_err());
    assert_eq!(b.wait_metric("ssehub_redis_up", |v| v == 1).await, 1);
}

/// The port of the master whose streams hold an entry with `data`.
fn master_with_entry(redis: &RedisCluster, data: &str) -> u16 {
    *redis
        .ports
        .iter()
        .find(|port| {
            cli(**port, &["role"]).starts_with("master")
                && cli(**port, &["--scan", "--pattern", "ssehub:{*}:log"])
                    .lines()
                    .filter(|k| !k.is_empty())
                    .any(|k| {
                        cli(**port, &["xrange", k, "-", "+"])
                            .lines()
                            .any(|l| l == data)
                    })
        })
        .expect("a master holding the entry")
}
