//! The delivery side: one task per hub reads every shard and appends what it read to the hub's
//! in-memory log, in the cluster's order (see `docs/cluster.md`).
//!
//! Each round pipelines `TIME` then `XREAD COUNT c` on all shards from where the last round
//! stopped; the entries go into a [`Merge`], which releases, in place order, those below the
//! millisecond `TIME` gave (everything below it has been read). When a round reads nothing and
//! nothing waits, an `XREAD BLOCK` waits for the next entry, so a quiet cluster costs one
//! blocked command. While Redis is down the reader retries with a capped backoff; it keeps its
//! positions, so when Redis is back it catches up by itself.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::RedisResult;

use super::writer::{key, parse_id};
use super::{entry, meta, Link, Merge, Place};
use crate::event::Event;
use crate::hub::Inner;
use crate::store::StoreError;

/// Entries read per shard and round, at most.
const COUNT: usize = 1000;
/// How long one `XREAD BLOCK` waits when there is nothing to read.
const BLOCK: Duration = Duration::from_secs(1);
/// The wait before the first retry when Redis fails, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the reader checks that Redis still holds this hub's history (`ssehub:meta`), on
/// top of each new connection (a restarted Redis breaks them).
const META_EVERY: Duration = Duration::from_secs(1);

/// Where the reader stands: per shard, the last id read, and what waits for its turn.
struct State {
    keys: Vec<String>,
    shard_of: HashMap<String, u16>,
    positions: Vec<String>,
    merge: Merge<Event>,
}

/// What one round did.
struct Round {
    /// Entries read.
    read: usize,
    /// Some shard had more than one round's worth.
    truncated: bool,
    /// Events that may be delivered now, in place order.
    released: Vec<Event>,
}

impl State {
    fn new(shards: u16) -> State {
        let keys: Vec<String> = (0..shards).map(key).collect();
        State {
            shard_of: keys.iter().cloned().zip(0..shards).collect(),
            positions: vec!["0-0".to_string(); keys.len()],
            // One Redis server: every shard on master 0.
            merge: Merge::new(vec![0; keys.len()]),
            keys,
        }
    }

    /// `TIME`, then `XREAD` on every shard, in one round trip.
    async fn round(&mut self, conn: &mut MultiplexedConnection, epoch: &str) -> RedisResult<Round> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("STREAMS")
            .arg(&self.keys)
            .arg(&self.positions);
        let ((secs, micros), reply): ((u64, u64), Option<StreamReadReply>) =
            pipe.query_async(conn).await?;
        // Every entry below this millisecond was added before `TIME` ran, so `XREAD` got it...
        let mut horizon = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let (mut read, mut truncated) = (0, false);
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(&shard) = self.shard_of.get(&stream.key) else {
                continue;
            };
            if stream.ids.len() >= COUNT {
                // ...unless a shard had more than COUNT: it is complete only below its last.
                truncated = true;
                let last = stream.ids.last().and_then(|e| parse_id(&e.id));
                horizon = horizon.min(last.map_or(0, |(ms, _)| ms));
            }
            for item in stream.ids {
                read += 1;
                self.positions[usize::from(shard)] = item.id.clone();
                let Some((ms, n)) = parse_id(&item.id) else {
                    tracing::warn!("redis: skipping entry {} of shard {shard}: bad id", item.id);
                    continue;
                };
                let place = Place { ms, shard, n };
                let fields = item.map.iter().filter_map(|(field, value)| match value {
                    redis::Value::BulkString(bytes) => Some((field.as_str(), bytes.as_slice())),
                    _ => None,
                });
                match entry::event(fields, place, epoch) {
                    Ok(event) => self.merge.read(shard, ms, n, event),
                    Err(why) => {
                        tracing::warn!("redis: skipping entry {} of shard {shard}: {why}", item.id)
                    }
                }
            }
        }
        self.merge.complete_below(0, horizon);
        let released = self.merge.release().into_iter().map(|(_, e)| e).collect();
        Ok(Round {
            read,
            truncated,
            released,
        })
    }

    /// Waits (up to [`BLOCK`]) until some shard has an entry past where the reader stands.
    async fn wait(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.keys)
            .arg(&self.positions)
            .query_async::<redis::Value>(conn)
            .await
            // What it read is read again by the next round, after its `TIME`.
            .map(drop)
    }
}

/// How a reader's connection is made: answers may take a whole `XREAD BLOCK`.
fn config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(2)))
}

/// Reads the cluster into `hub`'s log until the hub is dropped.
pub(crate) async fn run(link: Arc<Link>, hub: Weak<Inner>) {
    let mut state = State::new(link.shards);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut checked: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    let mut down = false;
    while hub.strong_count() > 0 {
        match step(&link, &mut conn, &mut state, &mut checked, &hub).await {
            Ok(()) => {
                link.reader_up.store(true, Ordering::Relaxed);
                if down {
                    tracing::info!("redis: reachable again; caught up from where this hub was");
                    down = false;
                }
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                link.reader_up.store(false, Ordering::Relaxed);
                if !down {
                    tracing::warn!("{e}; retrying (streams stay open, publishes get 503)");
                    down = true;
                }
                conn = None;
                checked = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn failed(e: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

/// Checks that Redis holds this hub's history. One that lost it (restarted without its data)
/// holds none, or the new one another hub made: the hub takes up that one (`SET NX` then read,
/// so every hub takes the same), reads it from its start, and ends its streams, whose clients
/// come back with ids of the lost history and get a `gap`.
async fn check_history(
    link: &Link,
    conn: &mut MultiplexedConnection,
    state: &mut State,
    hub: &Weak<Inner>,
) -> Result<(), StoreError> {
    let held = meta::agree(conn, link.shards).await?;
    let ours = link.epoch();
    if held == ours {
        return Ok(());
    }
    tracing::warn!(
        "redis: the cluster's history {} is gone (Redis lost its data?); taking up {}, ending every stream (clients resume with a gap)",
        ours.as_str(),
        held.as_str()
    );
    *state = State::new(link.shards);
    match hub.upgrade() {
        Some(hub) => crate::hub::history_lost(&hub, |start| link.adopt(held, start)),
        None => link.adopt(held, 0),
    }
    Ok(())
}

/// One round, its delivery, and a wait if there was nothing to do.
async fn step(
    link: &Link,
    conn: &mut Option<MultiplexedConnection>,
    state: &mut State,
    checked: &mut Option<Instant>,
    hub: &Weak<Inner>,
) -> Result<(), StoreError> {
    let conn = match conn.take() {
        Some(open) => conn.insert(open),
        None => conn.insert(
            link.client
                .get_multiplexed_async_connection_with_config(&config())
                .await
                .map_err(failed)?,
        ),
    };
    if checked.is_none_or(|at| at.elapsed() >= META_EVERY) {
        check_history(link, conn, state, hub).await?;
        *checked = Some(Instant::now());
    }
    let epoch = link.epoch();
    let round = state.round(conn, epoch.as_str()).await.map_err(failed)?;
    link.late.store(state.merge.late(), Ordering::Relaxed);
    if !round.released.is_empty() {
        let Some(hub) = hub.upgrade() else {
            return Ok(());
        };
        crate::hub::relay(&hub, round.released);
    }
    if let Some(horizon) = state.merge.horizon() {
        // Only now that the log holds what lies below it.
        link.delivered_below.fetch_max(horizon, Ordering::AcqRel);
    }
    if !round.truncated {
        // Everything Redis held when this round began is read (and released but for the
        // last millisecond's, which goes next round).
        link.caught_up.send_replace(true);
    }
    if round.read == 0 {
        if state.merge.waiting() == 0 {
            state.wait(conn).await.map_err(failed)?;
        } else {
            // Entries wait for the clock to pass their millisecond.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}
