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

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::streams::{StreamId, StreamReadReply};
use redis::{RedisResult, Value};

use super::conn::Conn;
use super::writer::parse_id;
use super::{entry, keys, meta, trim, Link, Merge, Place};
use crate::event::Event;
use crate::hub::Inner;
use crate::store::StoreError;

/// Entries read per shard and round, at most.
const COUNT: usize = 1000;
/// How long one `XREAD BLOCK` waits when there is nothing to read.
const BLOCK: Duration = Duration::from_secs(1);
/// On a Redis Cluster, how long a reader with nothing to read waits before its next round: an
/// `XREAD BLOCK` there may name one slot only, so an idle reader polls instead.
const POLL: Duration = Duration::from_millis(10);
/// The wait before the first retry when Redis fails, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the reader checks that Redis still holds this hub's history (`ssehub:meta`), on
/// top of each new connection (a restarted Redis breaks them).
const META_EVERY: Duration = Duration::from_secs(1);
/// A round this long after the last one may find that trimming passed where it stood.
const PAUSE: Duration = Duration::from_millis(100);

/// Where the reader stands: per shard, the last id read, and what waits for its turn.
struct State {
    keys: Vec<String>,
    /// Each shard's Redis Cluster slot.
    slots: Vec<u16>,
    shard_of: HashMap<String, u16>,
    positions: Vec<String>,
    merge: Merge<Event>,
    /// The next round must check every shard for entries trimmed before they were read (a new
    /// connection, or a pause).
    recheck: bool,
    /// When the reader last was ready for a round (after a round, or after its wait): a round
    /// much later means the hub stalled.
    last_round: Option<Instant>,
}

/// One shard's part of a round: its master's `TIME` (ms), then what `XREAD` returned.
struct ShardRead {
    shard: u16,
    time: u64,
    entries: Vec<StreamId>,
}

/// What one round did.
struct Round {
    /// Entries read.
    read: usize,
    /// Some shard had more than one round's worth.
    truncated: bool,
    /// Events that may be delivered now, in place order.
    released: Vec<Event>,
    /// The newest place among them.
    newest: Option<Place>,
    /// Shards in which entries this hub had not read were trimmed.
    trimmed: Vec<u16>,
    /// How far behind Redis' clock (its newest `TIME` this round) the point below which
    /// everything is delivered is, after this round (ms).
    lag: u64,
}

impl State {
    fn new(keys: &[String]) -> State {
        let tags = keys.iter().map(|k| k.split(['{', '}']).nth(1).unwrap_or(k));
        State {
            slots: tags.map(keys::slot).collect(),
            shard_of: keys.iter().cloned().zip(0..).collect(),
            positions: vec!["0-0".to_string(); keys.len()],
            // Each shard complete below its own master's time (shards may move between masters).
            merge: Merge::new((0..keys.len()).collect()),
            keys: keys.to_vec(),
            recheck: false,
            last_round: None,
        }
    }

    /// `TIME`, then `XREAD` on every shard: one round trip on one server; on a Redis Cluster,
    /// one per shard, to its master, all at once.
    async fn read(&self, conn: &mut Conn) -> RedisResult<Vec<ShardRead>> {
        let ms =
            |(secs, micros): (u64, u64)| secs.saturating_mul(1000).saturating_add(micros / 1000);
        match conn {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                pipe.cmd("TIME")
                    .cmd("XREAD")
                    .arg("COUNT")
                    .arg(COUNT)
                    .arg("STREAMS")
                    .arg(&self.keys)
                    .arg(&self.positions);
                let (time, reply): ((u64, u64), Option<StreamReadReply>) =
                    pipe.query_async(c).await?;
                let mut reads: Vec<ShardRead> = (0..self.keys.len() as u16)
                    .map(|shard| ShardRead {
                        shard,
                        time: ms(time),
                        entries: Vec::new(),
                    })
                    .collect();
                for stream in reply.map(|r| r.keys).unwrap_or_default() {
                    if let Some(&shard) = self.shard_of.get(&stream.key) {
                        reads[usize::from(shard)].entries = stream.ids;
                    }
                }
                Ok(reads)
            }
            Conn::Cluster(c) => {
                let shards = (0..self.keys.len()).map(|k| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("TIME")
                        .cmd("XREAD")
                        .arg("COUNT")
                        .arg(COUNT)
                        .arg("STREAMS")
                        .arg(&self.keys[k])
                        .arg(&self.positions[k]);
                    // Both to the shard's master: its `TIME` speaks for its shard.
                    let route = Route::new(self.slots[k], SlotAddr::Master);
                    let mut c = c.clone();
                    async move {
                        let values = c
                            .route_pipeline(pipe, 0, 2, SingleNodeRoutingInfo::SpecificNode(route))
                            .await?;
                        let (time, reply): ((u64, u64), Option<StreamReadReply>) =
                            redis::from_redis_value(Value::Array(values))?;
                        let entries = reply
                            .and_then(|r| r.keys.into_iter().next())
                            .map(|s| s.ids)
                            .unwrap_or_default();
                        RedisResult::Ok(ShardRead {
                            shard: k as u16,
                            time: ms(time),
                            entries,
                        })
                    }
                });
                futures_util::future::try_join_all(shards).await
            }
        }
    }

    /// Reads a round into the merge, and releases what can go.
    async fn round(&mut self, conn: &mut Conn, epoch: &str, trim_len: usize) -> RedisResult<Round> {
        let recheck = std::mem::take(&mut self.recheck)
            || self.last_round.is_some_and(|at| at.elapsed() >= PAUSE);
        self.last_round = Some(Instant::now());
        let reads = self.read(conn).await?;
        let (mut read, mut truncated, mut now) = (0, false, 0);
        let mut check = Vec::new();
        for ShardRead {
            shard,
            time,
            entries,
        } in reads
        {
            // Every entry below `time` was added before `TIME` ran, so `XREAD` got it...
            let mut complete = time;
            if entries.len() >= COUNT {
                // ...unless the shard had more than COUNT: complete only below its last.
                truncated = true;
                let last = entries.last().and_then(|e| parse_id(&e.id));
                complete = complete.min(last.map_or(0, |(ms, _)| ms));
            }
            let from = &self.positions[usize::from(shard)];
            // A reader far enough behind may have been passed by trimming: look (a fresh
            // reader owes nobody what was trimmed before it came).
            // (A truncated read is one far behind, whatever the trim length.)
            let many = entries.len() >= (trim_len / 4).clamp(1, COUNT);
            if from != "0-0" && (recheck || many) {
                check.push((shard, from.clone()));
            }
            now = now.max(time);
            for item in entries {
                read += 1;
                self.positions[usize::from(shard)] = item.id.clone();
                let Some((ms, n)) = parse_id(&item.id) else {
                    tracing::warn!("redis: skipping entry {} of shard {shard}: bad id", item.id);
                    continue;
                };
                let place = Place { ms, shard, n };
                let fields = item.map.iter().filter_map(|(field, value)| match value {
                    Value::BulkString(bytes) => Some((field.as_str(), bytes.as_slice())),
                    _ => None,
                });
                match entry::event(fields, place, epoch) {
                    Ok(event) => self.merge.read(shard, ms, n, event),
                    Err(why) => {
                        tracing::warn!("redis: skipping entry {} of shard {shard}: {why}", item.id)
                    }
                }
            }
            self.merge.complete_below(usize::from(shard), complete);
        }
        let mut trimmed = Vec::new();
        for (shard, from) in check {
            if trim::trimmed_after(conn, &self.keys[usize::from(shard)], &from).await? {
                trimmed.push(shard);
            }
        }
        let released = self.merge.release();
        let newest = released.iter().map(|(place, _)| *place).max();
        Ok(Round {
            read,
            truncated,
            released: released.into_iter().map(|(_, e)| e).collect(),
            newest,
            trimmed,
            lag: self.merge.horizon().map_or(0, |h| now.saturating_sub(h)),
        })
    }

    /// Waits until some shard has an entry past where the reader stands: up to [`BLOCK`] on
    /// one server; on a Redis Cluster, [`POLL`]. A wait that took much longer than it may
    /// (the hub stalled) makes the next round look for trimmed entries.
    async fn wait(&mut self, conn: &mut Conn) -> RedisResult<()> {
        let started = Instant::now();
        let waited = self.block(conn).await;
        let most = match conn {
            Conn::Single(_) => BLOCK,
            Conn::Cluster(_) => POLL,
        };
        self.recheck |= started.elapsed() >= most + PAUSE;
        self.last_round = Some(Instant::now());
        waited
    }

    async fn block(&self, conn: &mut Conn) -> RedisResult<()> {
        let Conn::Single(c) = conn else {
            tokio::time::sleep(POLL).await;
            return Ok(());
        };
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.keys)
            .arg(&self.positions)
            .query_async::<Value>(c)
            .await
            // What it read is read again by the next round, after its `TIME`.
            .map(drop)
    }
}

/// How long a reader's answers may take: a whole `XREAD BLOCK`, and then some.
const RESPONSE: Duration = Duration::from_secs(3);

/// Reads the cluster into `hub`'s log until the hub is dropped.
pub(crate) async fn run(link: Arc<Link>, hub: Weak<Inner>) {
    let mut state = State::new(&link.keys);
    let mut conn: Option<Conn> = None;
    let mut checked: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    let mut down = false;
    // How far each shard is trimmed (see `Hub::publish_clustered`).
    let Some(bounds) = hub.upgrade().map(|hub| crate::hub::bounds(&hub)) else {
        return;
    };
    let mut trimmed_at = Instant::now();
    while hub.strong_count() > 0 {
        if bounds.age.is_some() && trimmed_at.elapsed() >= trim::EVERY {
            if let Some(conn) = &conn {
                trim::trim_by_age(conn, &link.keys, bounds).await;
            }
            trimmed_at = Instant::now();
        }
        match step(
            &link,
            &mut conn,
            &mut state,
            &mut checked,
            &hub,
            bounds.maxlen,
        )
        .await
        {
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
                } else {
                    tracing::debug!("{e}; retrying");
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
    conn: &mut Conn,
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
    *state = State::new(&link.keys);
    match hub.upgrade() {
        Some(hub) => crate::hub::history_lost(&hub, |start| link.adopt(held, start)),
        None => link.adopt(held, 0),
    }
    Ok(())
}

/// One round, its delivery, and a wait if there was nothing to do.
async fn step(
    link: &Link,
    conn: &mut Option<Conn>,
    state: &mut State,
    checked: &mut Option<Instant>,
    hub: &Weak<Inner>,
    trim_len: usize,
) -> Result<(), StoreError> {
    let conn = match conn.take() {
        Some(open) => conn.insert(open),
        None => {
            let open = link.backend.connect(Some(RESPONSE)).await.map_err(failed)?;
            // While it had none, trimming may have passed where it stood.
            state.recheck = true;
            conn.insert(open)
        }
    };
    if checked.is_none_or(|at| at.elapsed() >= META_EVERY) {
        check_history(link, conn, state, hub).await?;
        *checked = Some(Instant::now());
    }
    let epoch = link.epoch();
    let round = state
        .round(conn, epoch.as_str(), trim_len)
        .await
        .map_err(failed)?;
    link.late.store(state.merge.late(), Ordering::Relaxed);
    link.lag_ms.store(round.lag, Ordering::Relaxed);
    let Some(hub) = hub.upgrade() else {
        return Ok(());
    };
    if !round.trimmed.is_empty() {
        tracing::warn!(
            "redis: this hub's reader fell behind trimming in shard(s) {:?}: events it never read are gone; ending every stream (clients resume with a gap)",
            round.trimmed
        );
        link.trims.fetch_add(1, Ordering::Relaxed);
        // Before what comes after the loss is in the log.
        crate::hub::history_trimmed(&hub, |at| link.trimmed(at));
    }
    if !round.released.is_empty() {
        let released = round.released;
        link.relay_noted(round.newest, || crate::hub::relay(&hub, released));
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
            state.last_round = Some(Instant::now());
        }
    }
    Ok(())
}
