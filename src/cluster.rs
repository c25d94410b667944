//! Cluster mode: several hubs sharing one history in Redis (feature `cluster`; see
//! `docs/cluster.md`). One Redis server for now; Redis Cluster comes later.
//!
//! A hub joins with [`HubBuilder::cluster`](crate::HubBuilder::cluster): its publishes go to
//! Redis (answered once Redis accepted them, or refused within a second), and a reader task
//! brings every hub's events into its log, in one order that every hub shares, with ids that
//! every hub knows (`<epoch>-<ms>-<n>-<shard>`, or the publisher's own).
//!
//! Modules: [`Place`] and [`Merge`] (the cluster-wide order), `meta` (what hubs agree on),
//! `entry` (an event as stream fields), `writer` (publishes), `reader` (delivery).

mod entry;
mod meta;
mod order;
mod reader;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

pub use order::{Merge, Place};

use crate::event::Event;
use crate::hub::Inner;
use crate::id::Epoch;
use crate::store::StoreError;

/// A hub's link to the Redis that holds its cluster's history. Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = ssehub::cluster::Cluster::connect("redis://127.0.0.1:6379", 16).await?;
/// let hub = ssehub::Hub::builder().cluster(cluster.clone()).build();
/// cluster.caught_up().await; // the hub holds what Redis held when it joined
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cluster {
    link: Arc<Link>,
}

/// What a hub's writer and reader share.
pub(crate) struct Link {
    client: redis::Client,
    epoch: Epoch,
    shards: u16,
    writer: writer::Writer,
    caught_up: tokio::sync::watch::Sender<bool>,
    /// Every event placed below this millisecond is in the hub's log (or left it).
    delivered_below: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("epoch", &self.link.epoch)
            .field("shards", &self.link.shards)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis at `url` (`redis://HOST:PORT[/DB]`) and agrees on the cluster's
    /// settings: the first hub records its `shards` and a fresh epoch in `ssehub:meta`; the
    /// others take the epoch from there (example at [`Cluster`]).
    ///
    /// # Errors
    ///
    /// A one-line reason: a bad URL, Redis unreachable (within a second), or a cluster that
    /// was started with another shard count (both named).
    pub async fn connect(url: &str, shards: u16) -> Result<Cluster, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| StoreError(format!("--redis: bad URL: {e}")))?;
        let config = writer::Writer::config();
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let mut conn = tokio::time::timeout(writer::ANSWER_WITHIN, connect)
            .await
            .map_err(|_| StoreError("--redis: Redis did not answer within 1s".into()))?
            .map_err(|e| StoreError(format!("--redis: cannot reach Redis: {e}")))?;
        let shards = shards.max(1);
        let epoch = tokio::time::timeout(writer::ANSWER_WITHIN, meta::agree(&mut conn, shards))
            .await
            .map_err(|_| StoreError("--redis: Redis did not answer within 1s".into()))??;
        Ok(Cluster {
            link: Arc::new(Link {
                writer: writer::Writer::new(client.clone(), conn, shards),
                client,
                epoch,
                shards,
                caught_up: tokio::sync::watch::channel(false).0,
                delivered_below: AtomicU64::new(0),
            }),
        })
    }

    /// The cluster's epoch: the name of its history, in every id it makes (example at
    /// [`Cluster`]).
    pub fn epoch(&self) -> &Epoch {
        &self.link.epoch
    }

    /// How many shards (Redis streams) the log is split into (example at [`Cluster`]).
    pub fn shards(&self) -> u16 {
        self.link.shards
    }

    /// Waits until the hub's reader has read everything Redis held when it started, so that
    /// the hub's memory holds the recent history before clients come (example at [`Cluster`]).
    /// Waits for ever if no hub was built with this cluster, or Redis stays unreachable.
    pub async fn caught_up(&self) {
        let mut done = self.link.caught_up.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Starts the reader that brings the cluster's events into `hub`'s log; it ends when the
    /// hub is dropped. Without a tokio runtime at hand there is no reader.
    pub(crate) fn start_reader(&self, hub: Weak<Inner>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reader::run(self.link.clone(), hub));
        } else {
            tracing::warn!(
                "cluster: no tokio runtime, so no reader: this hub will deliver nothing"
            );
        }
    }

    /// Appends a publish (events with their topics set) to Redis: each event's place, once
    /// Redis accepted the whole batch. Fails within a second otherwise.
    pub(crate) async fn append(
        &self,
        events: &[Event],
        maxlen: usize,
    ) -> Result<Vec<Place>, StoreError> {
        self.link.writer.append(events, maxlen).await
    }

    /// The reader has delivered everything up to and including `place`.
    pub(crate) fn read_past(&self, place: Place) -> bool {
        self.link.delivered_below.load(Ordering::Acquire) > place.ms
    }

    /// The id subscribers see for `event`, placed at `place`.
    pub(crate) fn id_of(&self, event: &Event, place: &Place) -> String {
        writer::id_of(event, place, &self.link.epoch)
    }
}
