//! The publish path: a batch is checked, numbered and placed in the log under its lock, handed to
//! the store in sequence order when the store keeps events (bounded by the events and bytes in
//! flight), and acknowledged with its ids.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::log;
use super::{Hub, MAX_IN_FLIGHT};
use crate::event::{Event, EventError};
use crate::store::{Record, StoreError};

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
    /// ([`HubConfig::history_bytes`](super::HubConfig::history_bytes)): they would push their own
    /// first events out before anyone could read them.
    #[error("the events take {bytes} bytes encoded, more than the history holds (--history-bytes {limit})")]
    TooLarge {
        /// The batch's encoded bytes.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A publisher-chosen id is already in the history (or twice in the batch): a resume from
    /// it would be ambiguous. Nothing was published.
    #[error("the id {0:?} is already in the history; ids must be unique for resume to be exact")]
    DuplicateId(String),
}

impl From<log::Refused> for PublishError {
    fn from(e: log::Refused) -> PublishError {
        match e {
            log::Refused::TooLarge(e) => PublishError::TooLarge {
                bytes: e.bytes,
                limit: e.limit,
            },
            log::Refused::DuplicateId(id) => PublishError::DuplicateId(id),
        }
    }
}

/// Each topic log of a batch once: the ones to wake, and to count subscribers on. A short list
/// is scanned (most batches touch a topic or two); past 8 a set of addresses takes over, so a
/// batch of many events on many topics costs one step per topic named.
pub(super) fn distinct(rings: &[Vec<Arc<log::TopicLog>>]) -> Vec<Arc<log::TopicLog>> {
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

impl Hub {
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
        let mut ids_guard = None;
        if self.inner.durable && events.iter().any(|e| e.id().is_some()) {
            ids_guard = Some(self.inner.ids_lock.lock().await);
            // Memory holds only the newest events; an id may still be in the store's history.
            // Memory first: an event leaves memory only once the store holds it, so an id
            // missed there is found in the store after. The other order misses an id that is
            // durable only after the store's look and evicted before memory's.
            for id in events.iter().filter_map(Event::id) {
                let seen = self.inner.log.seq_of(id).is_some();
                if seen || self.inner.store.find_id(id).await?.is_some() {
                    return Err(PublishError::DuplicateId(id.to_string()));
                }
            }
        }
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
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            return self.publish_clustered(cluster, &events, &touched).await;
        }
        let appended = if self.inner.durable {
            self.append_durably(&events, &rings, &touched, ids_guard)
                .await?
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
                .zip(&events)
                .map(|((seq, _), e)| match e.id() {
                    Some(id) => id.to_string(),
                    None => self.inner.epoch.id(*seq),
                })
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
        ids_guard: Option<tokio::sync::MutexGuard<'_, ()>>,
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
        let id_len = self.longest_id_len();
        let bytes = events.iter().fold(0usize, |sum, e| {
            let id_len = e.id().map_or(id_len, str::len);
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
                    private: e.is_private(),
                    id: e.shared_id().cloned(),
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
        // In memory's index now: the next publish of these ids finds them there, then in the
        // store. Not held while the disk commits, so publishes with ids still share fsyncs.
        drop(ids_guard);
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
}
