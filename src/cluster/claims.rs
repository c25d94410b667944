//! Publisher-id claims: one key per id (`ssehub:id:{<id>}`, its own slot on a Redis Cluster), so
//! an id is taken once across every hub and shard, and what a fault between claim and
//! transaction left behind is settled by a retry with no loss and no duplicate.
//!
//! A claim holds `pending <claim-for ms> <done key>` until its publish is answered, then the
//! event's place (its cluster id). The done key, `ssehub:{<shard tag>}:done:<token>` with a token
//! of this attempt's own (one for the batch), is in the shard's slot, so the publish's script
//! ([`fenced_append`])
//! can look at it and write it atomically with the events: it refuses to run if the key exists,
//! and writes it (`ran`) with them. A publish that finds its id claimed looks at the claim:
//! - a place (or anything but `pending`): the id is taken (`409`);
//! - pending for less than [`SETTLING`]: a publish of it may still be running (`503`, again);
//! - pending for longer: it fences the done key (`SET ... fenced NX`). If that succeeds, the
//!   claimed attempt's script can never run now, so the claim is taken over (compare-and-set:
//!   two retries cannot both have it) and this publish goes on. If the key says `ran`, the
//!   script ran and only its answer was lost (`409`); if it says `fenced`, another retry is
//!   taking over (`503`).
//!
//! So correctness does not rest on timing: a script that arrives late, or twice (a client
//! library resending after a dropped connection), finds its done key and does nothing.
//! [`SETTLING`] only keeps a retry from fencing a publish that is still running.

use std::time::Duration;

use redis::Value;

use super::conn::Conn;
use super::keys::id_key;
use super::{entry, AppendError, Bounds, Place};
use crate::event::Event;
use crate::id::Epoch;
use crate::store::StoreError;

/// How long a pending claim may belong to a publish still running: a publish gives up after
/// [`ANSWER_WITHIN`](super::writer::ANSWER_WITHIN) and drops its connection.
pub(crate) const SETTLING: Duration = Duration::from_secs(5);

/// The done key of attempt `token`, in the shard whose stream is `stream`: one for the whole
/// batch, which its script appends all or nothing.
fn done_key(stream: &str, token: &str) -> String {
    let shard = stream.strip_suffix(":log").unwrap_or(stream);
    format!("{shard}:done:{token}")
}

/// 16 random hex digits: one publish attempt's own.
fn token() -> String {
    let mut raw = [0u8; 8];
    if getrandom::fill(&mut raw).is_err() {
        // A clock in nanoseconds is unique enough among one hub's attempts.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw.copy_from_slice(&nanos.to_le_bytes()[..8]);
    }
    format!("{:016x}", u64::from_le_bytes(raw))
}

/// Claims the batch's publisher ids for `claim_for` (`SET NX EX`, one command per id: each id
/// key is in its own slot on a Redis Cluster, so they cannot share a pipeline; they go out
/// together), each naming this attempt's done key: that key, or why not (the others made are
/// deleted). `replicas`: a `409` for an id whose answer was lost waits until that many
/// replicas hold its event.
pub(crate) async fn claim(
    conn: &Conn,
    events: &[Event],
    claim_for: Duration,
    stream: &str,
    replicas: u16,
) -> Result<String, AppendError> {
    let ids: Vec<&str> = events.iter().filter_map(Event::id).collect();
    let done = done_key(stream, &token());
    let secs = claim_for.as_secs().max(1);
    let claims = ids.iter().map(|id| {
        let mut conn = conn.clone();
        let key = id_key(id);
        let value = pending(secs, &done);
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
                None => settle(&mut conn, &key, &value, secs, replicas).await,
            }
        }
    });
    let answers = futures_util::future::join_all(claims).await;
    let made: Vec<(String, String)> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| matches!(answer, Ok(Held::Made)))
        .map(|(id, _)| (id_key(id), pending(secs, &done)))
        .collect();
    if made.len() == ids.len() {
        return Ok(done);
    }
    // None of these has a script sent: deleting them frees the ids.
    unclaim(conn, &made).await.map_err(redis_failed)?;
    let mut again = None;
    for (id, answer) in ids.iter().zip(answers) {
        match answer {
            Ok(Held::Made) => {}
            Err(e) => return Err(redis_failed(e)),
            Ok(Held::Taken) => return Err(AppendError::DuplicateId((*id).to_string())),
            Ok(Held::Unsettled) => again = again.or(Some(format!(
                "the id {id:?} is being published by another request; try again in a few seconds"
            ))),
            Ok(Held::Unreplicated) => again = again.or(Some(format!(
                "the id {id:?} is published but not yet on the replicas asked for (--redis-wait-replicas); try again"
            ))),
        }
    }
    Err(AppendError::NotYet(StoreError(again.unwrap_or_default())))
}

/// What a claim attempt came to.
enum Held {
    /// This publish holds the claim.
    Made,
    /// The id is another event's.
    Taken,
    /// Another publish of it may still be running, or is taking it over.
    Unsettled,
    /// The id is its event's, which (or whose claim) is not yet on the replicas asked for.
    Unreplicated,
}

/// Looks at a claim this publish did not make (see the module's documentation); takes it over
/// when its script can no longer run.
async fn settle(
    conn: &mut Conn,
    key: &str,
    ours: &str,
    secs: u64,
    replicas: u16,
) -> redis::RedisResult<Held> {
    let held: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
    let Some(held) = held else {
        // Expired or deleted in between: the next try makes it.
        return Ok(Held::Unsettled);
    };
    let Some((claim_for_ms, done)) = parse_pending(&held) else {
        // A place is written only once the replicas asked for hold the event, but the claim
        // itself may not be on them yet (the publish that placed it was then answered 503):
        // the id is taken once they hold it, by a write of the same value and a `WAIT`.
        if replicas == 0 {
            return Ok(Held::Taken);
        }
        return claim_replicated(conn, key, &held, replicas).await;
    };
    // Its age by Redis' clock: what the claim was made for, less what it has left.
    let left_ms: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
    let age = Duration::from_millis(claim_for_ms.saturating_sub(left_ms.max(0) as u64));
    if age < SETTLING {
        return Ok(Held::Unsettled);
    }
    let fenced: Option<String> = redis::cmd("SET")
        .arg(done)
        .arg("fenced")
        .arg("NX")
        .arg("EX")
        .arg(secs)
        .query_async(conn)
        .await?;
    let state: Option<String> = match fenced {
        Some(_) => None,
        None => redis::cmd("GET").arg(done).query_async(conn).await?,
    };
    if state.as_deref() != Some("ran") {
        // Fenced, by us now or by a retry before (which may have died before taking the claim
        // over): its script can no longer run. Take the claim over if it still holds what was
        // read: of several retries, one does.
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
        return Ok(if took == 1 {
            Held::Made
        } else {
            Held::Unsettled
        });
    }
    if replicas == 0 {
        return Ok(Held::Taken);
    }
    // A write on the event's master through this connection, then `WAIT`: replicas that have
    // it have everything the master wrote before, the event too. Then the same for the claim,
    // whose master (on a Redis Cluster) may be another.
    let _: Value = redis::cmd("SET")
        .arg(done)
        .arg("ran")
        .arg("XX")
        .arg("KEEPTTL")
        .query_async(conn)
        .await?;
    match replicated(conn, done, replicas).await? {
        Held::Taken => claim_replicated(conn, key, &held, replicas).await,
        other => Ok(other),
    }
}

/// `Taken` once `replicas` replicas hold the claim `key` as `held`: it is written again (only
/// if it still holds that: a claim made since, by another publish, is left alone) through this
/// connection, then waited for.
async fn claim_replicated(
    conn: &mut Conn,
    key: &str,
    held: &str,
    replicas: u16,
) -> redis::RedisResult<Held> {
    let rewritten: i64 = redis::cmd("EVAL")
        .arg(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then \
               redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') return 1 end return 0",
        )
        .arg(1)
        .arg(key)
        .arg(held)
        .query_async(conn)
        .await?;
    if rewritten == 0 {
        return Ok(Held::Unsettled);
    }
    replicated(conn, key, replicas).await
}

/// `Taken` once `replicas` replicas hold what this connection wrote to `key`'s master.
async fn replicated(conn: &mut Conn, key: &str, replicas: u16) -> redis::RedisResult<Held> {
    let held = conn
        .wait_replicas(key, replicas, super::writer::REPLICAS_WITHIN)
        .await?;
    Ok(if held >= i64::from(replicas) {
        Held::Taken
    } else {
        Held::Unreplicated
    })
}

/// A pending claim's value, for `secs`.
fn pending(secs: u64, done: &str) -> String {
    format!("pending {} {done}", secs * 1000)
}

/// `pending <ms> <done key>`: the claim's duration and its done key.
fn parse_pending(held: &str) -> Option<(u64, &str)> {
    let rest = held.strip_prefix("pending ")?;
    let (ms, done) = rest.split_once(' ')?;
    Some((ms.parse().ok()?, done))
}

/// Appends `events` to `stream` unless the `done` key exists (it was fenced, or this script ran
/// already), then writes it (`ran`, for `claim_for`), all at once: answers the
/// entries' ids, or the error `FENCED`. Then trims as the plain transaction does (a failed trim
/// changes nothing written). Its first write is its first `XADD`, so a Redis out of memory
/// refuses it before it wrote anything (Redis checks memory at a script's first write).
pub(crate) fn fenced_append(
    stream: &str,
    events: &[Event],
    bounds: Bounds,
    claim_for: Duration,
    done: &str,
) -> redis::Cmd {
    const SCRIPT: &str = "
        if redis.call('EXISTS', KEYS[2]) == 1 then
          return redis.error_reply('FENCED a retry settled this publish')
        end
        local ids, at = {}, 5
        for e = 1, tonumber(ARGV[4]) do
          local n = tonumber(ARGV[at])
          local args = {KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
          for j = 1, n do args[#args + 1] = ARGV[at + j] end
          at = at + n + 1
          ids[e] = redis.call('XADD', unpack(args))
        end
        redis.call('SET', KEYS[2], 'ran', 'EX', ARGV[3])
        if ARGV[2] ~= '' then redis.pcall('XTRIM', KEYS[1], 'MINID', '~', ARGV[2]) end
        return ids";
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SCRIPT).arg(2).arg(stream).arg(done);
    cmd.arg(bounds.maxlen)
        .arg(bounds.min_id().unwrap_or_default())
        .arg(claim_for.as_secs().max(1))
        .arg(events.len());
    for event in events {
        let fields = entry::fields(event);
        cmd.arg(fields.len() * 2);
        for (field, value) in fields {
            cmd.arg(field).arg(value);
        }
    }
    cmd
}

/// Writes each publisher id's place (the cluster id of its event) into its claim, so that any
/// hub can resume from it once it left memory: whether every claim took it. Before the publish
/// is answered; a failure only leaves the claim pending (a retry then settles it by the done
/// key, which must then stay, and a resume from that id gets an `unknown-id` gap).
pub(crate) async fn place_claims(
    conn: &Conn,
    events: &[Event],
    places: &[Place],
    epoch: &Epoch,
) -> bool {
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
    all_placed
}

/// Deletes a done key its claims no longer need (they hold their places), off the publish's
/// path.
pub(crate) fn drop_done(conn: &Conn, done: String) {
    let mut conn = conn.clone();
    tokio::spawn(async move {
        let mut del = redis::cmd("DEL");
        del.arg(&done);
        let _ = tokio::time::timeout(
            super::writer::ANSWER_WITHIN,
            del.query_async::<Value>(&mut conn),
        )
        .await;
    });
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

/// Deletes claims this publish made, each only if it still holds the value this publish wrote:
/// a `DEL` that comes late must not free a claim another publish has taken over since. One
/// script per key, for the same reason as in [`claim`].
async fn unclaim(conn: &Conn, made: &[(String, String)]) -> redis::RedisResult<()> {
    let dels = made.iter().map(|(key, value)| {
        let mut conn = conn.clone();
        let mut del = redis::cmd("EVAL");
        del.arg("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end")
            .arg(1)
            .arg(key)
            .arg(value);
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
    fn a_done_key_is_in_its_shards_slot_and_names_its_attempt() {
        let done = done_key("ssehub:{a1}:log", "00ff");
        assert_eq!(done, "ssehub:{a1}:done:00ff");
        assert_eq!(
            parse_pending(&format!("pending 86400000 {done}")),
            Some((86_400_000, done.as_str()))
        );
        assert_eq!(parse_pending("1700000000000-0-3"), None);
        assert_eq!(parse_pending("claimed"), None);
        assert_ne!(token(), token());
        assert_eq!(token().len(), 16);
    }
}
