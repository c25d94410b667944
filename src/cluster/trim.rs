//! Trimming: the shards' streams trimmed by age on a timer, and how a hub sees that trimming
//! deleted entries it owed someone (its reader fell behind, or a resume from Redis).

use std::collections::HashMap;
use std::time::Duration;

use redis::{RedisResult, Value};

use super::conn::Conn;
use super::writer::parse_id;

/// Whether Redis deleted (trimmed) entries of `key` after `from`, the last id this hub read
/// there: asked after the read, when trimming may have passed the reader (see [`trimmed_past`]).
pub(crate) async fn trimmed_after(conn: &mut Conn, key: &str, from: &str) -> RedisResult<bool> {
    let info: HashMap<String, Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await?;
    Ok(parse_id(from).is_some_and(|from| trimmed_past(&info, |id| id > from)))
}

/// Whether a stream (its `XINFO STREAM`) lost entries at ids that `after` accepts. Trimming
/// deletes from the head, so the deleted entries are those below the first one left (or, in an
/// emptied stream, up to the last id made); Redis does not say which ids they had, so any
/// such id past the point counts as lost. That can report a loss at the very edge (trimming
/// stopped right after the point) where none was; never the other way round. A stream that
/// lost nothing (`entries-added` = `length`, Redis 7) reports none.
pub(crate) fn trimmed_past(
    info: &HashMap<String, Value>,
    after: impl Fn((u64, u64)) -> bool,
) -> bool {
    let int = |field: &str| match info.get(field) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let id = |value: &Value| match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(parse_id),
        Value::SimpleString(s) => parse_id(s),
        _ => None,
    };
    if let (Some(added), Some(length)) = (int("entries-added"), int("length")) {
        if added == length {
            return false;
        }
    }
    let first = match info.get("first-entry") {
        Some(Value::Array(entry)) => entry.first().and_then(id),
        _ => None,
    };
    // Deleted ids lie below the first entry left; in an emptied stream, up to the last made.
    match first {
        Some((ms, n)) => (ms, n) > (0, 1) && after(predecessor((ms, n))),
        None => info
            .get("last-generated-id")
            .and_then(id)
            .is_some_and(&after),
    }
}

/// The greatest stream id below `id` (which is above `0-1`, the smallest id Redis gives).
fn predecessor((ms, n): (u64, u64)) -> (u64, u64) {
    match n {
        0 => (ms - 1, u64::MAX),
        n => (ms, n - 1),
    }
}

/// How often a reader trims every shard by age (`--history-age`): publishes trim their own
/// shard, this trims the quiet ones.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// `XTRIM MINID ~` on every shard (each hub does it; once is enough, more is harmless).
pub(crate) async fn trim_by_age(conn: &Conn, keys: &[String], bounds: super::Bounds) {
    let Some(min_id) = bounds.min_id() else {
        return;
    };
    let trims = keys.iter().map(|key| {
        let mut conn = conn.clone();
        let mut xtrim = redis::cmd("XTRIM");
        xtrim.arg(key).arg("MINID").arg("~").arg(&min_id);
        async move { xtrim.query_async::<Value>(&mut conn).await }
    });
    for failed in futures_util::future::join_all(trims)
        .await
        .into_iter()
        .filter_map(Result::err)
    {
        tracing::debug!("redis: trimming by age: {failed}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(added: i64, length: i64, first: Option<&str>, last: &str) -> HashMap<String, Value> {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let first = first.map_or(Value::Nil, |id| {
            Value::Array(vec![bulk(id), Value::Array(vec![])])
        });
        HashMap::from([
            ("entries-added".to_string(), Value::Int(added)),
            ("length".to_string(), Value::Int(length)),
            ("first-entry".to_string(), first),
            ("last-generated-id".to_string(), bulk(last)),
        ])
    }

    #[test]
    fn trimming_past_a_point_is_seen() {
        let past = |point: (u64, u64)| move |id: (u64, u64)| id > point;
        // Nothing ever deleted: no loss, wherever the point.
        assert!(!trimmed_past(
            &info(5, 5, Some("10-0"), "14-0"),
            past((1, 0))
        ));
        // Trimmed below 10-0: a point at 12-0 lost nothing, one at 5-0 did.
        let trimmed = info(9, 5, Some("10-0"), "14-0");
        assert!(!trimmed_past(&trimmed, past((12, 0))));
        assert!(trimmed_past(&trimmed, past((5, 0))));
        // Emptied (MINID): everything up to the last id made is gone.
        let emptied = info(9, 0, None, "14-0");
        assert!(trimmed_past(&emptied, past((12, 0))));
        assert!(!trimmed_past(&emptied, past((14, 0))));
    }
}
