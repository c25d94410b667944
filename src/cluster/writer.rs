//! The publish side: a request goes whole into one shard (the shard of its first event's first
//! topic), all its events in one `MULTI`/`EXEC`, so it is all or nothing; each event's [`Place`]
//! comes from the id Redis gave it.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::entry;
use super::Place;
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
    /// to about `maxlen` entries. Answers within [`ANSWER_WITHIN`] or fails; on failure nothing
    /// may be taken as published (it may still be, if the answer alone was lost).
    pub(crate) async fn append(
        &self,
        events: &[Event],
        maxlen: usize,
    ) -> Result<Vec<Place>, StoreError> {
        match tokio::time::timeout(ANSWER_WITHIN, self.try_append(events, maxlen)).await {
            Ok(Ok(places)) => Ok(places),
            Ok(Err(e)) => {
                self.forget();
                Err(e)
            }
            Err(_) => {
                self.forget();
                Err(StoreError(format!(
                    "Redis did not answer within {}s",
                    ANSWER_WITHIN.as_secs()
                )))
            }
        }
    }

    async fn try_append(&self, events: &[Event], maxlen: usize) -> Result<Vec<Place>, StoreError> {
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
        let mut conn = self.connection().await?;
        let ids: Vec<String> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError(format!("Redis: {e}")))?;
        let places: Option<Vec<Place>> = ids
            .iter()
            .map(|id| parse_id(id).map(|(ms, n)| Place { ms, shard, n }))
            .collect();
        match places {
            Some(places) if places.len() == events.len() => Ok(places),
            _ => Err(StoreError(format!("Redis answered {ids:?} to XADD"))),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self.lock().clone() {
            return Ok(conn);
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await
            .map_err(|e| StoreError(format!("cannot reach Redis: {e}")))?;
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
    }

    #[test]
    fn stream_ids_read_back() {
        assert_eq!(parse_id("1700000000123-4"), Some((1_700_000_000_123, 4)));
        assert_eq!(parse_id("1700000000123"), None);
        assert_eq!(parse_id("a-1"), None);
    }
}
