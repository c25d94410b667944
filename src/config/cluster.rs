//! Cluster mode's flags (`docs/cluster.md`): one Redis server or a Redis Cluster as the shared
//! history of several hubs.

use clap::Args;

/// `--redis`, `--redis-cluster`, `--redis-shards`, `--redis-wait-replicas`.
///
/// ```
/// use ssehub::config::{load, Command};
/// let cli = load(["ssehub", "serve", "--redis-cluster", "10.0.0.5:7000,10.0.0.6:7000"]).unwrap();
/// let Command::Serve(serve) = cli.command else { unreachable!() };
/// assert_eq!(serve.cluster.redis_cluster.len(), 2);
/// ```
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Cluster mode: share one history with every hub started with the same Redis
    /// (redis://HOST:PORT[/DB]; see docs/cluster.md). Publishes are answered once Redis took
    /// them (503 when it cannot, within a second); every hub delivers every event, in one
    /// order, with ids any hub resumes from. Not with --data-dir: Redis holds the history.
    #[arg(
        long,
        env = "SSEHUB_REDIS",
        value_name = "URL",
        hide_env_values = true,
        conflicts_with = "redis_cluster",
        help_heading = "History"
    )]
    pub redis: Option<String>,

    /// Cluster mode on a Redis Cluster, reached through any of these nodes
    /// (HOST:PORT[,HOST:PORT...]): as --redis, with the shards spread over its masters.
    #[arg(
        long,
        env = "SSEHUB_REDIS_CLUSTER",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        hide_env_values = true,
        help_heading = "History"
    )]
    pub redis_cluster: Vec<String>,

    /// With --redis or --redis-cluster: the Redis streams (shards) the log is split into, the
    /// same on every hub (the first hub records it in Redis; a hub given another count refuses
    /// to start).
    #[arg(long, env = "SSEHUB_REDIS_SHARDS", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "History")]
    pub redis_shards: u16,

    /// With --redis or --redis-cluster: answer a publish only once this many replicas of its
    /// master hold it too (Redis WAIT, up to 500 ms; fewer: 503, and the publisher tries
    /// again), so an acknowledged event survives a failover. 0: once the master holds it.
    #[arg(
        long,
        env = "SSEHUB_REDIS_WAIT_REPLICAS",
        value_name = "N",
        default_value_t = 0,
        help_heading = "History"
    )]
    pub redis_wait_replicas: u16,
}

impl ClusterArgs {
    /// Whether a Redis (either kind) holds the history.
    ///
    /// ```
    /// use ssehub::config::{load, Command};
    /// let cli = load(["ssehub", "serve", "--redis", "redis://127.0.0.1"]).unwrap();
    /// let Command::Serve(serve) = cli.command else { unreachable!() };
    /// assert_eq!(serve.cluster.flag(), Some("--redis"));
    /// ```
    pub fn flag(&self) -> Option<&'static str> {
        match (&self.redis, self.redis_cluster.is_empty()) {
            (Some(_), _) => Some("--redis"),
            (None, false) => Some("--redis-cluster"),
            (None, true) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load, Command};

    #[test]
    fn redis_and_redis_cluster_are_refused_together() {
        let both = [
            "ssehub",
            "serve",
            "--redis",
            "redis://a",
            "--redis-cluster",
            "b:1",
        ];
        let refused = load(both).unwrap_err().to_string();
        assert!(refused.contains("--redis-cluster"), "{refused}");
        let cli = load(["ssehub", "serve", "--redis-cluster", "a:1, b:2"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        assert_eq!(serve.cluster.flag(), Some("--redis-cluster"));
    }
}
