//! Reading the log: each ring's share after a cursor, merged by sequence number, within a
//! read's limits; and how far behind a subscriber is.

use std::sync::Arc;

use bytes::Bytes;

use super::{Log, TopicLog};
use crate::hub::access::Access;
use crate::hub::locks::read;
use crate::hub::ring::{Ring, EVICTED_TAIL};

/// What a read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// The new cursor: every event on the topics up to here was handed out.
    pub(crate) cursor: u64,
    /// The first sequence number handed out, if any.
    pub(crate) first: Option<u64>,
    /// Some event on these topics after the old cursor had already left the history.
    pub(crate) evicted: bool,
    /// The newest sequence number that left any of these topics (meaningful when `evicted`).
    pub(crate) evicted_up_to: u64,
    /// The read stopped at its limits: more is ready after `cursor`.
    pub(crate) more: bool,
}

/// How much a subscriber has not been sent yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backlog {
    pub(crate) events: usize,
    pub(crate) bytes: u64,
    /// Events it was owed already left the history.
    pub(crate) evicted: bool,
}

impl Log {
    /// Hands out the events after `after` on `topics` that `access` admits, in sequence order,
    /// each once, up to about `max_bytes` or `max_events`, appending their bytes to `out`.
    /// Events it does not admit are passed over (the cursor moves past them).
    pub(crate) fn read(
        &self,
        topics: &[Arc<TopicLog>],
        access: &Access,
        after: u64,
        max_bytes: usize,
        max_events: usize,
        out: &mut Vec<Bytes>,
    ) -> Read {
        let upto = self.committed();
        let mut read = Read {
            cursor: after,
            first: None,
            evicted: false,
            evicted_up_to: 0,
            more: false,
        };
        if upto <= after {
            return read;
        }
        let limits = Limits {
            max_bytes,
            max_events,
            max_scan: max_events.saturating_mul(SCAN_PER_EVENT),
        };
        if let [topic] = topics {
            let ring = read!(topic.ring);
            read.evicted = ring.evicted_up_to > after && lost_for(&ring, after, access);
            read.evicted_up_to = ring.evicted_up_to;
            let entries = ring.entries.range(ring.after(after)..);
            let cut = take_within(
                entries.map(|e| (e.seq, access.admits(0, e).then_some(&e.bytes))),
                after,
                upto,
                limits,
                |seq, b| {
                    read.first.get_or_insert(seq);
                    out.push(b.clone());
                },
            );
            read.cursor = match cut {
                Some(last) => {
                    read.more = true;
                    last
                }
                None => upto,
            };
            return read;
        }
        // Several topics: gather each ring's share, then merge by sequence number. An event on
        // two of them has one sequence number and is sent once.
        let mut merged: Vec<(u64, Bytes)> = Vec::new();
        // A ring whose share was cut short holds back everything past its last gathered event.
        let mut limit = upto;
        for (i, topic) in topics.iter().enumerate() {
            let ring = read!(topic.ring);
            read.evicted |= ring.evicted_up_to > after;
            read.evicted_up_to = read.evicted_up_to.max(ring.evicted_up_to);
            let entries = ring.entries.range(ring.after(after)..);
            let cut = take_within(
                entries.map(|e| (e.seq, access.admits(i, e).then_some(&e.bytes))),
                after,
                upto,
                limits,
                |seq, b| {
                    merged.push((seq, b.clone()));
                },
            );
            if let Some(last) = cut {
                limit = limit.min(last);
                read.more = true;
            }
        }
        merged.sort_unstable_by_key(|(seq, _)| *seq);
        merged.dedup_by_key(|(seq, _)| *seq);
        let merged = merged.iter().map(|(seq, b)| (*seq, Some(b)));
        let cut = take_within(merged, after, limit, limits, |seq, b| {
            read.first.get_or_insert(seq);
            out.push(b.clone());
        });
        read.cursor = cut.unwrap_or(limit);
        read
    }

    /// Where a reader of `topics` starts to be handed the newest `n` events in memory it may be
    /// sent among those up to `upto` (all of them, if there are fewer). Looks at most at
    /// [`EVICTED_TAIL`] entries per ring.
    pub(crate) fn tail_start(
        &self,
        topics: &[Arc<TopicLog>],
        access: &Access,
        n: usize,
        upto: u64,
    ) -> u64 {
        if n == 0 {
            return upto;
        }
        let mut newest: Vec<u64> = Vec::new();
        for (i, topic) in topics.iter().enumerate() {
            let ring = read!(topic.ring);
            let end = ring.after(upto);
            newest.extend(
                ring.entries
                    .range(..end)
                    .rev()
                    .take(EVICTED_TAIL)
                    .filter(|e| access.admits(i, e))
                    .take(n)
                    .map(|e| e.seq),
            );
        }
        // An event on several of the topics counts once.
        newest.sort_unstable_by(|a, b| b.cmp(a));
        newest.dedup();
        // Fewer than `n`: all of them (from memory; a durable store's older events are not
        // read for a tail).
        match newest.get(n - 1).or(newest.last()) {
            Some(oldest) => oldest - 1,
            None => upto,
        }
    }

    /// What a subscriber on `topics` that was sent everything up to `after` still has to get.
    /// A `*` or template reader counts only what it would be sent (looking at most at
    /// [`EVICTED_TAIL`] events: past that, it is behind anyway).
    pub(crate) fn backlog(&self, topics: &[Arc<TopicLog>], access: &Access, after: u64) -> Backlog {
        let mut backlog = Backlog::default();
        if access.reads_all() {
            if let [all] = topics {
                let ring = read!(all.ring);
                backlog.evicted = ring.evicted_up_to > after && lost_for(&ring, after, access);
                for e in ring.entries.range(ring.after(after)..).take(EVICTED_TAIL) {
                    if access.admits(0, e) {
                        backlog.events += 1;
                        backlog.bytes += e.bytes.len() as u64;
                    }
                }
                return backlog;
            }
        }
        for topic in topics {
            let ring = read!(topic.ring);
            backlog.evicted |= ring.evicted_up_to > after;
            let index = ring.after(after);
            backlog.events += ring.entries.len() - index;
            backlog.bytes += ring.appended() - ring.offset_at(index);
        }
        backlog
    }
}

/// What one read may hand out: at most `max_events` events, and about `max_bytes` (the first
/// event is taken however large it is); and how many it may look at, passed over or not, so
/// that a reader that is sent little of what it walks (a template matching rarely, a topic of
/// private events) holds the ring's lock for a bounded time.
#[derive(Clone, Copy)]
struct Limits {
    max_bytes: usize,
    max_events: usize,
    max_scan: usize,
}

/// A read looks at most at this many entries per event it may hand out.
const SCAN_PER_EVENT: usize = 8;

/// Whether events after `after` that left `ring` were owed to this reader. Exact topics: any
/// was. A `*` or template reader: only if one of them would have been sent, as far as the
/// ring's tail of evicted events reaches back (beyond it, assume one was).
fn lost_for(ring: &Ring, after: u64, access: &Access) -> bool {
    if !access.reads_all() {
        return true;
    }
    let tail = &ring.evicted_tail;
    if tail.front().is_none_or(|(seq, _)| *seq > after + 1) {
        return true;
    }
    tail.iter()
        .rev()
        .take_while(|(seq, _)| *seq > after)
        .any(|(_, meta)| access.admits_meta(0, meta))
}

/// Walks `entries` (in sequence order, all after `after`; `None` bytes for one the reader is
/// not sent, which it passes over) up to `upto`, handing each to `take` until `limits` stop it:
/// the one loop behind each of [`Log::read`]'s walks. Returns the last sequence number taken or
/// passed over (`after` if none) when a limit stopped it, `None` if it went up to `upto`.
fn take_within<'a>(
    entries: impl Iterator<Item = (u64, Option<&'a Bytes>)>,
    after: u64,
    upto: u64,
    limits: Limits,
    mut take: impl FnMut(u64, &'a Bytes),
) -> Option<u64> {
    let (mut bytes, mut taken, mut scanned, mut last) = (0, 0, 0, after);
    for (seq, b) in entries {
        if seq > upto {
            break;
        }
        if scanned == limits.max_scan {
            return Some(last);
        }
        scanned += 1;
        let Some(b) = b else {
            last = seq;
            continue;
        };
        if taken == limits.max_events || (taken > 0 && bytes + b.len() > limits.max_bytes) {
            return Some(last);
        }
        bytes += b.len();
        taken += 1;
        last = seq;
        take(seq, b);
    }
    None
}
