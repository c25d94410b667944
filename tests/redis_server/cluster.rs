//! A Redis Cluster on loopback for the `--redis-cluster` tests: real `redis-server
//! --cluster-enabled yes` processes joined by `redis-cli --cluster create`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::free_port;
use crate::common::WAIT;

/// Three masters (with or without a replica each), killed (and their directory removed) when
/// dropped.
pub struct RedisCluster {
    pub nodes: Vec<Child>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Three masters; with `replicas`, one replica each (six nodes).
    pub fn start(replicas: bool) -> RedisCluster {
        // Tests of one binary run at once, in one process: a directory of each cluster's own.
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ssehub-rcluster-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
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
    pub fn all(&self) -> String {
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        addrs.join(",")
    }

    /// Two of the three nodes: the hubs find the third themselves.
    pub fn seeds(&self) -> String {
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

/// `redis-cli -p PORT ARGS...`: what it printed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (the Debian package redis-tools; scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `CLUSTER NODES`: a node's port, whether it is a master, its master's node id (for
/// a replica), its own id, and its slot ranges.
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    master_id: String,
    slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    fn node_lines(&self) -> Vec<NodeLine> {
        let alive = self
            .ports
            .iter()
            .find(|p| cli(**p, &["ping"]).trim() == "PONG")
            .expect("a live node");
        cli(*alive, &["cluster", "nodes"])
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let addr = f.get(1)?.split('@').next()?;
                let slots = f
                    .iter()
                    .skip(8)
                    .filter(|r| !r.starts_with('['))
                    .filter_map(|r| {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect();
                Some(NodeLine {
                    id: f[0].to_string(),
                    port: addr.rsplit(':').next()?.parse().ok()?,
                    master: f.get(2)?.contains("master") && !f[2].contains("fail"),
                    master_id: f.get(3)?.to_string(),
                    slots,
                })
            })
            .collect()
    }

    /// The port of the master that serves `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        self.node_lines()
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port)
            .expect("a master for every slot")
    }

    /// The index in `nodes` of a replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> usize {
        let lines = self.node_lines();
        let id = &lines
            .iter()
            .find(|n| n.port == port)
            .expect("that master")
            .id;
        let replica = lines
            .iter()
            .find(|n| !n.master && &n.master_id == id)
            .expect("a replica of it")
            .port;
        self.ports
            .iter()
            .position(|p| *p == replica)
            .expect("a node of ours")
    }
}
