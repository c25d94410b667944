//! The publish side: a request goes whole into one shard (the shard of its first event's first
//! topic), all its events in one `MULTI`/`EXEC`, so it is all or nothing; each event's [`Place`]
//! comes from the id Redis gave it.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{entry, meta};
use super::{AppendError, Place};
use crate::event::Event;
use crate::id::Epoch;
use crate::store::StoreError;

/// A publish not answered by Redis within this is refused (the publisher gets 503).
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The stream of shard `k`: the hash tag keeps a shard's keys in one Redis Cluster slot.
pub(crate) fn key(shard: u16) -> String {
    format!("ssehub:{{s{shard}}}:log")
}

/// The shard of a topic: CRC16 (XMODEM, as Redis Cluster's slots) mod `shards`, which does not
/// change between versions or machines.
pub(crate) fn shard_of(topic: &str, shards: u16) -> u16 {
    let mut crc: u16 = 0;
    for byte in topic.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % shards.max(1)
}

/// A Redis stream id `ms-n`.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, n) = id.split_once('-')?;
    Some((ms.parse().ok()?, n.parse().ok()?))
}

/// Appends publishes to the shards, over one shared connection (made again after a failure).
pub(crate) struct Writer {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    shards: u16,
}

impl Writer {
    pub(crate) fn new(client: redis::Client, conn: MultiplexedConnection, shards: u16) -> Writer {
        Writer {
            client,
            conn: Mutex::new(Some(conn)),
            shards,
        }
    }

    /// How a writer's connection is made: the caller bounds the whole publish instead.
    pub(crate) fn config() -> redis::AsyncConnectionConfig {
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ANSWER_WITHIN))
            .set_response_timeout(None)
    }

    /// Appends a batch (each event with at least one topic) to its shard, trimming that shard
    /// to about `maxlen` entries, after claiming its publisher ids for `claim_for`. Answers
    /// within [`ANSWER_WITHIN`] or fails; on failure nothing may be taken as published (it may
    /// still be, if the answer alone was lost). `epoch` is the history this hub is in: a fresh
    /// connection first checks that Redis holds it.
    pub(crate) async fn append(
        &self,
        events: &[Event],
        maxlen: usize,
        claim_for: Duration,
        epoch: &Epoch,
    ) -> Result<Vec<Place>, AppendError> {
        let attempt = self.try_append(events, maxlen, claim_for, epoch);
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
        events: &[Event],
        maxlen: usize,
        claim_for: Duration,
        epoch: &Epoch,
    ) -> Result<Vec<Place>, AppendError> {
        let Some(first) = events.first().and_then(|e| e.topics().first()) else {
            return Ok(Vec::new());
        };
        let shard = shard_of(first.as_str(), self.shards);
        let key = key(shard);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in events {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*");
            for (field, value) in entry::fields(event) {
                pipe.arg(field).arg(value);
            }
        }
        let mut conn = self.connection(epoch).await?;
        let claimed = claim(&mut conn, events, claim_for).await?;
        let ids: Vec<String> = match pipe.query_async(&mut conn).await {
            Ok(ids) => ids,
            Err(e) => {
                // So that a retry is not refused; if this fails too, the claims expire.
                if !claimed.is_empty() {
                    let _ = redis::cmd("DEL")
                        .arg(&claimed)
                        .query_async::<redis::Value>(&mut conn)
                        .await;
                }
                return Err(redis_failed(e));
            }
        };
        let places: Option<Vec<Place>> = ids
            .iter()
            .map(|id| parse_id(id).map(|(ms, n)| Place { ms, shard, n }))
            .collect();
        match places {
            Some(places) if places.len() == events.len() => Ok(places),
            _ => Err(AppendError::Redis(StoreError(format!(
                "Redis answered {ids:?} to XADD"
            )))),
        }
    }

    /// The shared connection, or a new one once Redis is checked to hold `epoch`'s history.
    async fn connection(&self, epoch: &Epoch) -> Result<MultiplexedConnection, AppendError> {
        if let Some(conn) = self.lock().clone() {
            return Ok(conn);
        }
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await
            .map_err(|e| AppendError::Redis(StoreError(format!("cannot reach Redis: {e}"))))?;
        // A Redis that restarted without its data holds no history, or another hub's new one.
        let held = meta::agree(&mut conn, self.shards)
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key that claims publisher id `id` cluster-wide (its own slot on a Redis Cluster).
pub(crate) fn id_key(id: &str) -> String {
    format!("ssehub:id:{{{id}}}")
}

/// Claims the batch's publisher ids (`SET NX EX`, one round trip): the keys made, or
/// `DuplicateId` for the first one some publish claimed before (the others made are deleted).
async fn claim(
    conn: &mut MultiplexedConnection,
    events: &[Event],
    claim_for: Duration,
) -> Result<Vec<String>, AppendError> {
    let ids: Vec<&str> = events.iter().filter_map(Event::id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("SET")
            .arg(id_key(id))
            .arg("claimed")
            .arg("NX")
            .arg("EX")
            .arg(claim_for.as_secs().max(1));
    }
    let answers: Vec<Option<String>> = pipe.query_async(conn).await.map_err(redis_failed)?;
    let made: Vec<String> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| answer.is_some())
        .map(|(id, _)| id_key(id))
        .collect();
    let Some((taken, _)) = ids.iter().zip(&answers).find(|(_, a)| a.is_none()) else {
        return Ok(made);
    };
    if !made.is_empty() {
        redis::cmd("DEL")
            .arg(&made)
            .query_async::<redis::Value>(conn)
            .await
            .map_err(redis_failed)?;
    }
    Err(AppendError::DuplicateId((*taken).to_string()))
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
    fn shards_are_crc16_as_redis_cluster_slots() {
        // The check value of CRC16/XMODEM, and Redis Cluster's slot of "foo" (12182).
        assert_eq!(shard_of("123456789", u16::MAX), 0x31c3);
        assert_eq!(shard_of("foo", 16384), 12182);
        assert!((0..100).all(|i| shard_of(&format!("t{i}"), 16) < 16));
        assert_eq!(key(5), "ssehub:{s5}:log");
        assert_eq!(id_key("order-42"), "ssehub:id:{order-42}");
    }

    #[test]
    fn stream_ids_read_back() {
        assert_eq!(parse_id("1700000000123-4"), Some((1_700_000_000_123, 4)));
        assert_eq!(parse_id("1700000000123"), None);
        assert_eq!(parse_id("a-1"), None);
    }
}
