//! The publish side: a request goes whole into one shard (the shard of its first event's first
//! topic), all its events in one `MULTI`/`EXEC`, so it is all or nothing; each event's [`Place`]
//! comes from the id Redis gave it.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::claims::{claim, drop_done, fenced_append, place_claims};
use super::conn::{Backend, Conn};
use super::group_wait::{GroupWait, Target};
use super::keys::shard_of;
use super::{entry, meta};
use super::{AppendError, Bounds, Place};
use crate::event::Event;
use crate::id::Epoch;
use crate::store::StoreError;

/// A publish not answered by Redis within this is refused (the publisher gets 503).
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// How long a publish waits for its replicas (`WAIT`), on top of [`ANSWER_WITHIN`].
pub(crate) const REPLICAS_WITHIN: Duration = Duration::from_millis(500);

/// A Redis stream id `ms-n`.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, n) = id.split_once('-')?;
    Some((ms.parse().ok()?, n.parse().ok()?))
}

/// Appends publishes to the shards, over one shared connection (made again after a failure).
pub(crate) struct Writer {
    conn: Mutex<Option<(Conn, Arc<GroupWait>)>>,
    /// Each shard's stream.
    keys: Vec<String>,
    /// Replicas that must hold a publish before it is answered (`WAIT`; 0: the master alone).
    replicas: AtomicU16,
}

impl Writer {
    pub(crate) fn new(conn: Conn, keys: Vec<String>) -> Writer {
        Writer {
            conn: Mutex::new(Some((conn.clone(), GroupWait::new(conn)))),
            keys,
            replicas: AtomicU16::new(0),
        }
    }

    /// Replicas a publish waits for.
    pub(crate) fn replicas(&self) -> u16 {
        self.replicas.load(Ordering::Relaxed)
    }

    /// See [`Cluster::wait_for_replicas`](super::Cluster::wait_for_replicas).
    pub(crate) fn wait_for_replicas(&self, replicas: u16) {
        self.replicas.store(replicas, Ordering::Relaxed);
    }

    /// Appends a batch (each event with at least one topic) to its shard, trimming that shard
    /// to its `bounds`, after claiming its publisher ids for `claim_for`. Answers
    /// within [`ANSWER_WITHIN`] or fails; on failure nothing may be taken as published (it may
    /// still be, if the answer alone was lost). `epoch` is the history this hub is in: a fresh
    /// connection first checks that Redis holds it.
    pub(crate) async fn append(
        &self,
        backend: &Backend,
        events: &[Event],
        bounds: Bounds,
        claim_for: Duration,
        epoch: &Epoch,
    ) -> Result<Vec<Place>, AppendError> {
        let attempt = self.try_append(backend, events, bounds, claim_for, epoch);
        // Waiting for replicas comes on top of the answer's own bound: at most two waits, the
        // event's master, then (publisher ids on a Redis Cluster) every master.
        let within = match self.replicas() {
            0 => ANSWER_WITHIN,
            _ => ANSWER_WITHIN + 2 * REPLICAS_WITHIN,
        };
        match tokio::time::timeout(within, attempt).await {
            Ok(Ok(places)) => Ok(places),
            Ok(Err(e)) => {
                // The connection works: keep it (a new one would also lose the group commit).
                if !matches!(e, AppendError::DuplicateId(_) | AppendError::NotYet(_)) {
                    self.forget();
                }
                Err(e)
            }
            Err(_) => {
                self.forget();
                Err(AppendError::Redis(StoreError(format!(
                    "Redis did not answer within {} ms",
                    within.as_millis()
                ))))
            }
        }
    }

    async fn try_append(
        &self,
        backend: &Backend,
        events: &[Event],
        bounds: Bounds,
        claim_for: Duration,
        epoch: &Epoch,
    ) -> Result<Vec<Place>, AppendError> {
        let Some(first) = events.first().and_then(|e| e.topics().first()) else {
            return Ok(Vec::new());
        };
        let shard = shard_of(first.as_str(), self.keys.len() as u16);
        let key = &self.keys[usize::from(shard)];
        let (mut conn, waits) = self.linked(backend, epoch).await?;
        let replicas = self.replicas.load(Ordering::Relaxed);
        let (ids, done): (Vec<String>, String) = if events.iter().any(|e| e.id().is_some()) {
            let done = claim(&conn, events, claim_for, key, replicas).await?;
            // Once sent, the claims stay whatever comes back: even an error may come after the
            // script ran, and a retry settles them (see `claims`).
            let append = fenced_append(key, events, bounds, claim_for, &done);
            let ids = append.query_async(&mut conn).await.map_err(redis_failed)?;
            (ids, done)
        } else {
            let ids = transaction(key, events, bounds)
                .query_async(&mut conn)
                .await
                .map_err(redis_failed)?;
            (ids, String::new())
        };
        let places: Option<Vec<Place>> = ids
            .iter()
            .map(|id| parse_id(id).map(|(ms, n)| Place { ms, shard, n }))
            .collect();
        let places = match places {
            Some(places) if places.len() == events.len() => places,
            _ => {
                return Err(AppendError::Redis(StoreError(format!(
                    "Redis answered {ids:?} to XADD"
                ))))
            }
        };
        if replicas > 0 {
            let held = waits
                .wait(Target::MasterOf(key.clone()), replicas, REPLICAS_WITHIN)
                .await
                .map_err(|e| AppendError::Redis(StoreError(e)))?;
            if held < i64::from(replicas) {
                // Written, and delivered, but a failover now could lose it: unanswered (the
                // claims stay pending), so the publisher tries again; with ids, a retry is
                // answered 409 once the replicas hold it.
                return Err(AppendError::NotYet(StoreError(format!(
                    "written, but {held} of the {replicas} replicas asked for (--redis-wait-replicas) hold it after {} ms; publish again",
                    REPLICAS_WITHIN.as_millis()
                ))));
            }
        }
        if !done.is_empty() {
            let placed = place_claims(&conn, events, &places, epoch).await;
            if replicas > 0 && conn.is_cluster() {
                // The claims live on their ids' own slots, maybe on other masters than the
                // event's, which the `WAIT` above did not cover; a failover there must not
                // forget an id that was answered. Until they are on replicas the done key
                // stays, so a retry is told the event is in (409) once they are.
                let held = waits
                    .wait(Target::Everywhere, replicas, REPLICAS_WITHIN)
                    .await
                    .map_err(|e| AppendError::Redis(StoreError(e)))?;
                if held < i64::from(replicas) {
                    return Err(AppendError::NotYet(StoreError(format!(
                        "written, but its publisher ids are on {held} of the {replicas} replicas asked for (--redis-wait-replicas) after {} ms; publish again",
                        REPLICAS_WITHIN.as_millis()
                    ))));
                }
            }
            if placed {
                drop_done(&conn, done);
            }
        }
        Ok(places)
    }

    /// The shared connection, or a new one once Redis is checked to hold `epoch`'s history.
    pub(crate) async fn connection(
        &self,
        backend: &Backend,
        epoch: &Epoch,
    ) -> Result<Conn, AppendError> {
        Ok(self.linked(backend, epoch).await?.0)
    }

    /// The shared connection with its group commit for `WAIT`.
    async fn linked(
        &self,
        backend: &Backend,
        epoch: &Epoch,
    ) -> Result<(Conn, Arc<GroupWait>), AppendError> {
        if let Some(linked) = self.lock().clone() {
            return Ok(linked);
        }
        // No answer bound of its own: `append` bounds the whole publish.
        let mut conn = backend
            .connect(None)
            .await
            .map_err(|e| AppendError::Redis(StoreError(format!("cannot reach Redis: {e}"))))?;
        // A Redis that restarted without its data holds no history, or another hub's new one.
        let held = meta::agree(&mut conn, self.keys.len() as u16)
            .await
            .map_err(AppendError::Redis)?;
        if held != *epoch {
            return Err(AppendError::OtherHistory);
        }
        let linked = (conn.clone(), GroupWait::new(conn));
        *self.lock() = Some(linked.clone());
        Ok(linked)
    }

    /// Drops the connection after a failure, so the next publish connects afresh.
    fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Conn, Arc<GroupWait>)>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A batch without publisher ids: one `MULTI`/`EXEC`, trimmed as it goes.
fn transaction(stream: &str, events: &[Event], bounds: Bounds) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for event in events {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(bounds.maxlen)
            .arg("*");
        for (field, value) in entry::fields(event) {
            pipe.arg(field).arg(value);
        }
    }
    // `XADD` takes one trimming rule: the age goes by `XTRIM`, in the same transaction.
    if let Some(min_id) = bounds.min_id() {
        pipe.cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .ignore();
    }
    pipe
}

fn redis_failed(e: redis::RedisError) -> AppendError {
    AppendError::Redis(StoreError(format!("Redis: {e}")))
}

/// The id a subscriber sees for an event the writer placed: the publisher's, or the place's.
pub(crate) fn id_of(event: &Event, place: &Place, epoch: &Epoch) -> String {
    match event.id() {
        Some(id) => id.to_string(),
        None => place.id(epoch.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_read_back() {
        assert_eq!(parse_id("1700000000123-4"), Some((1_700_000_000_123, 4)));
        assert_eq!(parse_id("1700000000123"), None);
        assert_eq!(parse_id("a-1"), None);
    }
}
