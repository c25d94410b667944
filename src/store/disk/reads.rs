//! Replays from the file: each topic's share of a range, merged by sequence number, or every
//! event in it, within the reader's limits; and the publisher-id lookup.

use bytes::Bytes;
use redb::{Database, ReadOnlyTable, ReadableDatabase};

use super::format::{decode_entry, BY_TOPIC, EVENTS, IDS, META, PRUNED};
use crate::event::Topic;
use crate::store::{ReadLimit, Replay, StoredEvent};

/// A replay of nothing, its cursor at `upto` (or `after`, for an empty range).
fn nothing_yet(after: u64, upto: u64) -> Replay {
    Replay {
        events: Vec::new(),
        cursor: upto.max(after),
        lost: false,
    }
}

/// The events on `topics` in `after+1 ..= upto`, oldest first, within `limit`.
pub(super) fn read_range(
    db: &Database,
    topics: &[Topic],
    after: u64,
    upto: u64,
    limit: ReadLimit,
) -> Result<Replay, redb::Error> {
    let max_events = limit.events.max(1);
    let mut replay = nothing_yet(after, upto);
    if upto <= after {
        return Ok(replay);
    }
    let txn = db.begin_read()?;
    let by_topic = txn.open_table(BY_TOPIC)?;
    let pruned_at = txn.open_table(PRUNED)?;
    let dropped_up_to = meta_number(&txn.open_table(META)?, "dropped_up_to")?;
    // Like the memory log's merge: each topic's share, merged by sequence number; a topic whose
    // share was cut by the limit holds back everything past its last event.
    let mut merged: Vec<(u64, Bytes)> = Vec::new();
    let mut cut = upto;
    for t in topics {
        let mark = pruned_at
            .get(t.as_str())?
            .map_or(dropped_up_to, |v| v.value());
        replay.lost |= mark > after;
        let (mut taken, mut bytes) = (0, 0);
        for item in by_topic.range((t.as_str(), after + 1)..=(t.as_str(), upto))? {
            let (k, v) = item?;
            let seq = k.value().1;
            let len = v.value().len();
            if taken == max_events || (taken > 0 && bytes + len > limit.bytes) {
                cut = cut.min(seq - 1);
                break;
            }
            merged.push((seq, Bytes::copy_from_slice(v.value())));
            taken += 1;
            bytes += len;
        }
    }
    merged.sort_unstable_by_key(|(seq, _)| *seq);
    merged.dedup_by_key(|(seq, _)| *seq);
    merged.retain(|(seq, _)| *seq <= cut);
    let (mut keep, mut bytes) = (0, 0);
    for (_, b) in &merged {
        if keep == max_events || (keep > 0 && bytes + b.len() > limit.bytes) {
            break;
        }
        keep += 1;
        bytes += b.len();
    }
    if keep < merged.len() {
        merged.truncate(keep);
        cut = merged.last().map_or(cut, |(seq, _)| *seq);
    }
    replay.cursor = cut;
    // The topics and privacy the hub filters by live in the event's entry, not its wire bytes.
    let events = txn.open_table(EVENTS)?;
    for (seq, bytes) in merged {
        // An entry that cannot be read says nothing of who may see the event: leave it out
        // (fail closed), as `read_all` does.
        let Some(entry) = events.get(seq)?.and_then(|v| decode_entry(v.value())) else {
            continue;
        };
        replay.events.push(StoredEvent {
            seq,
            bytes,
            topics: entry.checked_topics(),
            private: entry.private,
        });
    }
    Ok(replay)
}

/// Every event in `after+1 ..= upto`, oldest first, within `limit`; `lost` if any event after
/// `after` was pruned, on any topic.
pub(super) fn read_all(
    db: &Database,
    after: u64,
    upto: u64,
    limit: ReadLimit,
) -> Result<Replay, redb::Error> {
    let max_events = limit.events.max(1);
    let mut replay = nothing_yet(after, upto);
    if upto <= after {
        return Ok(replay);
    }
    let txn = db.begin_read()?;
    replay.lost = meta_number(&txn.open_table(META)?, "pruned_up_to")? > after;
    let events = txn.open_table(EVENTS)?;
    let by_topic = txn.open_table(BY_TOPIC)?;
    let mut bytes = 0;
    for item in events.range(after + 1..=upto)? {
        let (k, v) = item?;
        let seq = k.value();
        // An entry that cannot be read, or an event without its bytes, cannot be replayed.
        let Some(entry) = decode_entry(v.value()) else {
            continue;
        };
        let Some(first) = entry.topics.first() else {
            continue;
        };
        let Some(wire) = by_topic.get((first.as_str(), seq))? else {
            continue;
        };
        let len = wire.value().len();
        if replay.events.len() == max_events
            || (!replay.events.is_empty() && bytes + len > limit.bytes)
        {
            replay.cursor = seq - 1;
            break;
        }
        bytes += len;
        replay.events.push(StoredEvent {
            seq,
            bytes: Bytes::copy_from_slice(wire.value()),
            topics: entry.checked_topics(),
            private: entry.private,
        });
    }
    Ok(replay)
}

/// The sequence number of the retained event whose publisher chose `id`.
pub(super) fn find_id(db: &Database, id: &str) -> Result<Option<u64>, redb::Error> {
    let txn = db.begin_read()?;
    let ids = txn.open_table(IDS)?;
    Ok(ids.get(id)?.map(|v| v.value()))
}

/// A number in `ssehub_meta` (0 if missing or damaged, though the open writes every key).
fn meta_number(meta: &ReadOnlyTable<&str, &str>, key: &str) -> Result<u64, redb::Error> {
    Ok(meta
        .get(key)?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or_default())
}
