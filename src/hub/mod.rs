//! The hub: the log, the subscriptions that read it, and the client slots. It knows nothing of
//! HTTP; the [`http`](crate::http) module and the [`feed`](crate::feed)s drive it.
//!
//! ```
//! use ssehub::{Event, Hub, SubscribeRequest};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let hub = Hub::builder().max_clients(100).history(1000).build();
//! let mut sub = hub.subscribe(SubscribeRequest::topics(["news"])?)?;
//! let receipt = hub.publish(vec![Event::new("hello").with_topic("news")?]).await?;
//! assert_eq!(receipt.subscribers, 1);
//!
//! let mut bytes = Vec::new();
//! sub.next(&mut bytes).await?; // the stream's opening (retry:)
//! sub.next(&mut bytes).await?; // the event, encoded once at publish
//! assert!(bytes.concat().ends_with(b"data: hello\n\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Reading from code
//!
//! [`Subscription::next`] hands out wire bytes (what the server writes); in-process readers
//! take decoded events with [`Subscription::recv`], or the subscription as a `Stream` with
//! [`Subscription::into_stream`]: each item a [`Received::Event`] (id, name, data, topics) or a
//! [`Received::Gap`].
//!
//! ## Gaps
//!
//! A subscription resumed after an id ([`SubscribeRequest::resume_after`]) gets every event
//! after it on its topics, unless some already left the history: then a [`Received::Gap`]
//! (`reason` `evicted`) comes first, then what is left. An id from another history or never
//! given is a gap too (`other-history`, `unknown-id`), followed by everything retained.
//!
//! ```
//! use ssehub::{Event, Hub, Received, SubscribeRequest};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let hub = Hub::builder().history(1).build();
//! let ids = hub.publish((1..=3).map(|i| Event::new(i.to_string())).collect()).await?.ids;
//! let mut sub = hub.subscribe(SubscribeRequest::topics(["default"])?.resume_after(&*ids[0]))?;
//! // Event 2 left the history (it keeps 1 event): a gap, then event 3.
//! match sub.recv().await? {
//!     Received::Gap(gap) => assert_eq!((gap.reason.as_str(), gap.resumed_at), ("evicted", Some(ids[2].clone()))),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Slow subscribers
//!
//! A subscription past its first read that falls behind by more than the history holds (or
//! more than [`HubConfig::max_backlog_bytes`] or [`HubConfig::max_backlog_events`] while its
//! writes block) ends with [`End::Lagged`]; it resumes by subscribing again after the last id it
//! got, and is then told of the loss with a gap. Publishers never wait for subscribers.

mod id;
pub(crate) mod log;
mod received;
mod slots;
mod subscription;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use id::{Epoch, IdMatch};
pub use received::{Events, Gap, Received, ReceivedEvent};
pub use subscription::{End, SubscribeRequest, Subscription};

use crate::event::{Event, EventError};
use crate::store::{Memory, Record, Store, StoreError};

use log::Log;
use slots::Slots;

/// Events handed to a store and not yet durable, at most (more publishers wait their turn).
const MAX_IN_FLIGHT: usize = 1 << 16;
/// Bytes of events handed to a store and not yet durable, at most, so that a flood of large
/// publishes cannot queue gigabytes for the disk. Counted as encoded, ids at their longest.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

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

/// Builds a [`Hub`].
///
/// Each setter names the [`HubConfig`] field it sets; every one is used here:
///
/// ```
/// use std::time::Duration;
/// let hub = ssehub::Hub::builder()
///     .max_clients(500)
///     .history(50_000)
///     .history_bytes(64 << 20)
///     .history_age(Some(Duration::from_secs(3600)))
///     .memory_history(10_000)
///     .heartbeat(Some(Duration::from_secs(30)))
///     .retry_ms(2000)
///     .max_backlog_bytes(1 << 20)
///     .max_topics_per_client(16)
///     .max_topics_per_event(8)
///     .batch_window(Duration::from_millis(10))
///     .build();
/// assert_eq!(hub.config().max_clients, 500);
/// // Or all at once, from a config:
/// let same = ssehub::Hub::builder().config(hub.config().clone()).build();
/// assert_eq!(same.config().history, 50_000);
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until `build`"]
pub struct HubBuilder {
    config: HubConfig,
    store: Option<Arc<dyn Store>>,
    /// Tests set a smaller in-flight byte bound than [`MAX_IN_FLIGHT_BYTES`].
    in_flight_bytes: Option<usize>,
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
    /// The history store (default: [`Memory`], nothing beyond the in-memory log). With a
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
    /// Builds the hub.
    pub fn build(self) -> Hub {
        let store = self.store.unwrap_or_else(|| Arc::new(Memory::new()));
        let origin = store.origin();
        let config = self.config;
        let durable = store.keeps_events();
        let memory_len = config.memory_len(durable);
        let in_flight_bytes = self.in_flight_bytes.unwrap_or(MAX_IN_FLIGHT_BYTES);
        Hub {
            inner: Arc::new(Inner {
                log: Log::new(memory_len, origin.next_seq)
                    .with_max_bytes(config.history_bytes)
                    .with_max_age(config.history_age),
                expiry: std::sync::Once::new(),
                durable,
                store_failed: AtomicBool::new(false),
                in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
                in_flight_bytes: Arc::new(tokio::sync::Semaphore::new(in_flight_bytes)),
                max_in_flight_bytes: in_flight_bytes,
                slots: Slots::new(config.max_clients),
                epoch: origin.epoch,
                store,
                config,
                closing: AtomicBool::new(false),
                heartbeat_tick: AtomicU64::new(0),
                ticker: std::sync::Once::new(),
                published: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                slow_disconnects: AtomicU64::new(0),
            }),
        }
    }
}

/// A Server-Sent Events hub: publish events, subscribe to topics. Cheap to clone (shared).
/// See the [module documentation](crate::hub) for gaps and slow subscribers.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.inner.epoch)
            .field("next_seq", &self.next_seq())
            .field("durable", &self.inner.durable)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .field("store", &self.store.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) epoch: Epoch,
    pub(crate) log: Log,
    slots: Arc<Slots>,
    pub(crate) store: Arc<dyn Store>,
    /// The store keeps events: batches become readable once it has them, and replays older
    /// than the memory log read it.
    pub(crate) durable: bool,
    /// The store failed a write: publishes are refused from then on.
    store_failed: AtomicBool,
    /// Events handed to the store and not yet durable, bounded: a permit is given back when its
    /// batch is done, not when its publisher stops waiting, so publishes that are given up on
    /// (a client that hung up) cannot pile up work faster than the disk takes it.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The same for their bytes (see [`MAX_IN_FLIGHT_BYTES`]).
    in_flight_bytes: Arc<tokio::sync::Semaphore>,
    max_in_flight_bytes: usize,
    closing: AtomicBool,
    /// Counts the heartbeat ticker's rounds; subscriptions compare it with what they saw.
    pub(crate) heartbeat_tick: AtomicU64,
    ticker: std::sync::Once,
    expiry: std::sync::Once,
    published: AtomicU64,
    rejected: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
}

impl Inner {
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The id given to each event, in order.
    pub ids: Vec<String>,
    /// Streams open on the topics published to (a stream on two of them counts twice).
    pub subscribers: usize,
}

/// Why a publish was refused. Nothing of the batch was published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closing,
    /// An event was invalid.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The history store failed.
    #[error("history store: {0}")]
    Store(#[from] StoreError),
    /// An event names more topics than `max_topics_per_event`.
    #[error("an event names {given} topics, more than the {max} allowed per event")]
    TooManyTopics {
        /// Topics the event names.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// The events are larger, encoded, than the whole in-memory history may hold
    /// ([`HubConfig::history_bytes`]): they would push their own first events out before anyone
    /// could read them.
    #[error("the events take {bytes} bytes encoded, more than the history holds (--history-bytes {limit})")]
    TooLarge {
        /// The batch's encoded bytes.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

impl From<log::TooLarge> for PublishError {
    fn from(e: log::TooLarge) -> PublishError {
        PublishError::TooLarge {
            bytes: e.bytes,
            limit: e.limit,
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// Every slot is taken.
    #[error("the hub is full ({max} clients connected); retry later")]
    Full {
        /// The limit.
        max: usize,
    },
    /// More topics than `max_topics_per_client`.
    #[error("too many topics: {given} (at most {max} per subscription)")]
    TooManyTopics {
        /// Topics named.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closing,
}

/// Each topic log of a batch once: the ones to wake, and to count subscribers on. A short list
/// is scanned (most batches touch a topic or two); past 8 a set of addresses takes over, so a
/// batch of many events on many topics costs one step per topic named.
fn distinct(rings: &[Vec<Arc<log::TopicLog>>]) -> Vec<Arc<log::TopicLog>> {
    let mut out: Vec<Arc<log::TopicLog>> = Vec::new();
    let mut seen: Option<HashSet<*const log::TopicLog>> = None;
    for t in rings.iter().flatten() {
        let new = match &mut seen {
            Some(set) => set.insert(Arc::as_ptr(t)),
            None => !out.iter().any(|o| Arc::ptr_eq(o, t)),
        };
        if new {
            out.push(t.clone());
            if seen.is_none() && out.len() > 8 {
                seen = Some(out.iter().map(Arc::as_ptr).collect());
            }
        }
    }
    out
}

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
    /// Their encoded bytes, each event counted once (see [`HubConfig::history_bytes`]).
    pub history_bytes: u64,
    /// A write to the history store failed; publishes are refused until a restart.
    pub store_failed: bool,
}

impl Hub {
    /// Starts building a hub (see [`HubBuilder`] for every setting).
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().max_clients(10).build();
    /// assert_eq!(hub.stats().max_clients, 10);
    /// ```
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The settings.
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().history(500).build();
    /// assert_eq!(hub.config().history, 500);
    /// ```
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The epoch: the name of this hub's history, carried in every id.
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().build();
    /// assert_eq!(hub.epoch().id(hub.next_seq()), format!("{}-1", hub.epoch().as_str()));
    /// ```
    pub fn epoch(&self) -> &Epoch {
        &self.inner.epoch
    }

    /// The sequence number the next published event gets.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = ssehub::Hub::builder().build();
    /// hub.publish_one(ssehub::Event::new("x")).await?;
    /// assert_eq!(hub.next_seq(), 2);
    /// # Ok::<(), ssehub::PublishError>(())
    /// # }).unwrap();
    /// ```
    pub fn next_seq(&self) -> u64 {
        self.inner.log.next_seq()
    }

    /// Publishes a batch in order, atomically: no subscriber sees a later event before an earlier
    /// one, and a batch with an event naming more than `max_topics_per_event` topics is refused
    /// whole before anything is published. Events without a topic go to `default`.
    ///
    /// # Errors
    ///
    /// [`PublishError`]: the hub is closing, an event names too many topics, the batch is
    /// larger than the whole in-memory history, or the store failed. Nothing was published.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the sense that matters: a publish dropped while it waits (for a
    /// durable store) may still be published, and its ids are then lost to the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::{Event, Hub};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = Hub::builder().build();
    /// let receipt = hub
    ///     .publish(vec![
    ///         Event::new("one").with_topic("news")?,
    ///         Event::new("{\"up\":true}").with_topic("status")?.with_name("status")?,
    ///     ])
    ///     .await?;
    /// assert_eq!(receipt.ids.len(), 2);
    /// assert_eq!(receipt.subscribers, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn publish(&self, mut events: Vec<Event>) -> Result<Receipt, PublishError> {
        if self.inner.is_closing() {
            return Err(PublishError::Closing);
        }
        let max = self.inner.config.max_topics_per_event.max(1);
        if let Some(e) = events.iter().find(|e| e.topics().len() > max) {
            return Err(PublishError::TooManyTopics {
                given: e.topics().len(),
                max,
            });
        }
        self.start_expiry();
        let log = &self.inner.log;
        let mut rings = Vec::with_capacity(events.len());
        for event in &mut events {
            event.ensure_topic();
            rings.push(
                event
                    .topics()
                    .iter()
                    .map(|t| log.topic(t))
                    .collect::<Vec<_>>(),
            );
        }
        let touched = distinct(&rings);
        let appended = if self.inner.durable {
            self.append_durably(&events, &rings, &touched).await?
        } else {
            log.append(&self.inner.epoch, &events, &rings, &touched)?
        };
        self.inner
            .published
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let subscribers = touched
            .iter()
            .map(|t| t.subscribers.load(Ordering::Relaxed))
            .sum();
        Ok(Receipt {
            ids: appended
                .iter()
                .map(|(seq, _)| self.inner.epoch.id(*seq))
                .collect(),
            subscribers,
        })
    }

    /// Hands the batch to the store while numbering it, and waits until it is durable; the
    /// store's writer makes it readable (in sequence order) before this returns.
    async fn append_durably(
        &self,
        events: &[Event],
        rings: &[Vec<Arc<log::TopicLog>>],
        touched: &[Arc<log::TopicLog>],
    ) -> Result<Vec<(u64, bytes::Bytes)>, PublishError> {
        if self.inner.store_failed.load(Ordering::Acquire) {
            return Err(StoreError("the history store failed earlier; see the log".into()).into());
        }
        // Always events first, then bytes, so two publishers never each hold what the other
        // waits for. A batch bigger than a whole bound waits for all of it, then goes alone.
        let permits = events.len().clamp(1, MAX_IN_FLIGHT) as u32;
        let events_permit = self
            .inner
            .in_flight
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| PublishError::Closing)?;
        let id_len = self.inner.epoch.id(u64::MAX).len();
        let bytes = events.iter().fold(0usize, |sum, e| {
            sum.saturating_add(crate::event::encoded_len_max(id_len, e))
        });
        let bytes_permit = self
            .inner
            .in_flight_bytes
            .clone()
            .acquire_many_owned(bytes.clamp(1, self.inner.max_in_flight_bytes) as u32)
            .await
            .map_err(|_| PublishError::Closing)?;
        let mut permit = Some((events_permit, bytes_permit));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let mut submit = |batch: &[(u64, bytes::Bytes)]| {
            let records = batch
                .iter()
                .zip(events)
                .map(|((seq, bytes), e)| Record {
                    seq: *seq,
                    topics: e.topics().to_vec(),
                    bytes: bytes.clone(),
                })
                .collect();
            let wake = touched.to_vec();
            let last = batch.last().map(|(seq, _)| *seq);
            // Weak: a queued batch must not keep a dropped hub alive.
            let hub = Arc::downgrade(&self.inner);
            let tx = tx.take();
            let permit = permit.take();
            self.inner.store.append(
                records,
                Box::new(move |result| {
                    drop(permit);
                    if let Some(hub) = hub.upgrade() {
                        match (&result, last) {
                            (Ok(()), Some(last)) => hub.log.make_readable(last, &wake),
                            (Ok(()), None) => {}
                            (Err(_), _) => hub.store_failed.store(true, Ordering::Release),
                        }
                    }
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                }),
            );
        };
        let appended =
            self.inner
                .log
                .append_deferred(&self.inner.epoch, events, rings, &mut submit)?;
        match rx.await {
            Ok(Ok(())) => Ok(appended),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StoreError("the history store stopped".into()).into()),
        }
    }

    /// Publishes one event and returns its id. See [`Hub::publish`] (errors, cancel safety).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = ssehub::Hub::builder().build();
    /// let id = hub.publish_one(ssehub::Event::new("hello").with_topic("news")?).await?;
    /// assert!(id.ends_with("-1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn publish_one(&self, event: Event) -> Result<String, PublishError> {
        let mut receipt = self.publish(vec![event]).await?;
        Ok(receipt.ids.pop().unwrap_or_default())
    }

    /// Opens a subscription, taking a client slot (freed when it is dropped). Read it with
    /// [`Subscription::recv`], [`Subscription::into_stream`] or (as bytes) [`Subscription::next`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError`]: every slot is taken, too many topics, or the hub is closing.
    ///
    /// ```
    /// use ssehub::{Hub, SubscribeError, SubscribeRequest};
    ///
    /// let hub = Hub::builder().max_clients(1).build();
    /// let first = hub.subscribe(SubscribeRequest::topics(["news"])?)?;
    /// let refused = hub.subscribe(SubscribeRequest::topics(["news"])?);
    /// assert!(matches!(refused, Err(SubscribeError::Full { max: 1 })));
    /// drop(first); // frees the slot
    /// assert!(hub.subscribe(SubscribeRequest::topics(["news"])?).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, SubscribeError> {
        if self.inner.is_closing() {
            return Err(SubscribeError::Closing);
        }
        let max = self.inner.config.max_topics_per_client;
        if request.topics.len() > max {
            return Err(SubscribeError::TooManyTopics {
                given: request.topics.len(),
                max,
            });
        }
        self.start_ticker();
        self.start_expiry();
        let Some(slot) = self.inner.slots.try_acquire() else {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SubscribeError::Full {
                max: self.inner.slots.max(),
            });
        };
        Ok(Subscription::new(self.inner.clone(), request, slot))
    }

    /// Starts, once, the task that wakes idle streams every half heartbeat period so they can
    /// send one; it ends when the hub is dropped. One timer for the hub instead of one per
    /// stream. Without a tokio runtime at hand there are no heartbeats.
    fn start_ticker(&self) {
        let Some(every) = self.inner.config.heartbeat else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.ticker.call_once(|| {
            let hub = Arc::downgrade(&self.inner);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(every / 2);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(hub) = hub.upgrade() else { return };
                    hub.heartbeat_tick.fetch_add(1, Ordering::AcqRel);
                    for t in hub.log.all_topics() {
                        t.wake();
                    }
                }
            });
        });
    }

    /// Starts, once, the task that ages the in-memory log out when it is quiet (with an age
    /// limit; publishing ages it out too). It ends when the hub is dropped.
    fn start_expiry(&self) {
        let Some(age) = self.inner.config.history_age else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.expiry.call_once(|| {
            let hub = Arc::downgrade(&self.inner);
            let every = (age / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(hub) = hub.upgrade() else { return };
                    hub.log.expire();
                }
            });
        });
    }

    /// Refuses new publishes and subscriptions and ends every stream at its next wake-up (this
    /// wakes them all). Events published before this call are still handed out first.
    ///
    /// ```
    /// use ssehub::{Event, Hub, PublishError};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = Hub::builder().build();
    /// hub.close();
    /// assert!(hub.is_closing());
    /// assert!(matches!(hub.publish_one(Event::new("late")).await, Err(PublishError::Closing)));
    /// # });
    /// ```
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        for t in self.inner.log.all_topics() {
            t.wake();
        }
    }

    /// True once [`Hub::close`] was called (example there).
    pub fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

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
        }
    }
}

#[cfg(test)]
mod publish_tests {
    use super::*;

    fn on_topics(n: usize) -> Event {
        (0..n).fold(Event::new("x"), |e, i| {
            e.with_topic(&format!("t{i}")).expect("a good topic")
        })
    }

    #[tokio::test]
    async fn an_event_on_too_many_topics_refuses_the_whole_batch() {
        let hub = Hub::builder().max_topics_per_event(3).build();
        let mut sub = hub
            .subscribe(SubscribeRequest::topics(["t0"]).expect("a good topic"))
            .expect("room");
        let refused = hub.publish(vec![on_topics(1), on_topics(4)]).await;
        assert!(
            matches!(
                refused,
                Err(PublishError::TooManyTopics { given: 4, max: 3 })
            ),
            "{refused:?}"
        );
        assert_eq!(hub.stats().published_total, 0);
        assert_eq!(hub.next_seq(), 1, "no sequence number was taken");
        // At the limit, and with duplicates that bring it under, it goes through.
        let dup = on_topics(3).with_topic("t1").expect("a good topic");
        let receipt = hub
            .publish(vec![on_topics(3), dup])
            .await
            .expect("published");
        assert_eq!((receipt.ids.len(), receipt.subscribers), (2, 1));
        let mut out = Vec::new();
        sub.next(&mut out).await.expect("the opening");
        out.clear();
        sub.next(&mut out).await.expect("the events");
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn each_topic_of_a_batch_is_counted_once() {
        let hub = Hub::builder().build();
        let _subs: Vec<_> = ["t0", "t15"]
            .iter()
            .map(|t| {
                hub.subscribe(SubscribeRequest::topics([*t]).expect("a good topic"))
                    .expect("room")
            })
            .collect();
        // Few topics (the list) and many (the set).
        for (n, want) in [(3, 1), (20, 2)] {
            let receipt = hub
                .publish(vec![on_topics(n), on_topics(n), on_topics(n)])
                .await
                .expect("published");
            assert_eq!(receipt.subscribers, want, "{n} topics");
        }
    }
}

#[cfg(all(test, feature = "durable"))]
mod tests {
    use super::*;
    use crate::store::{Disk, Retention};
    use std::sync::atomic::AtomicUsize;

    /// The store's writer thread, making a batch readable, can hold the last reference to the
    /// hub (every handle dropped, the publisher given up): it then drops the store on its own
    /// thread, which must not try to join itself.
    #[test]
    fn the_store_writer_may_drop_the_last_hub() {
        static WRITER_PANICS: AtomicUsize = AtomicUsize::new(0);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("ssehub-history") {
                WRITER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ssehub-lasthub-{}", std::process::id()));
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(&dir);
            let disk = Disk::open(&dir, Retention::default()).unwrap();
            let hub = Hub::builder().store(Arc::new(disk)).build();
            // Many topics: waking them keeps the writer inside the callback a little longer.
            let event = (0..64).fold(Event::new("x"), |e, i| {
                e.with_topic(&format!("t{i}")).unwrap()
            });
            let before = hub.inner.log.committed();
            let publisher = hub.clone();
            let task = runtime.spawn(async move {
                let _ = publisher.publish(vec![event]).await;
            });
            while hub.next_seq() == before + 1 {
                std::thread::yield_now();
            }
            task.abort();
            while !task.is_finished() {
                std::thread::yield_now();
            }
            while hub.inner.log.committed() == before {
                std::hint::spin_loop();
            }
            drop(hub);
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(WRITER_PANICS.load(Ordering::SeqCst), 0);
    }
}

#[cfg(test)]
mod in_flight {
    //! The bound on bytes waiting for the store, with a store that commits when told to.

    use super::*;
    use crate::store::{Done, Origin, ReadLimit, Replay, StoreFuture};
    use crate::Topic;
    use std::sync::Mutex;

    /// Keeps every batch until the test completes it.
    struct Held {
        epoch: Epoch,
        pending: Mutex<Vec<(usize, Done)>>,
    }

    impl crate::store::sealed::Sealed for Held {}
    impl Store for Held {
        fn origin(&self) -> Origin {
            Origin {
                epoch: self.epoch.clone(),
                next_seq: 1,
            }
        }
        fn keeps_events(&self) -> bool {
            true
        }
        fn append(&self, records: Vec<Record>, done: Done) {
            self.pending.lock().unwrap().push((records.len(), done));
        }
        fn read_after<'a>(
            &'a self,
            _: &'a [Topic],
            _: u64,
            upto: u64,
            _: ReadLimit,
        ) -> StoreFuture<'a, Replay> {
            Box::pin(std::future::ready(Ok(Replay {
                events: Vec::new(),
                cursor: upto,
                lost: false,
            })))
        }
    }

    impl Held {
        /// The sizes of the batches waiting, once that many are waiting (or after 5 s).
        async fn waiting(&self, n: usize) -> Vec<usize> {
            for _ in 0..500 {
                if self.pending.lock().unwrap().len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.now()
        }

        /// The sizes of the batches waiting now.
        fn now(&self) -> Vec<usize> {
            self.pending.lock().unwrap().iter().map(|b| b.0).collect()
        }

        /// Commits the oldest waiting batch.
        fn commit_one(&self) {
            let (_, done) = self.pending.lock().unwrap().remove(0);
            done(Ok(()));
        }
    }

    /// `n` events whose encoded size, ids at their longest, is 146 bytes each.
    fn batch(n: usize) -> Vec<Event> {
        (0..n).map(|_| Event::new("x".repeat(100))).collect()
    }

    #[tokio::test]
    async fn large_batches_wait_for_the_disk_and_an_oversized_one_goes_alone() {
        let store = Arc::new(Held {
            epoch: Epoch::random(),
            pending: Mutex::new(Vec::new()),
        });
        let hub = Hub::builder()
            .store(store.clone())
            .in_flight_bytes(1000)
            .build();
        let publish = |n| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.publish(batch(n)).await })
        };
        // 876 bytes each: the second waits until the first is committed.
        let first = publish(6);
        assert_eq!(store.waiting(1).await, [6]);
        let second = publish(6);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [6], "the second batch went past the bound");
        store.commit_one();
        assert_eq!(first.await.unwrap().unwrap().ids.len(), 6);
        assert_eq!(store.waiting(1).await, [6]);
        // 2,920 bytes, more than the whole bound: it waits for the disk to be idle, goes alone,
        // and whoever comes after it waits.
        let oversized = publish(20);
        let after = publish(1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [6]);
        store.commit_one();
        assert_eq!(second.await.unwrap().unwrap().ids.len(), 6);
        assert_eq!(store.waiting(1).await, [20]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [20]);
        store.commit_one();
        assert_eq!(oversized.await.unwrap().unwrap().ids.len(), 20);
        assert_eq!(store.waiting(1).await, [1]);
        store.commit_one();
        assert_eq!(after.await.unwrap().unwrap().ids.len(), 1);
    }
}
