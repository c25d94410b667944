//! A hub in a cluster (feature `cluster`; see `docs/cluster.md`): its publishes go to Redis, and
//! what the cluster's reader brings back, from every hub, is appended to its log in the
//! cluster's order. The publishing hub has no faster path: its own events come back through
//! the reader like everyone else's, so every hub delivers in the same order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::log::TopicLog;
use super::publish::distinct;
use super::{Hub, HubBuilder, Inner, PublishError, Receipt};
use crate::cluster::{cluster_shaped, AppendError, Bounds, Cluster, Place};
use crate::event::{encode_without_id, encoded_len_max, Event, EventError};
use crate::store::StoreError;

/// How long a publisher id stays claimed without `--history-age`.
const CLAIM_DEFAULT: Duration = Duration::from_secs(24 * 3600);

impl HubBuilder {
    /// Joins a cluster ([`Cluster::connect`]): publishes go to its Redis and are answered once
    /// Redis accepted them (or refused within a second), and this hub delivers every event of
    /// the cluster, from every hub, in the cluster's order (see `docs/cluster.md`). Build it
    /// inside a tokio runtime: the reader runs there. Redis holds the history, so give no
    /// [`store`](Self::store) with it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = ssehub::cluster::Cluster::connect("redis://127.0.0.1:6379", 16).await?;
    /// let hub = ssehub::Hub::builder().history(100_000).cluster(cluster).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster(mut self, cluster: Cluster) -> HubBuilder {
        self.cluster = Some(cluster);
        self
    }
}

/// Appends events the cluster's reader released, in that order. Never refused: what Redis
/// accepted is delivered (ids were checked by the publishing hub). Returns the sequence number
/// of the last (only the reader appends in a cluster).
pub(crate) fn relay(hub: &Inner, events: Vec<Event>) -> u64 {
    let log = &hub.log;
    let rings: Vec<Vec<Arc<TopicLog>>> = events
        .iter()
        .map(|e| e.topics().iter().map(|t| log.topic(t)).collect())
        .collect();
    let touched = distinct(&rings);
    log.append_relayed(&hub.epoch, &events, &rings, &touched);
    log.committed()
}

/// Redis lost the cluster's history: `adopt` takes up the new one (given where it begins in
/// this hub's log), then every stream is woken to see that and end.
pub(crate) fn history_lost(hub: &Inner, adopt: impl FnOnce(u64)) {
    adopt(hub.log.committed());
    for t in hub.log.all_topics() {
        t.wake();
    }
}

/// Trimming in Redis passed this hub's reader (events it never read are gone): `mark` records
/// where in the log (the newest sequence number so far), then every stream is woken to end.
pub(crate) fn history_trimmed(hub: &Inner, mark: impl FnOnce(u64)) {
    mark(hub.log.committed());
    for t in hub.log.all_topics() {
        t.wake();
    }
}

/// How far each shard's stream is trimmed: to `--history` entries each (not a share of it: a
/// hot topic fills its one shard, and Redis must keep at least what a hub's memory holds, or a
/// reader a little behind would find its next entries trimmed), and by `--history-age`.
pub(crate) fn bounds(hub: &Inner) -> Bounds {
    Bounds {
        maxlen: hub.config.history.max(1),
        age: hub.config.history_age,
    }
}

/// How many times the cluster's history changed (0 outside a cluster): a stream opened under
/// one generation ends at the next.
pub(super) fn generation(hub: &Inner) -> u64 {
    hub.cluster.as_ref().map_or(0, Cluster::generation)
}

/// A resume from `id` that is owed events the cluster lost: the `gap` and where the replay
/// starts. Either `id` is of a history Redis lost (`other-history`; the replay starts with the
/// current history's first event in this hub's log), or trimming in Redis passed this hub's
/// reader after `id` (`evicted`; the replay goes on from `id`, with what is left).
pub(super) fn lost_history(hub: &Inner, id: &str) -> Option<(Bytes, u64)> {
    let cluster = hub.cluster.as_ref()?;
    let lost = cluster_shaped(id).and_then(|epoch| cluster.lost(&epoch));
    let (reason, start, message) = match lost {
        Some(start) => (
            "other-history",
            start,
            "this id is from a history the cluster lost (Redis restarted without its data); replaying the current one",
        ),
        None => {
            let seq = hub.log.seq_of(id).filter(|seq| cluster.before_hole(*seq))?;
            (
                "evicted",
                seq,
                "events after lastEventId were trimmed from Redis before this hub read them; replaying what is left",
            )
        }
    };
    let data = serde_json::json!({
        "reason": reason,
        "lastEventId": id,
        "message": message,
    });
    Some((encode_without_id("gap", &data.to_string()), start))
}

/// How long a resume waits for the reader to bring in the event it names.
const WAIT_RELAYED: Duration = Duration::from_secs(5);

/// A resume id not in memory, in a cluster: Redis may know where it is (see
/// [`relayed`]). Only ids of lost histories are known to be nowhere.
pub(super) fn awaits(hub: &Inner, id: &str) -> bool {
    hub.cluster
        .as_ref()
        .is_some_and(|cluster| cluster_shaped(id).is_none_or(|epoch| epoch == cluster.epoch()))
}

/// Waits until the reader brings in the event `id` names, at `place`: its sequence number, or
/// `None` once the reader has passed that place without it (it left memory, or never was), or
/// after [`WAIT_RELAYED`].
pub(super) async fn relayed(hub: &Inner, id: &str, place: Place) -> Option<u64> {
    let cluster = hub.cluster.as_ref()?;
    let deadline = Instant::now() + WAIT_RELAYED;
    loop {
        if let Some(seq) = hub.log.seq_of(id) {
            return Some(seq);
        }
        // "Now" as another hub gave it (`Cluster::now`): the place of its newest event, which
        // memory indexes under its publisher's id if it had one, or the history's start.
        if let Some((seq, _)) = cluster.relayed().filter(|(_, newest)| *newest == place) {
            return Some(seq);
        }
        if place == Place::BEFORE_ALL {
            if let Some(seq) = cluster.empty_history_start() {
                return Some(seq);
            }
        }
        if cluster.read_past(place) || Instant::now() > deadline {
            // It may have come in between the two looks.
            return hub.log.seq_of(id);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Hub {
    /// [`Hub::publish`] in a cluster: checked here, appended to Redis, answered with the ids
    /// Redis' places make. `events` have their topics set; `touched` are their topics' logs.
    pub(super) async fn publish_clustered(
        &self,
        cluster: &Cluster,
        events: &[Event],
        touched: &[Arc<TopicLog>],
    ) -> Result<Receipt, PublishError> {
        let epoch = cluster.epoch();
        let mut seen: Vec<&str> = Vec::new();
        // Memory holds an event before its replicas may: with --redis-wait-replicas only
        // Redis may say 409 (once they hold it).
        let memory_knows = !cluster.waits_for_replicas();
        for id in events.iter().filter_map(Event::id) {
            // Of any epoch: a resume from one of a lost history is told so (`other-history`).
            if cluster_shaped(id).is_some() {
                let why = "ids of the form EPOCH-MS-N-SHARD are the cluster's own";
                return Err(EventError::BadId(id.to_string(), why).into());
            }
            // Redis' claims (at append) see every hub's ids; memory answers sooner.
            if seen.contains(&id) || (memory_knows && self.inner.log.seq_of(id).is_some()) {
                return Err(PublishError::DuplicateId(id.to_string()));
            }
            seen.push(id);
        }
        // Every hub's memory must be able to hold the batch (hubs share their settings).
        let id_len = self.longest_id_len();
        let bytes = events.iter().fold(0u64, |sum, e| {
            let len = encoded_len_max(e.id().map_or(id_len, str::len), e);
            sum.saturating_add(len as u64)
        });
        let limit = self.inner.config.history_bytes;
        if bytes > limit {
            return Err(PublishError::TooLarge { bytes, limit });
        }
        let bounds = bounds(&self.inner);
        let claim_for = self.inner.config.history_age.unwrap_or(CLAIM_DEFAULT);
        let places = match cluster.append(events, bounds, claim_for, &epoch).await {
            Ok(places) => places,
            Err(AppendError::Redis(e) | AppendError::NotYet(e)) => return Err(e.into()),
            Err(AppendError::DuplicateId(id)) => return Err(PublishError::DuplicateId(id)),
            Err(AppendError::OtherHistory) => {
                let why =
                    "Redis lost the cluster's history; this hub is taking up the new one: retry";
                return Err(StoreError(why.into()).into());
            }
        };
        self.inner
            .published
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let subscribers = touched
            .iter()
            .map(|t| t.subscribers.load(Ordering::Relaxed))
            .sum();
        Ok(Receipt {
            ids: events
                .iter()
                .zip(&places)
                .map(|(e, place)| cluster.id_of(e, place, &epoch))
                .collect(),
            subscribers,
        })
    }
}
