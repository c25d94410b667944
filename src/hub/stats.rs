//! The hub's counters, for `/metrics`.

use std::sync::atomic::Ordering;

use super::Hub;

/// Counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Open streams.
    pub clients: usize,
    /// The limit on open streams.
    pub max_clients: usize,
    /// Events published since start.
    pub published_total: u64,
    /// Subscriptions refused because the hub was full.
    pub rejected_total: u64,
    /// Streams ended because they fell too far behind.
    pub slow_disconnects_total: u64,
    /// Topics known.
    pub topics: usize,
    /// Events retained for replay in memory.
    pub history_events: usize,
    /// Their encoded bytes, each event counted once (see [`HubConfig::history_bytes`](super::HubConfig::history_bytes)).
    pub history_bytes: u64,
    /// A write to the history store failed; publishes are refused until a restart.
    pub store_failed: bool,
    /// In cluster mode, how this hub's reader of Redis fares. `None` otherwise.
    pub redis: Option<RedisHealth>,
    /// Event-stream bytes written to streams (as their writers report them with
    /// [`Subscription::delivered`](super::Subscription::delivered)).
    pub bytes_out: u64,
    /// Subscriptions that resumed from an id, whose first events came from memory.
    pub replays_memory: u64,
    /// Subscriptions that resumed from an id, whose first events came from the store (memory
    /// had let them go).
    pub replays_store: u64,
}

/// How a hub's reader of the cluster's Redis fares (cluster mode, `/metrics`).
///
/// ```
/// let health = ssehub::RedisHealth { up: true, late_events: 0, lag_seconds: 0.002, trims: 0 };
/// assert!(health.up);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RedisHealth {
    /// Its last round with Redis succeeded.
    pub up: bool,
    /// Events it delivered late, out of order, because a master's clock stepped back.
    pub late_events: u64,
    /// After its last round, how far behind Redis' clock the point below which it has
    /// delivered everything is: a millisecond or so when it keeps up, more while it catches up.
    pub lag_seconds: f64,
    /// Times it fell behind Redis' trimming (events it never read were gone; its streams
    /// ended and their clients got a `gap`).
    pub trims: u64,
}

impl Hub {
    /// Current counters.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = ssehub::Hub::builder().build();
    /// hub.publish_one(ssehub::Event::new("x")).await?;
    /// let stats = hub.stats();
    /// assert_eq!((stats.published_total, stats.history_events, stats.clients), (1, 1, 0));
    /// # Ok::<(), ssehub::PublishError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            clients: i.slots.used(),
            max_clients: i.slots.max(),
            published_total: i.published.load(Ordering::Relaxed),
            rejected_total: i.rejected.load(Ordering::Relaxed),
            slow_disconnects_total: i.slow_disconnects.load(Ordering::Relaxed),
            topics: i.log.topic_count(),
            history_events: i.log.retained(),
            history_bytes: i.log.retained_bytes(),
            store_failed: i.store_failed.load(Ordering::Acquire),
            redis: self.redis_health(),
            bytes_out: i.meters.bytes_out.sum(),
            replays_memory: i.meters.replays_memory.load(Ordering::Relaxed),
            replays_store: i.meters.replays_store.load(Ordering::Relaxed),
        }
    }

    #[cfg(feature = "cluster")]
    fn redis_health(&self) -> Option<RedisHealth> {
        self.inner
            .cluster
            .as_ref()
            .map(crate::cluster::Cluster::health)
    }

    #[cfg(not(feature = "cluster"))]
    fn redis_health(&self) -> Option<RedisHealth> {
        None
    }
}
