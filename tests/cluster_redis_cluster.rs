//! Cluster mode on a Redis Cluster (`--redis-cluster`): three real `redis-server
//! --cluster-enabled yes` on loopback, joined by `redis-cli --cluster create`, and three real
//! hubs. An event published on one hub reaches the others' subscribers in one order; a client
//! resumes on another hub with no gap and no duplicate while publishing goes on; the shards
//! spread over the three masters.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, EventStream, HubProcess, WAIT};
use ssehub::parse::ParsedEvent;

/// Three masters, no replicas, killed (and their directory removed) when dropped.
struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (the Debian package redis-tools; scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Three masters; with `replicas`, one replica each (six nodes).
    fn start(replicas: bool) -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("ssehub-rcluster-{}-{replicas}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let count = if replicas { 6 } else { 3 };
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let conf = dir.join(format!("nodes-{port}.conf"));
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    // The bus port is the port + 10000 by default, which may be taken (or past
                    // 65535 for an ephemeral port): one of its own.
                    .args(["--cluster-port", &free_port().to_string()])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                    // Replicas sync at once (Redis waits 5 s by default).
                    .args(["--repl-diskless-sync-delay", "0"])
                    .args(["--cluster-config-file", conf.to_str().unwrap()])
                    .args([
                        "--dir",
                        dir.to_str().unwrap(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server (the Debian package redis-server)")
            })
            .collect();
        let cluster = RedisCluster { nodes, ports, dir };
        let deadline = Instant::now() + WAIT;
        while !cluster
            .ports
            .iter()
            .all(|p| cli(*p, &["ping"]).trim() == "PONG")
        {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }])
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "redis-cli --cluster create failed");
        while !cluster
            .ports
            .iter()
            .all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A replica that never synced cannot take over.
        while replicas
            && cluster.ports.iter().any(|p| {
                let info = cli(*p, &["info", "replication"]);
                info.contains("role:slave") && !info.contains("master_link_status:up")
            })
        {
            assert!(Instant::now() < deadline, "the replicas did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Every node.
    fn all(&self) -> String {
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        addrs.join(",")
    }

    /// Two of the three nodes: the hubs find the third themselves.
    fn seeds(&self) -> String {
        format!("127.0.0.1:{},127.0.0.1:{}", self.ports[0], self.ports[1])
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
