//! The hub's counters, for `/metrics`.

use std::sync::atomic::Ordering;

use super::Hub;

/// Counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// In cluster mode: whether this hub's reader reaches Redis, and the events it delivered
    /// late (see [`Cluster::health`](crate::cluster::Cluster::health)). `None` otherwise.
    pub redis: Option<(bool, u64)>,
    /// Event-stream bytes written to streams (as their writers report them with
    /// [`Subscription::delivered`](super::Subscription::delivered)).
    pub bytes_out: u64,
    /// Subscriptions that resumed from an id, whose first events came from memory.
    pub replays_memory: u64,
    /// Subscriptions that resumed from an id, whose first events came from the store (memory
    /// had let them go).
    pub replays_store: u64,
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
    fn redis_health(&self) -> Option<(bool, u64)> {
        self.inner
            .cluster
            .as_ref()
            .map(crate::cluster::Cluster::health)
    }

    #[cfg(not(feature = "cluster"))]
    fn redis_health(&self) -> Option<(bool, u64)> {
        None
    }
}
