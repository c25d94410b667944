//! One Redis server (`--redis`) or a Redis Cluster (`--redis-cluster`), behind one connection
//! type, so that the writer and the reader work on both.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::RoutingInfo;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::store::StoreError;

/// Where the cluster's Redis is.
pub(crate) enum Backend {
    Single(redis::Client),
    /// The seed nodes (`redis://HOST:PORT`); the rest is discovered.
    Cluster(Vec<String>),
}

/// A connection to either (cheap to clone: both multiplex).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Backend {
    /// `--redis URL`.
    pub(crate) fn single(url: &str) -> Result<Backend, StoreError> {
        redis::Client::open(url)
            .map(Backend::Single)
            .map_err(|e| StoreError(format!("--redis: bad URL: {e}")))
    }

    /// `--redis-cluster HOST:PORT,...` (each may also be a `redis://` URL).
    pub(crate) fn cluster(nodes: &[String]) -> Result<Backend, StoreError> {
        let nodes: Vec<String> = nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| match n.contains("://") {
                true => n.to_string(),
                false => format!("redis://{n}"),
            })
            .collect();
        if nodes.is_empty() {
            return Err(StoreError("--redis-cluster: no HOST:PORT given".into()));
        }
        // Checks the addresses now, so that a typo is told at start.
        redis::cluster::ClusterClient::new(nodes.clone())
            .map_err(|e| StoreError(format!("--redis-cluster: bad address: {e}")))?;
        Ok(Backend::Cluster(nodes))
    }

    /// The flag that named it, for messages.
    pub(crate) fn flag(&self) -> &'static str {
        match self {
            Backend::Single(_) => "--redis",
            Backend::Cluster(_) => "--redis-cluster",
        }
    }

    /// A new connection; `response` bounds each answer (`None`: the caller bounds it).
    pub(crate) async fn connect(&self, response: Option<Duration>) -> RedisResult<Conn> {
        let connect = Duration::from_secs(1);
        match self {
            Backend::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(response);
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Single)
            }
            Backend::Cluster(nodes) => {
                let mut builder = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(connect)
                    // A failover takes seconds: the callers' own bounds and retries cover it.
                    .retries(2);
                if let Some(response) = response {
                    builder = builder.response_timeout(response);
                }
                builder
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster)
            }
        }
    }
}

impl Conn {
    /// `WAIT replicas within`: how many replicas hold every write this connection sent before it
    /// to the master of `key` (on a Redis Cluster, the master of `key`'s slot; a keyless `WAIT`
    /// would go to every master).
    pub(crate) async fn wait_replicas(
        &mut self,
        key: &str,
        replicas: u16,
        within: Duration,
    ) -> RedisResult<i64> {
        use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
        let master = Route::new(super::keys::key_slot(key), SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
        self.wait_on(routing, replicas, within).await
    }

    /// `WAIT replicas within` on every master (on one Redis, the one): how many replicas, at
    /// least, hold every write this connection sent to its master before. For writes spread
    /// over slots, such as a batch's publisher-id claims.
    pub(crate) async fn wait_replicas_everywhere(
        &mut self,
        replicas: u16,
        within: Duration,
    ) -> RedisResult<i64> {
        use redis::cluster_routing::{AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy};
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::Aggregate(AggregateOp::Min)),
        ));
        self.wait_on(routing, replicas, within).await
    }

    /// `WAIT`, sent where `routing` says on a Redis Cluster (one Redis has one master).
    async fn wait_on(
        &mut self,
        routing: RoutingInfo,
        replicas: u16,
        within: Duration,
    ) -> RedisResult<i64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(within.as_millis().max(1) as u64);
        match self {
            Conn::Single(c) => wait.query_async(c).await,
            Conn::Cluster(c) => {
                let answer = c.route_command(wait, routing).await?;
                Ok(redis::from_redis_value(answer)?)
            }
        }
    }

    /// Whether this is a Redis Cluster's connection (keys in different slots may be on
    /// different masters).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
