//! Replays older than a hub's memory, read from Redis (see `docs/cluster.md`, "Resume
//! anywhere"): for each shard, `XRANGE` from the first id after the resume place up to the
//! newest place the hub's reader put in its log, merged in place order; the subscription then
//! goes on from memory after that place.

use std::collections::HashMap;

use redis::streams::StreamRangeReply;
use redis::Value;

use super::writer::parse_id;
use super::{entry, Cluster, Place};
use crate::event::Event;
use crate::store::StoreError;

/// A replay in progress: what was sent (`after`), where it ends (`upto`), and the hub's log
/// sequence number of `upto`, from which memory goes on.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    pub(crate) after: Place,
    upto: Place,
    pub(crate) then: u64,
    /// Trimming was looked for (on the first batch).
    checked: bool,
}

/// One batch of a replay.
pub(crate) struct Batch {
    /// The events, in place order.
    pub(crate) events: Vec<Event>,
    /// Redis trimmed events after the replay's start before it was read.
    pub(crate) lost: bool,
    /// Nothing is left before `upto`: memory goes on from [`Replay::then`].
    pub(crate) done: bool,
}

/// The first stream id of shard `j` after place `after`: within `after`'s millisecond, lower
/// shards come first.
fn start(j: u16, after: Place) -> String {
    match j.cmp(&after.shard) {
        std::cmp::Ordering::Equal => format!("({}-{}", after.ms, after.n),
        std::cmp::Ordering::Less => format!("{}-0", after.ms.saturating_add(1)),
        std::cmp::Ordering::Greater => format!("{}-0", after.ms),
    }
}

/// The last stream id of shard `j` up to and including place `upto`, if any.
fn end(j: u16, upto: Place) -> Option<String> {
    match j.cmp(&upto.shard) {
        std::cmp::Ordering::Equal => Some(format!("{}-{}", upto.ms, upto.n)),
        std::cmp::Ordering::Less => Some(format!("{}-{}", upto.ms, u64::MAX)),
        std::cmp::Ordering::Greater => upto
            .ms
            .checked_sub(1)
            .map(|ms| format!("{ms}-{}", u64::MAX)),
    }
}

impl Cluster {
    /// Where the event a resume id names is in the current history: the id's own place, or
    /// for a publisher's id, the place its claim in Redis records.
    pub(crate) async fn place_of(&self, id: &str) -> Result<Option<Place>, StoreError> {
        let epoch = self.epoch();
        if let Some(place) = Place::parse(epoch.as_str(), id) {
            return Ok(Some(place));
        }
        if super::cluster_shaped(id).is_some() {
            // Another history's: nothing of it is here.
            return Ok(None);
        }
        let link = &self.link;
        let mut conn = link
            .writer
            .connection(&link.backend, &epoch)
            .await
            .map_err(|e| StoreError(format!("redis: resume: {e:?}")))?;
        super::claims::claimed_place(&mut conn, id, &epoch)
            .await
            .map_err(|e| StoreError(format!("redis: resume: {e}")))
    }

    /// A replay from Redis for a resume after `after`: a place of the current history that
    /// this hub's reader has passed and that lies before the newest event it put in its log.
    pub(crate) fn replay_from(&self, after: Place) -> Option<Replay> {
        let (then, upto) = self.relayed()?;
        (self.read_past(after) && after < upto).then_some(Replay {
            after,
            upto,
            then,
            checked: false,
        })
    }

    /// The next batch of `replay` (about `limit` events), read from every shard at once.
    pub(crate) async fn replay_batch(
        &self,
        replay: &mut Replay,
        limit: usize,
    ) -> Result<Batch, StoreError> {
        let link = &self.link;
        let epoch = link.epoch();
        let conn = link
            .writer
            .connection(&link.backend, &epoch)
            .await
            .map_err(|e| StoreError(format!("redis: replay: {e:?}")))?;
        let failed = |e: redis::RedisError| StoreError(format!("redis: replay: {e}"));
        let lost = if replay.checked {
            false
        } else {
            replay.checked = true;
            self.trimmed_since(&conn, replay.after)
                .await
                .map_err(failed)?
        };
        let reads = link.keys.iter().zip(0u16..).filter_map(|(key, j)| {
            let end = end(j, replay.upto)?;
            let mut xrange = redis::cmd("XRANGE");
            xrange
                .arg(key)
                .arg(start(j, replay.after))
                .arg(end)
                .arg("COUNT")
                .arg(limit);
            let mut conn = conn.clone();
            Some(async move {
                let reply: StreamRangeReply = xrange.query_async(&mut conn).await?;
                redis::RedisResult::Ok((j, reply.ids))
            })
        });
        let reads = futures_util::future::try_join_all(reads)
            .await
            .map_err(failed)?;
        // A shard cut at `limit` is complete only up to its last entry read.
        let mut complete = replay.upto;
        let mut entries = Vec::new();
        for (j, ids) in reads {
            if ids.len() >= limit {
                let last = ids.last().and_then(|e| parse_id(&e.id));
                if let Some((ms, n)) = last {
                    complete = complete.min(Place { ms, shard: j, n });
                }
            }
            for item in ids {
                if let Some((ms, n)) = parse_id(&item.id) {
                    entries.push((Place { ms, shard: j, n }, item.map));
                }
            }
        }
        entries.retain(|(place, _)| *place <= complete);
        entries.sort_unstable_by_key(|(place, _)| *place);
        let events = entries
            .into_iter()
            .filter_map(|(place, map)| decode(place, &map, epoch.as_str()))
            .collect();
        replay.after = complete;
        Ok(Batch {
            events,
            lost,
            done: complete == replay.upto,
        })
    }

    /// Whether Redis deleted (trimmed) entries that may be placed after `after`, in any shard
    /// (see `trim::trimmed_past`).
    async fn trimmed_since(
        &self,
        conn: &super::conn::Conn,
        after: Place,
    ) -> redis::RedisResult<bool> {
        let infos = self.link.keys.iter().zip(0u16..).map(|(key, j)| {
            let mut conn = conn.clone();
            let mut info = redis::cmd("XINFO");
            info.arg("STREAM").arg(key);
            async move {
                // A shard never written has no stream: nothing was trimmed there.
                let info: Option<HashMap<String, Value>> = info.query_async(&mut conn).await.ok();
                redis::RedisResult::Ok(info.is_some_and(|info| {
                    super::trim::trimmed_past(&info, |(ms, n)| Place { ms, shard: j, n } > after)
                }))
            }
        });
        let trimmed = futures_util::future::try_join_all(infos).await?;
        Ok(trimmed.into_iter().any(|t| t))
    }
}

fn decode(place: Place, map: &HashMap<String, Value>, epoch: &str) -> Option<Event> {
    let fields = map.iter().filter_map(|(field, value)| match value {
        Value::BulkString(bytes) => Some((field.as_str(), bytes.as_slice())),
        _ => None,
    });
    entry::event(fields, place, epoch)
        .map_err(|why| tracing::warn!("redis: replay: skipping entry {place}: {why}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_place_order() {
        let after = Place {
            ms: 100,
            shard: 3,
            n: 2,
        };
        // Same millisecond: lower shards came before, higher ones after.
        assert_eq!(start(3, after), "(100-2");
        assert_eq!(start(1, after), "101-0");
        assert_eq!(start(5, after), "100-0");
        let upto = Place {
            ms: 200,
            shard: 3,
            n: 0,
        };
        assert_eq!(end(3, upto).as_deref(), Some("200-0"));
        assert_eq!(end(1, upto), Some(format!("200-{}", u64::MAX)));
        assert_eq!(end(5, upto), Some(format!("199-{}", u64::MAX)));
        assert_eq!(
            end(
                5,
                Place {
                    ms: 0,
                    shard: 0,
                    n: 0
                }
            ),
            None
        );
    }
}
