//! Replays from the file: each topic's share of a range, merged by sequence number, within
//! the reader's limits.

use bytes::Bytes;
use redb::{Database, ReadableDatabase};

use super::format::{BY_TOPIC, META, PRUNED};
use crate::event::Topic;
use crate::store::{ReadLimit, Replay, StoredEvent};

pub(super) fn read_range(
    db: &Database,
    topics: &[Topic],
    after: u64,
    upto: u64,
    limit: ReadLimit,
) -> Result<Replay, redb::Error> {
    let max_events = limit.events.max(1);
    let mut replay = Replay {
        events: Vec::new(),
        cursor: upto.max(after),
        lost: false,
    };
    if upto <= after {
        return Ok(replay);
    }
    let txn = db.begin_read()?;
    let by_topic = txn.open_table(BY_TOPIC)?;
    let pruned_at = txn.open_table(PRUNED)?;
    let meta = txn.open_table(META)?;
    let dropped_up_to: u64 = meta
        .get("dropped_up_to")?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or_default();
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
    replay.events = merged
        .into_iter()
        .map(|(seq, bytes)| StoredEvent {
            seq,
            bytes,
            topics: Vec::new(),
            private: false,
        })
        .collect();
    Ok(replay)
}
