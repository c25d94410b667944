//! The hub's settings ([`HubConfig`]) and the [`HubBuilder`] setters that fill them in.

use std::sync::Arc;
use std::time::Duration;

use super::HubBuilder;
use crate::store::Store;

/// The hub's settings. Every field has a `serve` flag of the same name.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Streams open at once, at most.
    pub max_clients: usize,
    /// Events retained for replay (all topics together).
    pub history: usize,
    /// Bytes of events retained in memory for replay (all topics together): each event's
    /// encoded bytes, counted once however many topics it is on. Past it, the oldest events
    /// leave, as past `history`; a publish larger than this is refused. With a store that
    /// keeps events, this bounds the memory window (like `memory_history`), not the store.
    pub history_bytes: u64,
    /// Events older than this leave the history (memory and store); `None` for no age limit.
    pub history_age: Option<Duration>,
    /// With a store that keeps events (`--data-dir`), the newest this many of them also stay in
    /// memory, where live delivery and recent replays read; older replays read the store.
    pub memory_history: usize,
    /// Comment sent on idle streams this often; `None` for never.
    pub heartbeat: Option<Duration>,
    /// Reconnection time sent as `retry:` when a stream opens, in milliseconds.
    pub retry_ms: u64,
    /// A subscriber with more unsent bytes than this is ended (it resumes with `Last-Event-ID`).
    pub max_backlog_bytes: u64,
    /// Topics one subscription may name.
    pub max_topics_per_client: usize,
    /// Topics one published event may name (at least 1); an event naming more is refused.
    pub max_topics_per_event: usize,
    /// A subscriber that sent less than this long ago waits out the rest before sending again,
    /// so that under load its events leave in one write. Zero sends every wake-up at once.
    pub batch_window: Duration,
    /// Streams end (cleanly, with [`End::MaxAge`](crate::End::MaxAge)) after 80 to 100% of
    /// this, drawn per stream, and their clients resume with `Last-Event-ID`, losing nothing:
    /// after a deploy, clients spread over the new hubs. `None` (the default): no limit.
    pub max_stream_age: Option<Duration>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            max_clients: 10_000,
            history: 10_000,
            history_bytes: 256 << 20,
            memory_history: 10_000,
            history_age: None,
            heartbeat: Some(Duration::from_secs(15)),
            retry_ms: 3000,
            max_backlog_bytes: 1 << 20,
            max_topics_per_client: 64,
            max_topics_per_event: 64,
            batch_window: Duration::from_millis(10),
            max_stream_age: None,
        }
    }
}

impl HubConfig {
    /// A subscriber owed more events than this is ended. Half of what memory holds, so that
    /// when it comes back the history still holds what it missed.
    pub fn max_backlog_events(&self, store_keeps_events: bool) -> usize {
        (self.memory_len(store_keeps_events) / 2).max(1)
    }

    /// Events the in-memory log holds: all of the history, or with a store that keeps events,
    /// the newest `memory_history` of it.
    pub fn memory_len(&self, store_keeps_events: bool) -> usize {
        if store_keeps_events {
            self.history.min(self.memory_history).max(1)
        } else {
            self.history.max(1)
        }
    }
}

impl HubBuilder {
    /// Streams open at once, at most (default 10,000).
    pub fn max_clients(mut self, n: usize) -> Self {
        self.config.max_clients = n;
        self
    }
    /// Events retained for replay (default 10,000; at least 1).
    pub fn history(mut self, n: usize) -> Self {
        self.config.history = n.max(1);
        self
    }
    /// Bytes of events retained in memory (default 256 MiB; at least 1). See
    /// [`HubConfig::history_bytes`].
    pub fn history_bytes(mut self, bytes: u64) -> Self {
        self.config.history_bytes = bytes.max(1);
        self
    }
    /// Events older than this leave the history (default: no age limit).
    pub fn history_age(mut self, age: Option<Duration>) -> Self {
        self.config.history_age = age;
        self
    }
    /// Events also kept in memory when the store keeps the history (default 10,000).
    pub fn memory_history(mut self, n: usize) -> Self {
        self.config.memory_history = n.max(1);
        self
    }
    /// Heartbeat period for idle streams (default 15 s; `None` for off).
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.config.heartbeat = every;
        self
    }
    /// `retry:` sent when a stream opens, in milliseconds (default 3000).
    pub fn retry_ms(mut self, ms: u64) -> Self {
        self.config.retry_ms = ms;
        self
    }
    /// Unsent bytes past which a subscriber is ended (default 1 MiB).
    pub fn max_backlog_bytes(mut self, bytes: u64) -> Self {
        self.config.max_backlog_bytes = bytes;
        self
    }
    /// Topics one subscription may name (default 64).
    pub fn max_topics_per_client(mut self, n: usize) -> Self {
        self.config.max_topics_per_client = n;
        self
    }
    /// Topics one published event may name (default 64; at least 1).
    pub fn max_topics_per_event(mut self, n: usize) -> Self {
        self.config.max_topics_per_event = n.max(1);
        self
    }
    /// Batch window under load (default 10 ms; zero for none).
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.config.batch_window = window;
        self
    }
    /// Streams end after 80 to 100% of this (default: no limit). See
    /// [`HubConfig::max_stream_age`].
    pub fn max_stream_age(mut self, age: Option<Duration>) -> Self {
        self.config.max_stream_age = age;
        self
    }
    /// A smaller bound on bytes waiting for the store, for tests.
    #[cfg(test)]
    pub(crate) fn in_flight_bytes(mut self, bytes: usize) -> Self {
        self.in_flight_bytes = Some(bytes);
        self
    }
    /// All settings at once.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }
    /// The history store (default: [`Memory`](crate::store::Memory), nothing beyond the in-memory log). With a
    /// durable one, give it the same retention as the hub:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ssehub::store::{Disk, Retention};
    /// let dir = std::env::temp_dir().join(format!("ssehub-builder-{}", std::process::id()));
    /// let keep = Retention { events: 100_000, age: None };
    /// let hub = ssehub::Hub::builder()
    ///     .history(keep.events)
    ///     .store(Arc::new(Disk::open(&dir, keep)?))
    ///     .build();
    /// assert_eq!(hub.next_seq(), 1);
    /// # drop(hub);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), ssehub::store::StoreError>(())
    /// ```
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
}
