//! Cluster mode: several hubs sharing one history in Redis (feature `cluster`; see
//! `docs/cluster.md`), on one Redis server or on a Redis Cluster.
//!
//! A hub joins with [`HubBuilder::cluster`](crate::HubBuilder::cluster): its publishes go to
//! Redis (answered once Redis accepted them, or refused within a second), and a reader task
//! brings every hub's events into its log, in one order that every hub shares, with ids that
//! every hub knows (`<epoch>-<ms>-<n>-<shard>`, or the publisher's own).
//!
//! Modules: [`Place`] and [`Merge`] (the cluster-wide order), `conn` (one server or a Redis
//! Cluster), `keys` (shards and their slots), `meta` (what hubs agree on), `entry` (an event as
//! stream fields), `writer` (publishes), `claims` (publisher ids), `reader` (delivery).

mod claims;
mod conn;
mod entry;
mod group_wait;
mod keys;
mod meta;
mod order;
mod reader;
mod replay;
mod trim;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

pub use order::{Merge, Place};
pub(crate) use replay::Replay;

use crate::event::Event;
use crate::hub::{Inner, RedisHealth};
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
    backend: conn::Backend,
    /// Each shard's stream, shard `k` at index `k`.
    keys: Vec<String>,
    /// The history's name; another one once Redis lost its data (see [`Link::adopt`]).
    epoch: RwLock<Epoch>,
    /// How many times the epoch changed: a stream opened before a change ends at it.
    generation: AtomicU64,
    /// The hub's log sequence number at which the current history begins.
    history_start: AtomicU64,
    /// The histories this hub saw lost, oldest first.
    lost: Mutex<Vec<Epoch>>,
    shards: u16,
    writer: writer::Writer,
    caught_up: tokio::sync::watch::Sender<bool>,
    /// Every event placed below this millisecond is in the hub's log (or left it).
    delivered_below: AtomicU64,
    /// The reader's last round with Redis succeeded.
    reader_up: AtomicBool,
    /// Entries read below what was already delivered (a master's clock stepped back): delivered
    /// late, out of order, never dropped.
    late: AtomicU64,
    /// The reader's lag in its last round (ms; see [`RedisHealth`]).
    lag_ms: AtomicU64,
    /// Times the reader found entries trimmed before it read them.
    trims: AtomicU64,
    /// A resume from an event below this log sequence number crosses a trimmed hole (0: none).
    hole_below: AtomicU64,
    /// The hub's log sequence number of the newest event the reader put there, and its place:
    /// where a replay from Redis hands over to memory.
    relayed: Mutex<Option<(u64, Place)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("epoch", &self.link.epoch())
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
        Cluster::join(conn::Backend::single(url)?, shards).await
    }

    /// [`connect`](Self::connect), on a Redis Cluster reached through any of `nodes`
    /// (`HOST:PORT`): each shard lives in one slot, and the shards spread over the masters.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub::store::StoreError> {
    /// let nodes = ["10.0.0.5:7000".to_string(), "10.0.0.6:7000".to_string()];
    /// let cluster = ssehub::cluster::Cluster::connect_cluster(&nodes, 16).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), naming `--redis-cluster`.
    pub async fn connect_cluster(nodes: &[String], shards: u16) -> Result<Cluster, StoreError> {
        Cluster::join(conn::Backend::cluster(nodes)?, shards).await
    }

    async fn join(backend: conn::Backend, shards: u16) -> Result<Cluster, StoreError> {
        let flag = backend.flag();
        let late = || StoreError(format!("{flag}: Redis did not answer within 1s"));
        let connect = backend.connect(None);
        let mut conn = tokio::time::timeout(writer::ANSWER_WITHIN, connect)
            .await
            .map_err(|_| late())?
            .map_err(|e| StoreError(format!("{flag}: cannot reach Redis: {e}")))?;
        let shards = shards.max(1);
        let epoch = tokio::time::timeout(writer::ANSWER_WITHIN, meta::agree(&mut conn, shards))
            .await
            .map_err(|_| late())??;
        let keys = keys::stream_keys(shards);
        Ok(Cluster {
            link: Arc::new(Link {
                writer: writer::Writer::new(conn, keys.clone()),
                backend,
                keys,
                epoch: RwLock::new(epoch),
                generation: AtomicU64::new(0),
                history_start: AtomicU64::new(0),
                lost: Mutex::new(Vec::new()),
                shards,
                caught_up: tokio::sync::watch::channel(false).0,
                delivered_below: AtomicU64::new(0),
                reader_up: AtomicBool::new(true),
                late: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                trims: AtomicU64::new(0),
                hole_below: AtomicU64::new(0),
                relayed: Mutex::new(None),
            }),
        })
    }

    /// Answers a publish only once `replicas` replicas of its master hold it too (Redis
    /// `WAIT`, up to 500 ms; with fewer the publisher gets `503`, and the event, written
    /// already, is delivered all the same). So an acknowledged event survives a failover to
    /// one of them. 0 (the default): once the master holds it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub::store::StoreError> {
    /// let cluster = ssehub::cluster::Cluster::connect("redis://127.0.0.1:6379", 16).await?;
    /// cluster.wait_for_replicas(1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_for_replicas(&self, replicas: u16) {
        self.link.writer.wait_for_replicas(replicas);
    }

    /// Whether publishes wait for replicas ([`wait_for_replicas`](Self::wait_for_replicas)).
    pub(crate) fn waits_for_replicas(&self) -> bool {
        self.link.writer.replicas() > 0
    }

    /// Each shard's Redis stream (shard `k` at index `k`), with its hash tag.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub::store::StoreError> {
    /// let cluster = ssehub::cluster::Cluster::connect("redis://127.0.0.1:6379", 16).await?;
    /// assert_eq!(cluster.stream_keys().len(), 16);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_keys(&self) -> &[String] {
        &self.link.keys
    }

    /// How this hub's reader fares: whether it reaches Redis, its lag, the events it
    /// delivered late because a master's clock stepped back, and the times trimming passed it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub::store::StoreError> {
    /// let cluster = ssehub::cluster::Cluster::connect("redis://127.0.0.1:6379", 16).await?;
    /// assert!(cluster.health().up);
    /// # Ok(())
    /// # }
    /// ```
    pub fn health(&self) -> RedisHealth {
        let link = &self.link;
        RedisHealth {
            up: link.reader_up.load(Ordering::Relaxed),
            late_events: link.late.load(Ordering::Relaxed),
            lag_seconds: link.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            trims: link.trims.load(Ordering::Relaxed),
        }
    }

    /// The cluster's epoch: the name of its history, in every id it makes (example at
    /// [`Cluster`]). It changes when Redis lost the history (restarted without its data).
    pub fn epoch(&self) -> Epoch {
        self.link.epoch()
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

    /// Appends a publish (events with their topics set) to Redis, in history `epoch`, its
    /// publisher ids claimed for `claim_for`: each event's place, once Redis accepted the
    /// whole batch. Fails within a second otherwise.
    pub(crate) async fn append(
        &self,
        events: &[Event],
        bounds: Bounds,
        claim_for: Duration,
        epoch: &Epoch,
    ) -> Result<Vec<Place>, AppendError> {
        let link = &self.link;
        link.writer
            .append(&link.backend, events, bounds, claim_for, epoch)
            .await
    }

    /// How many times the cluster's history changed since this hub joined.
    pub(crate) fn generation(&self) -> u64 {
        self.link.generation.load(Ordering::Acquire)
    }

    /// Whether `epoch` names a history this hub saw lost, and if so where the current one
    /// begins in the hub's log: a client resuming from the lost one replays from there. (An
    /// epoch it does not know may be a newer one its reader has not taken up yet.)
    pub(crate) fn lost(&self, epoch: &Epoch) -> Option<u64> {
        let lost = self
            .link
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lost.contains(epoch)
            .then(|| self.link.history_start.load(Ordering::Acquire))
    }

    /// Whether a resume from the event at log sequence number `seq` crosses a hole trimming
    /// left in what this hub read.
    pub(crate) fn before_hole(&self, seq: u64) -> bool {
        seq < self.link.hole_below.load(Ordering::Acquire)
    }

    /// The newest event the reader put in the hub's log: its sequence number and place.
    pub(crate) fn relayed(&self) -> Option<(u64, Place)> {
        *self
            .link
            .relayed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// "Now" as a resume id any hub reads alike: the log's newest sequence number
    /// (`committed`, read under the reader's lock) and the cluster id of the newest event placed
    /// in it ([`Place::BEFORE_ALL`]'s before the current history has one). A resume from that
    /// id gets exactly the events after that sequence number, on every hub.
    pub(crate) fn now(&self, committed: impl FnOnce() -> u64) -> (u64, String) {
        let relayed = self
            .link
            .relayed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = committed();
        let place = relayed.map_or(Place::BEFORE_ALL, |(_, place)| place);
        (seq, place.id(self.link.epoch().as_str()))
    }

    /// Where the current history begins in the hub's log, while none of its events is there
    /// yet (a resume from [`Place::BEFORE_ALL`] then starts there).
    pub(crate) fn empty_history_start(&self) -> Option<u64> {
        let relayed = self
            .link
            .relayed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        relayed
            .is_none()
            .then(|| self.link.history_start.load(Ordering::Acquire))
    }

    /// The reader has delivered everything up to and including `place`.
    pub(crate) fn read_past(&self, place: Place) -> bool {
        self.link.delivered_below.load(Ordering::Acquire) > place.ms
    }

    /// The id subscribers see for `event`, placed at `place`.
    pub(crate) fn id_of(&self, event: &Event, place: &Place, epoch: &Epoch) -> String {
        writer::id_of(event, place, epoch)
    }
}

/// How far each shard's stream is trimmed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// About this many entries (`MAXLEN ~`, on each `XADD`).
    pub(crate) maxlen: usize,
    /// Entries older than this go (`XTRIM MINID ~`, with each publish and on a timer).
    pub(crate) age: Option<Duration>,
}

impl Bounds {
    /// The stream id below which entries are older than `age`, now (by this hub's clock).
    pub(crate) fn min_id(&self) -> Option<String> {
        let age = self.age?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!("{}-0", now.checked_sub(age)?.as_millis()))
    }
}

/// Why Redis did not take a publish.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Redis failed, or was not reached in time.
    Redis(StoreError),
    /// A publisher id is claimed already (by any hub).
    DuplicateId(String),
    /// Not answerable yet, on a connection that works: the replicas asked for do not hold it
    /// yet, or another publish of one of its ids is still being settled. Publish again.
    NotYet(StoreError),
    /// Redis holds another history than this hub's (it lost its data); the hub adopts it soon.
    OtherHistory,
}

impl Link {
    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes `epoch` as the cluster's history from now on, which begins after the hub's log
    /// sequence number `start`; streams opened before see the new generation and end.
    pub(crate) fn adopt(&self, epoch: Epoch, start: u64) {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        // Held across the change of epoch, so that `Cluster::now` never pairs an old place
        // with the new epoch. The new history's places start over.
        let mut relayed = self.relayed.lock().unwrap_or_else(PoisonError::into_inner);
        self.history_start.store(start, Ordering::Release);
        let old = std::mem::replace(
            &mut *self.epoch.write().unwrap_or_else(PoisonError::into_inner),
            epoch,
        );
        *relayed = None;
        drop(relayed);
        lost.push(old);
        drop(lost);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Link {
    /// Runs `append` (the reader putting a round's events in the hub's log; it returns the
    /// log's newest sequence number) and notes the newest place, `newest`, under one lock, so
    /// that [`Cluster::now`] never sees the log ahead of its place. A late event, placed lower,
    /// does not move the place back.
    pub(crate) fn relay_noted(&self, newest: Option<Place>, append: impl FnOnce() -> u64) {
        let mut relayed = self.relayed.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = append();
        if let Some(place) = newest {
            if relayed.is_none_or(|(_, old)| old < place) {
                *relayed = Some((seq, place));
            }
        }
    }

    /// Trimming passed the reader, whose log holds events up to sequence number `at`: streams
    /// end (see [`Link::adopt`]), and a resume from up to `at` gets a `gap`.
    pub(crate) fn trimmed(&self, at: u64) {
        self.hole_below.fetch_max(at + 1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// An id of the shape the cluster gives (`<epoch>-<ms>-<n>-<shard>`), of any history.
pub(crate) fn cluster_shaped(id: &str) -> Option<Epoch> {
    let (prefix, _) = id.split_once('-')?;
    let epoch = Epoch::from_text(prefix)?;
    Place::parse(prefix, id).map(|_| epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_known_by_shape_in_any_epoch() {
        let place = Place {
            ms: 1_700_000_000_123,
            shard: 5,
            n: 2,
        };
        let epoch = cluster_shaped(&place.id("3f2a9c01b2c4"));
        assert_eq!(
            epoch.map(|e| e.as_str().to_string()).as_deref(),
            Some("3f2a9c01b2c4")
        );
        assert_eq!(cluster_shaped("3f2a9c01b2c4-17"), None, "a single hub's id");
        assert_eq!(cluster_shaped("order-1-2-3"), None);
        assert_eq!(cluster_shaped("x"), None);
    }
}
