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

mod access;
mod config;
mod locks;
pub(crate) mod log;
mod meters;
mod publish;
mod ready;
mod received;
#[cfg(feature = "cluster")]
mod relay;
mod request;
mod resume;
mod ring;
mod slots;
mod stats;
mod subscription;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::id::{Epoch, IdMatch};
pub use config::HubConfig;
pub(crate) use meters::Histogram;
pub use meters::{HistogramSnapshot, BUCKETS};
pub use publish::{PublishError, Receipt};
pub use ready::NotReady;
pub use received::{Events, Gap, Received, ReceivedEvent};
pub use request::SubscribeRequest;
pub use stats::{RedisHealth, Stats};
pub use subscription::{End, Subscription};

use crate::store::{Memory, Store};

use log::Log;
use slots::Slots;

#[cfg(feature = "cluster")]
pub(crate) use relay::{bounds, history_lost, history_trimmed, relay};

/// Events handed to a store and not yet durable, at most (more publishers wait their turn).
const MAX_IN_FLIGHT: usize = 1 << 16;
/// Bytes of events handed to a store and not yet durable, at most, so that a flood of large
/// publishes cannot queue gigabytes for the disk. Counted as encoded, ids at their longest.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

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
///     .max_stream_age(Some(Duration::from_secs(3600)))
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
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::Cluster>,
}

impl HubBuilder {
    /// Builds the hub.
    pub fn build(self) -> Hub {
        let store = self.store.unwrap_or_else(|| Arc::new(Memory::new()));
        let origin = store.origin();
        let config = self.config;
        let durable = store.keeps_events();
        // Redis keeps a cluster's history: memory holds the newest `memory_history` of it.
        #[cfg(feature = "cluster")]
        let memory_len = config.memory_len(durable || self.cluster.is_some());
        #[cfg(not(feature = "cluster"))]
        let memory_len = config.memory_len(durable);
        let in_flight_bytes = self.in_flight_bytes.unwrap_or(MAX_IN_FLIGHT_BYTES);
        let hub = Hub {
            inner: Arc::new(Inner {
                log: Log::new(memory_len, origin.next_seq)
                    .with_max_bytes(config.history_bytes)
                    .with_max_age(config.history_age),
                expiry: std::sync::Once::new(),
                durable,
                store_failed: AtomicBool::new(false),
                shutdown_announced: AtomicBool::new(false),
                in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
                in_flight_bytes: Arc::new(tokio::sync::Semaphore::new(in_flight_bytes)),
                max_in_flight_bytes: in_flight_bytes,
                ids_lock: tokio::sync::Mutex::new(()),
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
                meters: meters::Meters::default(),
                #[cfg(feature = "cluster")]
                cluster: self.cluster,
            }),
        };
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &hub.inner.cluster {
            cluster.start_reader(Arc::downgrade(&hub.inner));
        }
        hub
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
    /// Held by a durable publish with publisher ids from its lookup in the store until its
    /// events are in memory's index: two publishes of one id cannot both miss each other (one
    /// looking in the store while the other's event moves there from memory).
    ids_lock: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    /// [`Hub::announce_shutdown`] was called: `/readyz` fails while everything still works.
    pub(crate) shutdown_announced: AtomicBool,
    /// Counts the heartbeat ticker's rounds; subscriptions compare it with what they saw.
    pub(crate) heartbeat_tick: AtomicU64,
    ticker: std::sync::Once,
    expiry: std::sync::Once,
    published: AtomicU64,
    rejected: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    /// Bytes out, delivery lag, replays (see `meters.rs`).
    pub(crate) meters: meters::Meters,
    /// The cluster this hub belongs to: publishes go through it, delivery comes from its reader.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<crate::cluster::Cluster>,
}

impl Inner {
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
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

    /// The length of the longest id this hub can give an event: `EPOCH-SEQ`, and in a cluster
    /// `EPOCH-MS-N-SHARD`. A batch's size is checked with it before the ids are known.
    pub(crate) fn longest_id_len(&self) -> usize {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            return crate::cluster::Place::LONGEST
                .id(cluster.epoch().as_str())
                .len();
        }
        self.inner.epoch.id(u64::MAX).len()
    }

    /// The id of the newest event subscribers can read (`earliest` if there is none yet): a
    /// subscription resumed from it gets exactly what is published after this call.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = ssehub::Hub::builder().build();
    /// assert_eq!(hub.last_event_id(), "earliest");
    /// let id = hub.publish_one(ssehub::Event::new("x")).await?;
    /// assert_eq!(hub.last_event_id(), id);
    /// # Ok::<(), ssehub::PublishError>(())
    /// # }).unwrap();
    /// ```
    pub fn last_event_id(&self) -> String {
        // In a cluster, the cluster's id: any hub resumes from it.
        let (seq, cluster_id) = resume::now(&self.inner);
        resume::id_after(&self.inner, seq, cluster_id.as_deref())
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
        // Selectors count as topics: each is matched against every event.
        let given = request
            .selectors
            .as_ref()
            .map_or(request.topics.len(), |s| s.selectors().len());
        if given > max {
            return Err(SubscribeError::TooManyTopics { given, max });
        }
        self.start_ticker();
        self.start_expiry();
        let Some(slot) = self.inner.slots.try_acquire() else {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SubscribeError::Full {
                max: self.inner.slots.max(),
            });
        };
        tracing::debug!(
            topics = request.topics.len(),
            clients = self.inner.slots.used(),
            "stream opened"
        );
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
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_access;
#[cfg(test)]
mod tests_ids;
