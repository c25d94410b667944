//! The publish side: a request goes whole into one shard (the shard of its first event's first
//! topic), all its events in one `MULTI`/`EXEC`, so it is all or nothing; each event's [`Place`]
//! comes from the id Redis gave it.

use std::sync::Mutex;
use std::time::Duration;

use redis::Value;

use super::conn::{Backend, Conn};
use super::keys::{id_key, shard_of};
use super::{entry, meta};
use super::{AppendError, Bounds, Place};
use crate::event::Event;
use crate::id::Epoch;
use crate::store::StoreError;

/// A publish not answered by Redis within this is refused (the publisher gets 503).
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// A Redis stream id `ms-n`.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, n) = id.split_once('-')?;
    Some((ms.parse().ok()?, n.parse().ok()?))
}

/// Appends publishes to the shards, over one shared connection (made again after a failure).
pub(crate) struct Writer {
    conn: Mutex<Option<Conn>>,
    /// Each shard's stream.
    keys: Vec<String>,
}

impl Writer {
    pub(crate) fn new(conn: Conn, keys: Vec<String>) -> Writer {
        Writer {
            conn: Mutex::new(Some(conn)),
            keys,
        }
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
        match tokio::time::timeout(ANSWER_WITHIN, attempt).await {
            Ok(Ok(places)) => Ok(places),
            Ok(Err(e)) => {
                if !matches!(e, AppendError::DuplicateId(_)) {
                    self.forget();
                }
                Err(e)
            }
            Err(_) => {
                self.forget();
                Err(AppendError::Redis(StoreError(format!(
                    "Redis did not answer within {}s",
                    ANSWER_WITHIN.as_secs()
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
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in events {
            pipe.cmd("XADD")
                .arg(key)
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
                .arg(key)
                .arg("MINID")
                .arg("~")
                .arg(min_id)
                .ignore();
        }
        let mut conn = self.connection(backend, epoch).await?;
        let claimed = claim(&conn, events, claim_for).await?;
        let ids: Vec<String> = match pipe.query_async(&mut conn).await {
            Ok(ids) => ids,
            Err(e) => {
                // So that a retry is not refused; if this fails too, the claims expire.
                let _ = unclaim(&conn, &claimed).await;
                return Err(redis_failed(e));
            }
        };
        let places: Option<Vec<Place>> = ids
            .iter()
            .map(|id| parse_id(id).map(|(ms, n)| Place { ms, shard, n }))
            .collect();
        match places {
            Some(places) if places.len() == events.len() => {
                place_claims(&conn, events, &places, epoch).await;
                Ok(places)
            }
            _ => Err(AppendError::Redis(StoreError(format!(
                "Redis answered {ids:?} to XADD"
            )))),
        }
    }

    /// The shared connection, or a new one once Redis is checked to hold `epoch`'s history.
    pub(crate) async fn connection(
        &self,
        backend: &Backend,
        epoch: &Epoch,
    ) -> Result<Conn, AppendError> {
        if let Some(conn) = self.lock().clone() {
            return Ok(conn);
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
        *self.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection after a failure, so the next publish connects afresh.
    fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Claims the batch's publisher ids (`SET NX EX`, one command per id: each id key is in its
/// own slot on a Redis Cluster, so they cannot share a pipeline; they go out together): the
/// keys made, or `DuplicateId` for the first one some publish claimed before (the others made
/// are deleted).
async fn claim(
    conn: &Conn,
    events: &[Event],
    claim_for: Duration,
) -> Result<Vec<String>, AppendError> {
    let ids: Vec<&str> = events.iter().filter_map(Event::id).collect();
    let claims = ids.iter().map(|id| {
        let mut conn = conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(id_key(id))
            .arg("claimed")
            .arg("NX")
            .arg("EX")
            .arg(claim_for.as_secs().max(1));
        async move { set.query_async::<Option<String>>(&mut conn).await }
    });
    let answers = futures_util::future::join_all(claims).await;
    let made: Vec<String> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| matches!(answer, Ok(Some(_))))
        .map(|(id, _)| id_key(id))
        .collect();
    let failed = answers.iter().find_map(|a| a.as_ref().err());
    let taken = ids
        .iter()
        .zip(&answers)
        .find(|(_, a)| matches!(a, Ok(None)));
    if failed.is_none() && taken.is_none() {
        return Ok(made);
    }
    unclaim(conn, &made).await.map_err(redis_failed)?;
    match (failed, taken) {
        (Some(e), _) => Err(AppendError::Redis(StoreError(format!("Redis: {e}")))),
        (None, Some((id, _))) => Err(AppendError::DuplicateId((*id).to_string())),
        (None, None) => Ok(made),
    }
}

/// Writes each publisher id's place (the cluster id of its event) into its claim, so that any
/// hub can resume from it once it left memory. Before the publish is answered; a failure only
/// leaves the claim as it was (a resume from that id then gets an `unknown-id` gap).
async fn place_claims(conn: &Conn, events: &[Event], places: &[Place], epoch: &Epoch) {
    let sets = events.iter().zip(places).filter_map(|(event, place)| {
        let mut conn = conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(id_key(event.id()?))
            .arg(place.id(epoch.as_str()))
            .arg("XX")
            .arg("KEEPTTL");
        Some(async move { set.query_async::<Value>(&mut conn).await })
    });
    for failed in futures_util::future::join_all(sets)
        .await
        .into_iter()
        .filter_map(Result::err)
    {
        tracing::warn!("redis: recording a publisher id's place: {failed}");
    }
}

/// Where the event whose publisher chose `id` is, in history `epoch`, if Redis knows.
pub(crate) async fn claimed_place(
    conn: &mut Conn,
    id: &str,
    epoch: &Epoch,
) -> redis::RedisResult<Option<Place>> {
    let held: Option<String> = redis::cmd("GET").arg(id_key(id)).query_async(conn).await?;
    Ok(held.and_then(|held| Place::parse(epoch.as_str(), &held)))
}

/// Deletes claims (one `DEL` per key, for the same reason as in [`claim`]).
async fn unclaim(conn: &Conn, keys: &[String]) -> redis::RedisResult<()> {
    let dels = keys.iter().map(|key| {
        let mut conn = conn.clone();
        let mut del = redis::cmd("DEL");
        del.arg(key);
        async move { del.query_async::<redis::Value>(&mut conn).await }
    });
    futures_util::future::join_all(dels)
        .await
        .into_iter()
        .try_for_each(|r| r.map(drop))
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
