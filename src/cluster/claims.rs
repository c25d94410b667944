//! Publisher-id claims: one key per id (`ssehub:id:{<id>}`, its own slot on a Redis Cluster), so
//! an id is taken once across every hub and shard, and what a fault between claim and
//! transaction left behind is told apart on a retry.
//!
//! A claim holds `pending <claim-for ms> <done key>` until its publish is answered, then the
//! event's place (its cluster id). The publish's transaction writes the done key (in the shard's
//! slot, so it shares the `MULTI` on a Redis Cluster too) with the event. A publish that finds
//! its id claimed looks at the claim:
//! - a place (or anything but `pending`): the id is taken (`409`);
//! - pending for less than [`SETTLING`]: a publish of it may still be running (`503`, again);
//! - pending for longer, its done key there: the transaction ran, its answer was lost (`409`);
//! - pending for longer, no done key: the transaction never ran (the hub died, or gave up
//!   before it), so the claim is taken over (compare-and-set) and this publish goes on.

use std::time::Duration;

use redis::Value;

use super::conn::Conn;
use super::keys::id_key;
use super::{AppendError, Place};
use crate::event::Event;
use crate::id::Epoch;
use crate::store::StoreError;

/// How long a pending claim may belong to a publish still running: a publish gives up after
/// [`ANSWER_WITHIN`](super::writer::ANSWER_WITHIN) and drops its connection; this leaves its
/// last commands ample time to have run or never to.
pub(crate) const SETTLING: Duration = Duration::from_secs(5);

/// The key a transaction writes for publisher id `id` in the shard whose stream is `stream`.
pub(crate) fn done_key(stream: &str, id: &str) -> String {
    let shard = stream.strip_suffix(":log").unwrap_or(stream);
    format!("{shard}:done:{id}")
}

/// Claims the batch's publisher ids for `claim_for` (`SET NX EX`, one command per id: each id
/// key is in its own slot on a Redis Cluster, so they cannot share a pipeline; they go out
/// together), each pointing at its done key in `stream`. Returns the claim keys held, or why
/// not (the others made are deleted).
pub(crate) async fn claim(
    conn: &Conn,
    events: &[Event],
    claim_for: Duration,
    stream: &str,
) -> Result<Vec<String>, AppendError> {
    let ids: Vec<&str> = events.iter().filter_map(Event::id).collect();
    let pending = |id: &str| format!("pending {} {}", claim_for.as_millis(), done_key(stream, id));
    let claims = ids.iter().map(|id| {
        let mut conn = conn.clone();
        let (key, value) = (id_key(id), pending(id));
        let secs = claim_for.as_secs().max(1);
        async move {
            let made: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("EX")
                .arg(secs)
                .query_async(&mut conn)
                .await?;
            match made {
                Some(_) => Ok(Held::Made),
                None => settle(&mut conn, &key, &value, secs).await,
            }
        }
    });
    let answers = futures_util::future::join_all(claims).await;
    let made: Vec<String> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| matches!(answer, Ok(Held::Made)))
        .map(|(id, _)| id_key(id))
        .collect();
    if made.len() == ids.len() {
        return Ok(made);
    }
    unclaim(conn, &made).await.map_err(redis_failed)?;
    let mut unsettled = None;
    for (id, answer) in ids.iter().zip(answers) {
        match answer {
            Ok(Held::Made) => {}
            Err(e) => return Err(redis_failed(e)),
            Ok(Held::Taken) => return Err(AppendError::DuplicateId((*id).to_string())),
            Ok(Held::Unsettled) => unsettled = unsettled.or(Some(*id)),
        }
    }
    Err(AppendError::Redis(StoreError(format!(
        "the id {:?} is being published by another request; try again in a few seconds",
        unsettled.unwrap_or_default()
    ))))
}

/// What a claim attempt came to.
enum Held {
    /// This publish holds the claim.
    Made,
    /// The id is another event's.
    Taken,
    /// Another publish of it may still be running.
    Unsettled,
}

/// Looks at a claim this publish did not make (see the module's documentation); takes it over
/// when its transaction surely never ran.
async fn settle(conn: &mut Conn, key: &str, ours: &str, secs: u64) -> redis::RedisResult<Held> {
    let held: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
    let Some(held) = held else {
        // Expired or deleted in between: the next try makes it.
        return Ok(Held::Unsettled);
    };
    let Some((claim_for_ms, done)) = parse_pending(&held) else {
        return Ok(Held::Taken);
    };
    // Its age by Redis' clock: what the claim was made for, less what it has left.
    let left_ms: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
    let age = Duration::from_millis(claim_for_ms.saturating_sub(left_ms.max(0) as u64));
    if age < SETTLING {
        return Ok(Held::Unsettled);
    }
    let ran: bool = redis::cmd("EXISTS").arg(done).query_async(conn).await?;
    if ran {
        return Ok(Held::Taken);
    }
    // Only if it still holds what was read: two retries cannot both take it over.
    let took: i64 = redis::cmd("EVAL")
        .arg(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then \
               redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0",
        )
        .arg(1)
        .arg(key)
        .arg(&held)
        .arg(ours)
        .arg(secs)
        .query_async(conn)
        .await?;
    Ok(if took == 1 {
        Held::Made
    } else {
        Held::Unsettled
    })
}

/// `pending <ms> <done key>`: the claim's duration and its done key.
fn parse_pending(held: &str) -> Option<(u64, &str)> {
    let rest = held.strip_prefix("pending ")?;
    let (ms, done) = rest.split_once(' ')?;
    Some((ms.parse().ok()?, done))
}

/// Writes each publisher id's place (the cluster id of its event) into its claim, so that any
/// hub can resume from it once it left memory, then drops the done keys those claims no longer
/// need. Before the publish is answered; a failure only leaves the claim pending (a retry then
/// settles it by the done key, and a resume from that id gets an `unknown-id` gap).
pub(crate) async fn place_claims(
    conn: &Conn,
    events: &[Event],
    places: &[Place],
    epoch: &Epoch,
    stream: &str,
) {
    let sets = events.iter().zip(places).filter_map(|(event, place)| {
        let mut conn = conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(id_key(event.id()?))
            .arg(place.id(epoch.as_str()))
            .arg("XX")
            .arg("KEEPTTL");
        Some(async move { set.query_async::<Value>(&mut conn).await })
    });
    let mut all_placed = true;
    for failed in futures_util::future::join_all(sets)
        .await
        .into_iter()
        .filter_map(Result::err)
    {
        all_placed = false;
        tracing::warn!("redis: recording a publisher id's place: {failed}");
    }
    let done: Vec<String> = events
        .iter()
        .filter_map(|e| Some(done_key(stream, e.id()?)))
        .collect();
    if all_placed && !done.is_empty() {
        // All in the shard's slot: one command, off the publish's path.
        let mut conn = conn.clone();
        tokio::spawn(async move {
            let _ = redis::cmd("DEL")
                .arg(&done)
                .query_async::<Value>(&mut conn)
                .await;
        });
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
pub(crate) async fn unclaim(conn: &Conn, keys: &[String]) -> redis::RedisResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_key_shares_its_shards_slot() {
        let done = done_key("ssehub:{a1}:log", "order-42");
        assert_eq!(done, "ssehub:{a1}:done:order-42");
        assert_eq!(
            parse_pending(&format!("pending 86400000 {done}")),
            Some((86_400_000, done.as_str()))
        );
        assert_eq!(parse_pending("1700000000000-0-3"), None);
        assert_eq!(parse_pending("claimed"), None);
    }
}
