//! The ordered log: history and live feed in one.
//!
//! Every published event gets the next sequence number from one counter and its encoded bytes go
//! into the ring of each of its topics. Publishing holds one lock (`order`) while it numbers and
//! inserts a batch, then raises `committed`; readers only look at sequence numbers up to
//! `committed`, so a reader merging several rings never sees a later event before an earlier
//! one, and a cursor (the last sequence number a subscriber was sent) is all a subscriber needs
//! to resume with no gap and no duplicate.
//!
//! The history bound is global: past `history` retained events, or `max_bytes` of them, the
//! oldest event leaves every ring it is in, and each ring remembers the newest sequence number it
//! lost (`evicted_up_to`), so a reader can tell precisely whether events on *its* topics are gone.
//! The bytes counted are each retained event's encoded bytes, once, however many rings share
//! them; the bookkeeping around them (about 100 bytes per event and topic) is bounded by the
//! event count instead.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::id::Epoch;
use crate::event::{encode, encoded_len_worst, Event, Topic};

/// Locks ignore poisoning: every critical section here leaves the data consistent at each step
/// that can panic (none should), and refusing all later publishes would be worse.
macro_rules! lock {
    ($e:expr) => {
        $e.lock().unwrap_or_else(PoisonError::into_inner)
    };
}
macro_rules! read {
    ($e:expr) => {
        $e.read().unwrap_or_else(PoisonError::into_inner)
    };
}
macro_rules! write {
    ($e:expr) => {
        $e.write().unwrap_or_else(PoisonError::into_inner)
    };
}

pub(crate) struct Log {
    order: Mutex<Order>,
    /// Every event with a sequence number up to this one is in its rings.
    committed: AtomicU64,
    topics: RwLock<Topics>,
    history: usize,
    /// Encoded bytes retained, at most (see the module documentation).
    max_bytes: u64,
    /// Events older than this leave the log.
    max_age: Option<Duration>,
}

/// Sweeps look for idle topics once the table has grown to this many, at least.
const MIN_SWEEP: usize = 1024;

/// The topic table. Idle topics (no subscriber, nothing retained, nobody holding them) are
/// dropped when the table has doubled since the last sweep, so publishing to ever-new topics
/// keeps memory bounded, at an amortized constant cost per new topic.
struct Topics {
    map: HashMap<Topic, Arc<TopicLog>>,
    sweep_at: usize,
    /// The newest sequence number any dropped topic had lost. A topic made anew starts from
    /// here: a resume on it from before then may have missed events, and is told so.
    dropped_up_to: u64,
}

impl Topics {
    fn sweep(&mut self) {
        let mut dropped_up_to = self.dropped_up_to;
        self.map.retain(|_, t| {
            // Only the table holds it (checked under the table's write lock, so nobody can be
            // taking it right now), and its ring is empty: nothing would notice it gone.
            let ring = read!(t.ring);
            let idle = Arc::strong_count(t) == 1 && ring.entries.is_empty();
            if idle {
                dropped_up_to = dropped_up_to.max(ring.evicted_up_to);
            }
            !idle
        });
        self.dropped_up_to = dropped_up_to;
        self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP);
    }
}

struct Order {
    next_seq: u64,
    /// Retained events in sequence order, with the rings that hold each, for eviction.
    retained: VecDeque<Retained>,
    /// The encoded bytes of the retained events, each counted once.
    bytes: u64,
}

struct Retained {
    seq: u64,
    /// Its encoded length.
    len: u64,
    placement: Placement,
    /// When it was published, for the age limit.
    at: Instant,
}

impl Order {
    /// Drops the oldest retained event from every ring it is in.
    fn evict_oldest(&mut self) {
        let Some(old) = self.retained.pop_front() else {
            return;
        };
        self.bytes -= old.len;
        for t in old.placement.rings() {
            let mut ring = write!(t.ring);
            // Rings are in sequence order and eviction is too: it is the front.
            if ring.entries.front().is_some_and(|e| e.seq == old.seq) {
                if let Some(e) = ring.entries.pop_front() {
                    ring.evicted_bytes = e.end;
                }
                ring.evicted_up_to = old.seq;
            }
        }
    }

    /// Evicts while there are more than `history` events or `max_bytes` bytes, or the oldest is
    /// older than `cut`, but never past `evictable`.
    fn evict(&mut self, history: usize, max_bytes: u64, cut: Option<Instant>, evictable: u64) {
        while let Some(front) = self.retained.front() {
            let over = self.retained.len() > history
                || self.bytes > max_bytes
                || cut.is_some_and(|c| front.at < c);
            if !over || front.seq > evictable {
                break;
            }
            self.evict_oldest();
        }
    }
}

/// The rings one event sits in (one topic is by far the common case: no allocation for it).
enum Placement {
    One(Arc<TopicLog>),
    Many(Box<[Arc<TopicLog>]>),
}

impl Placement {
    fn rings(&self) -> &[Arc<TopicLog>] {
        match self {
            Placement::One(t) => std::slice::from_ref(t),
            Placement::Many(ts) => ts,
        }
    }
}

/// One topic: its ring of retained events, and the subscribers waiting for its next event.
pub(crate) struct TopicLog {
    ring: RwLock<Ring>,
    waiters: Mutex<Vec<Arc<Waiter>>>,
    pub(crate) subscribers: AtomicUsize,
}

struct Ring {
    entries: VecDeque<Entry>,
    /// The newest sequence number that left this ring.
    evicted_up_to: u64,
    /// Bytes that left this ring; with `Entry::end`, byte offsets in the topic's whole stream.
    evicted_bytes: u64,
}

struct Entry {
    seq: u64,
    bytes: Bytes,
    /// Offset just past this event in the topic's stream of bytes since start.
    end: u64,
}

impl Ring {
    fn appended(&self) -> u64 {
        self.entries.back().map_or(self.evicted_bytes, |e| e.end)
    }

    /// Index of the first entry after `seq`.
    fn after(&self, seq: u64) -> usize {
        self.entries.partition_point(|e| e.seq <= seq)
    }

    fn offset_at(&self, index: usize) -> u64 {
        match index {
            0 => self.evicted_bytes,
            i => self.entries[i - 1].end,
        }
    }
}

/// A subscriber's registration on one topic: woken (once) by the next publish there.
pub(crate) struct Waiter {
    pub(crate) notify: Arc<Notify>,
    enrolled: AtomicBool,
}

impl Waiter {
    pub(crate) fn new(notify: Arc<Notify>) -> Arc<Waiter> {
        Arc::new(Waiter {
            notify,
            enrolled: AtomicBool::new(false),
        })
    }
}

impl TopicLog {
    fn new(evicted_up_to: u64) -> TopicLog {
        TopicLog {
            ring: RwLock::new(Ring {
                entries: VecDeque::new(),
                evicted_up_to,
                evicted_bytes: 0,
            }),
            waiters: Mutex::new(Vec::new()),
            subscribers: AtomicUsize::new(0),
        }
    }

    /// Asks to be woken by the next publish on this topic. Only subscribers that found nothing to
    /// send are enrolled, so a publish costs nothing for subscribers that are busy writing.
    pub(crate) fn enroll(&self, waiter: &Arc<Waiter>) {
        if waiter.enrolled.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut list = lock!(self.waiters);
        // Waiters of subscriptions that ended stay until the next publish; on a quiet topic with
        // many comings and goings, sweep them so the list stays near the number of subscribers.
        if list.len() >= 64 && list.len() > 2 * self.subscribers.load(Ordering::Relaxed) {
            list.retain(|w| Arc::strong_count(w) > 1);
        }
        list.push(waiter.clone());
    }

    /// The event numbered `seq` is on this topic and still in memory.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        let ring = read!(self.ring);
        let i = ring.after(seq);
        i > 0 && ring.entries[i - 1].seq == seq
    }

    /// Wakes every enrolled waiter.
    pub(crate) fn wake(&self) {
        let list = std::mem::take(&mut *lock!(self.waiters));
        for waiter in list {
            waiter.enrolled.store(false, Ordering::Release);
            waiter.notify.notify_one();
        }
    }
}

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

/// Receives a numbered batch (sequence number and wire bytes of each event) under the publish
/// lock.
pub(crate) type Submit<'a> = &'a mut dyn FnMut(&[(u64, Bytes)]);

/// A batch refused because its events, encoded, are more than the whole history may hold: it
/// would push its own first events out before anyone could read them. Nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// The batch's encoded bytes.
    pub(crate) bytes: u64,
    /// The limit.
    pub(crate) limit: u64,
}

impl Log {
    /// A log holding up to `history` events, numbering from `next_seq`. Events before `next_seq`
    /// (kept by a store from an earlier run) count as evicted on every topic, so a resume from
    /// before the start is sent to the store.
    pub(crate) fn new(history: usize, next_seq: u64) -> Log {
        Log {
            order: Mutex::new(Order {
                next_seq: next_seq.max(1),
                retained: VecDeque::new(),
                bytes: 0,
            }),
            committed: AtomicU64::new(next_seq.max(1) - 1),
            topics: RwLock::new(Topics {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
                dropped_up_to: next_seq.max(1) - 1,
            }),
            history: history.max(1),
            max_bytes: u64::MAX,
            max_age: None,
        }
    }

    /// Also holds at most `bytes` encoded bytes (at least 1); a batch larger than that is
    /// refused.
    pub(crate) fn with_max_bytes(mut self, bytes: u64) -> Log {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Also evicts events older than `age` (at publish, and when [`expire`](Self::expire) is
    /// called).
    pub(crate) fn with_max_age(mut self, age: Option<Duration>) -> Log {
        self.max_age = age;
        self
    }

    /// Evicts what is older than the age limit; called now and then so a quiet log ages too.
    pub(crate) fn expire(&self) {
        let Some(cut) = self.cut(Instant::now()) else {
            return;
        };
        let committed = self.committed();
        lock!(self.order).evict(usize::MAX, u64::MAX, Some(cut), committed);
    }

    /// Events published before this are past the age limit.
    fn cut(&self, now: Instant) -> Option<Instant> {
        self.max_age.and_then(|age| now.checked_sub(age))
    }

    /// The newest sequence number whose event is readable.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The log of a topic, made if it is new.
    pub(crate) fn topic(&self, topic: &Topic) -> Arc<TopicLog> {
        if let Some(t) = read!(self.topics).map.get(topic) {
            return t.clone();
        }
        let mut topics = write!(self.topics);
        if let Some(t) = topics.map.get(topic) {
            return t.clone();
        }
        if topics.map.len() >= topics.sweep_at {
            topics.sweep();
        }
        let t = Arc::new(TopicLog::new(topics.dropped_up_to));
        topics.map.insert(topic.clone(), t.clone());
        t
    }

    pub(crate) fn next_seq(&self) -> u64 {
        lock!(self.order).next_seq
    }

    pub(crate) fn topic_count(&self) -> usize {
        read!(self.topics).map.len()
    }

    pub(crate) fn retained(&self) -> usize {
        lock!(self.order).retained.len()
    }

    /// The encoded bytes of the retained events, each counted once.
    pub(crate) fn retained_bytes(&self) -> u64 {
        lock!(self.order).bytes
    }

    /// Every topic log, for waking them all at shutdown.
    pub(crate) fn all_topics(&self) -> Vec<Arc<TopicLog>> {
        read!(self.topics).map.values().cloned().collect()
    }

    /// Numbers, encodes and appends a batch atomically: readers see all of it or none of it.
    /// `rings[i]` are the logs of `events[i]`'s topics; `touched` is each of them once. Returns
    /// each event's sequence number and bytes. Wakes the waiters of every touched topic after the
    /// batch is readable.
    pub(crate) fn append(
        &self,
        epoch: &Epoch,
        events: &[Event],
        rings: &[Vec<Arc<TopicLog>>],
        touched: &[Arc<TopicLog>],
    ) -> Result<Vec<(u64, Bytes)>, TooLarge> {
        let out = self.insert(epoch, events, rings, None)?;
        // Wake outside the publish lock.
        touched.iter().for_each(|t| t.wake());
        Ok(out)
    }

    /// Like [`append`](Self::append), but the batch stays unreadable until
    /// [`make_readable`](Self::make_readable) is called with its last sequence number: `submit`
    /// gets the numbered batch while the publish lock is held, so batches reach it in sequence
    /// order (a durable store writes them in that order, then makes them readable).
    pub(crate) fn append_deferred(
        &self,
        epoch: &Epoch,
        events: &[Event],
        rings: &[Vec<Arc<TopicLog>>],
        submit: Submit<'_>,
    ) -> Result<Vec<(u64, Bytes)>, TooLarge> {
        self.insert(epoch, events, rings, Some(submit))
    }

    /// Everything up to `upto` is now readable; wakes the waiters of `touched` (each topic of
    /// the batch, once).
    pub(crate) fn make_readable(&self, upto: u64, touched: &[Arc<TopicLog>]) {
        let committed = self.committed.fetch_max(upto, Ordering::AcqRel).max(upto);
        // What waited for the store could not be evicted until now: bring memory back within
        // its bounds at once rather than at the next publish. Only if the lock is free: a
        // publisher holding it evicts up to the new mark itself (and a store that reports a
        // batch done from inside `append` calls this under that very lock).
        let order = match self.order.try_lock() {
            Ok(order) => Some(order),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut order) = order {
            let cut = self.cut(Instant::now());
            order.evict(self.history, self.max_bytes, cut, committed);
        }
        touched.iter().for_each(|t| t.wake());
    }

    fn insert(
        &self,
        epoch: &Epoch,
        events: &[Event],
        rings: &[Vec<Arc<TopicLog>>],
        mut deferred: Option<Submit<'_>>,
    ) -> Result<Vec<(u64, Bytes)>, TooLarge> {
        let mut order = lock!(self.order);
        let first = order.next_seq;
        // A batch that may not fit (bounded without looking at its data) is encoded before
        // anything changes, and refused if it does not; any other is encoded event by event as
        // it is placed, which keeps each buffer freed by eviction at hand for the next one.
        let id_len = epoch.as_str().len() + "-18446744073709551615".len();
        let worst = events.iter().fold(0u64, |sum, e| {
            sum.saturating_add(encoded_len_worst(id_len, e) as u64)
        });
        let mut encoded = Vec::new();
        if worst > self.max_bytes {
            encoded = (first..)
                .zip(events)
                .map(|(seq, event)| encode(&epoch.id(seq), event))
                .collect();
            let total = encoded.iter().map(|b| b.len() as u64).sum();
            if total > self.max_bytes {
                return Err(TooLarge {
                    bytes: total,
                    limit: self.max_bytes,
                });
            }
        }
        let mut encoded = encoded.into_iter();
        let mut out = Vec::with_capacity(events.len());
        order.next_seq += events.len() as u64;
        let now = Instant::now();
        let cut = self.cut(now);
        // Deferred batches are evicted only once readable, so memory never drops an event a
        // reader would have to fetch from a store that does not hold it yet. Read at each
        // event: the store's writer may raise the mark meanwhile.
        let evictable = || {
            if deferred.is_some() {
                self.committed()
            } else {
                u64::MAX
            }
        };
        for ((seq, event), topics) in (first..).zip(events).zip(rings) {
            let bytes = encoded
                .next()
                .unwrap_or_else(|| encode(&epoch.id(seq), event));
            let len = bytes.len() as u64;
            for t in topics {
                let mut ring = write!(t.ring);
                let end = ring.appended() + len;
                ring.entries.push_back(Entry {
                    seq,
                    bytes: bytes.clone(),
                    end,
                });
            }
            let placement = match topics.as_slice() {
                [one] => Placement::One(one.clone()),
                many => Placement::Many(many.into()),
            };
            order.retained.push_back(Retained {
                seq,
                len,
                placement,
                at: now,
            });
            order.bytes += len;
            order.evict(self.history, self.max_bytes, cut, evictable());
            out.push((seq, bytes));
        }
        match deferred.as_mut() {
            Some(submit) => submit(&out),
            None => {
                if let Some((last, _)) = out.last() {
                    self.committed.store(*last, Ordering::Release);
                }
            }
        }
        Ok(out)
    }

    /// Hands out the events after `after` on `topics`, in sequence order, each once, up to about
    /// `max_bytes` or `max_events`, appending their bytes to `out`.
    pub(crate) fn read(
        &self,
        topics: &[Arc<TopicLog>],
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
        if let [topic] = topics {
            let ring = read!(topic.ring);
            read.evicted = ring.evicted_up_to > after;
            read.evicted_up_to = ring.evicted_up_to;
            let (mut bytes, mut taken, mut last) = (0, 0, after);
            read.cursor = upto;
            for e in ring.entries.range(ring.after(after)..) {
                if e.seq > upto {
                    break;
                }
                if taken == max_events || (taken > 0 && bytes + e.bytes.len() > max_bytes) {
                    read.cursor = last;
                    read.more = true;
                    break;
                }
                read.first.get_or_insert(e.seq);
                bytes += e.bytes.len();
                taken += 1;
                last = e.seq;
                out.push(e.bytes.clone());
            }
            return read;
        }
        // Several topics: gather each ring's share, then merge by sequence number. An event on
        // two of them has one sequence number and is sent once.
        let mut merged: Vec<(u64, Bytes)> = Vec::new();
        // A ring whose share was cut short holds back everything past its last gathered event.
        let mut limit = upto;
        for topic in topics {
            let ring = read!(topic.ring);
            read.evicted |= ring.evicted_up_to > after;
            read.evicted_up_to = read.evicted_up_to.max(ring.evicted_up_to);
            let (mut bytes, mut taken, mut last) = (0, 0, after);
            for e in ring.entries.range(ring.after(after)..) {
                if e.seq > upto {
                    break;
                }
                if taken == max_events || (taken > 0 && bytes + e.bytes.len() > max_bytes) {
                    limit = limit.min(last);
                    read.more = true;
                    break;
                }
                bytes += e.bytes.len();
                taken += 1;
                last = e.seq;
                merged.push((e.seq, e.bytes.clone()));
            }
        }
        merged.sort_unstable_by_key(|(seq, _)| *seq);
        merged.dedup_by_key(|(seq, _)| *seq);
        read.cursor = limit;
        let (mut bytes, mut taken, mut last) = (0, 0, after);
        for (seq, b) in &merged {
            if *seq > limit {
                break;
            }
            if taken == max_events || (taken > 0 && bytes + b.len() > max_bytes) {
                read.cursor = last;
                break;
            }
            read.first.get_or_insert(*seq);
            bytes += b.len();
            taken += 1;
            last = *seq;
            out.push(b.clone());
        }
        read
    }

    /// What a subscriber on `topics` that was sent everything up to `after` still has to get.
    pub(crate) fn backlog(&self, topics: &[Arc<TopicLog>], after: u64) -> Backlog {
        let mut backlog = Backlog::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    fn publish(log: &Log, epoch: &Epoch, data: &str, topics: &[&str]) -> u64 {
        let rings: Vec<_> = topics.iter().map(|t| log.topic(&topic(t))).collect();
        log.append(
            epoch,
            &[Event::new(data)],
            std::slice::from_ref(&rings),
            &rings,
        )
        .unwrap()[0]
            .0
    }

    fn read_all(log: &Log, topics: &[&str], mut after: u64, max: usize) -> (Vec<String>, bool) {
        let rings: Vec<_> = topics.iter().map(|t| log.topic(&topic(t))).collect();
        let mut out = Vec::new();
        let mut evicted = false;
        loop {
            let before = out.len();
            let r = log.read(&rings, after, usize::MAX, max, &mut out);
            evicted |= r.evicted;
            if out.len() == before {
                break;
            }
            assert!(r.cursor > after);
            after = r.cursor;
        }
        let data = out
            .iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                s.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .to_string()
            })
            .collect();
        (data, evicted)
    }

    #[test]
    fn old_events_age_out() {
        let log = Log::new(100, 1).with_max_age(Some(Duration::from_millis(50)));
        let e = Epoch::random();
        publish(&log, &e, "1", &["a"]);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(log.retained(), 1);
        log.expire();
        assert_eq!(log.retained(), 0);
        publish(&log, &e, "2", &["a"]);
        assert_eq!(read_all(&log, &["a"], 0, 10), (vec!["2".to_string()], true));
        std::thread::sleep(Duration::from_millis(80));
        // Publishing ages the log out too.
        publish(&log, &e, "3", &["b"]);
        assert_eq!(log.retained(), 1);
    }

    #[test]
    fn merges_topics_in_order_once() {
        let log = Log::new(100, 1);
        let e = Epoch::random();
        publish(&log, &e, "1", &["a"]);
        publish(&log, &e, "2", &["b"]);
        publish(&log, &e, "3", &["a", "b"]);
        publish(&log, &e, "4", &["c"]);
        publish(&log, &e, "5", &["b"]);
        for max in [1, 2, 3, 100] {
            assert_eq!(
                read_all(&log, &["a", "b"], 0, max).0,
                ["1", "2", "3", "5"],
                "max {max}"
            );
            assert_eq!(read_all(&log, &["b", "a"], 1, max).0, ["2", "3", "5"]);
            assert_eq!(read_all(&log, &["a"], 0, max).0, ["1", "3"]);
        }
    }

    #[test]
    fn eviction_is_global_and_reported_per_topic() {
        let log = Log::new(3, 1);
        let e = Epoch::random();
        publish(&log, &e, "1", &["a"]);
        publish(&log, &e, "2", &["b"]);
        publish(&log, &e, "3", &["b"]);
        publish(&log, &e, "4", &["b"]);
        // "1" left the history: a reader of "a" from the start lost it, a reader of "b" did not.
        assert_eq!(read_all(&log, &["a"], 0, 10), (vec![], true));
        assert_eq!(
            read_all(&log, &["b"], 0, 10),
            (vec!["2".into(), "3".into(), "4".into()], false)
        );
        assert_eq!(log.retained(), 3);
        let b = log.topic(&topic("b"));
        let backlog = log.backlog(&[b], 2);
        assert_eq!((backlog.events, backlog.evicted), (2, false));
    }

    /// Encoded length of an event with data `data` and a one-digit sequence number.
    fn encoded(epoch: &Epoch, data: &str) -> u64 {
        encode(&epoch.id(1), &Event::new(data)).len() as u64
    }

    #[test]
    fn eviction_by_bytes_counts_each_event_once_and_is_reported_per_topic() {
        let e = Epoch::random();
        let len = encoded(&e, "0123456789");
        // Room for three events, far from the event limit.
        let log = Log::new(100, 1).with_max_bytes(3 * len + len / 2);
        publish(&log, &e, "1123456789", &["a"]);
        publish(&log, &e, "2123456789", &["a", "b"]);
        publish(&log, &e, "3123456789", &["b"]);
        // The event on two topics shares one buffer and is counted once.
        assert_eq!((log.retained(), log.retained_bytes()), (3, 3 * len));
        publish(&log, &e, "4123456789", &["b"]);
        assert_eq!((log.retained(), log.retained_bytes()), (3, 3 * len));
        // "1" left: a reader of "a" from the start is told, a reader of "b" lost nothing.
        assert_eq!(
            read_all(&log, &["a"], 0, 10),
            (vec!["2123456789".into()], true)
        );
        let (b, lost) = read_all(&log, &["b"], 0, 10);
        assert_eq!((b.len(), lost), (3, false));
    }

    #[test]
    fn a_batch_larger_than_the_bytes_limit_is_refused_whole() {
        let e = Epoch::random();
        let len = encoded(&e, "x");
        let log = Log::new(100, 1).with_max_bytes(2 * len);
        publish(&log, &e, "x", &["a"]);
        let a = vec![log.topic(&topic("a"))];
        let three = [Event::new("y"), Event::new("y"), Event::new("y")];
        let refused = log.append(&e, &three, &[a.clone(), a.clone(), a.clone()], &a);
        assert_eq!(
            refused,
            Err(TooLarge {
                bytes: 3 * len,
                limit: 2 * len
            })
        );
        // Nothing was numbered, placed or evicted.
        assert_eq!((log.next_seq(), log.retained()), (2, 1));
        assert_eq!(read_all(&log, &["a"], 0, 10), (vec!["x".into()], false));
        // A batch that fits exactly is taken, and pushes out what came before it.
        let two = [Event::new("z"), Event::new("z")];
        assert!(log.append(&e, &two, &[a.clone(), a.clone()], &a).is_ok());
        assert_eq!(log.retained_bytes(), 2 * len);
        assert_eq!(
            read_all(&log, &["a"], 0, 10),
            (vec!["z".into(), "z".into()], true)
        );
    }

    #[test]
    fn deferred_events_are_evicted_once_readable() {
        let e = Epoch::random();
        let len = encoded(&e, "x");
        let log = Log::new(100, 1).with_max_bytes(2 * len);
        let a = vec![log.topic(&topic("a"))];
        let mut submit = |_: &[(u64, Bytes)]| {};
        log.append_deferred(
            &e,
            &[Event::new("x")],
            std::slice::from_ref(&a),
            &mut submit,
        )
        .unwrap();
        let two = [Event::new("x"), Event::new("x")];
        log.append_deferred(&e, &two, &[a.clone(), a.clone()], &mut submit)
            .unwrap();
        // Nothing is readable yet, so nothing may leave memory: over the limit for now.
        assert_eq!(log.retained_bytes(), 3 * len);
        log.make_readable(1, &a);
        assert_eq!((log.retained(), log.retained_bytes()), (2, 2 * len));
        log.make_readable(3, &a);
        assert_eq!(log.retained_bytes(), 2 * len);
    }

    #[test]
    fn idle_topics_are_dropped_and_their_losses_remembered() {
        let log = Log::new(10, 1);
        let e = Epoch::random();
        let kept = log.topic(&topic("kept")); // a subscriber holds it
        for i in 0..5000 {
            publish(&log, &e, "x", &[&format!("t{i}")]);
        }
        // At most the sweep threshold's worth of topics stayed; the held one is among them.
        assert!(log.topic_count() <= 2 * MIN_SWEEP, "{}", log.topic_count());
        assert!(Arc::ptr_eq(&kept, &log.topic(&topic("kept"))));
        // "t0" was dropped after losing its event: made anew, it still knows that much.
        let t0 = log.topic(&topic("t0"));
        assert!(read!(t0.ring).evicted_up_to >= 1);
    }

    #[test]
    fn reads_stop_at_the_committed_mark() {
        let log = Log::new(10, 1);
        let e = Epoch::random();
        publish(&log, &e, "1", &["a"]);
        let a = log.topic(&topic("a"));
        let mut out = Vec::new();
        let r = log.read(std::slice::from_ref(&a), 1, 1000, 10, &mut out);
        assert_eq!((r.cursor, out.len()), (1, 0));
    }
}

#[cfg(test)]
mod properties {
    //! Any interleaving of publishes, partial reads and resumes gives each subscriber every
    //! event on its topics exactly once, in order; with eviction (by count or by bytes), every
    //! read that skips an event says so.

    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

    #[derive(Debug, Clone)]
    enum Op {
        /// Publish a batch; each event on the topics in its bit mask, with that much data.
        Publish(Vec<(u8, usize)>),
        /// Subscriber `sub` reads at most `max_events` / `max_bytes`.
        Read {
            sub: usize,
            max_events: usize,
            max_bytes: usize,
        },
        /// Subscriber `sub` goes away and comes back with the last id it got.
        Resume { sub: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec((1u8..16, 0usize..60), 1..4).prop_map(Op::Publish),
            (0usize..3, 1usize..6, 1usize..400).prop_map(|(sub, max_events, max_bytes)| Op::Read {
                sub,
                max_events,
                max_bytes
            }),
            (0usize..3).prop_map(|sub| Op::Resume { sub }),
        ]
    }

    fn seq_of(bytes: &Bytes) -> u64 {
        let text = std::str::from_utf8(bytes).unwrap();
        let id = text.lines().next().unwrap().strip_prefix("id: ").unwrap();
        id.rsplit_once('-').unwrap().1.parse().unwrap()
    }

    struct Reader {
        mask: u8,
        cursor: u64,
        got: Vec<u64>,
        lost: bool,
    }

    fn rings(log: &Log, mask: u8) -> Vec<Arc<TopicLog>> {
        (0..4)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| log.topic(&Topic::new(TOPICS[i]).unwrap()))
            .collect()
    }

    /// One read; any event for this reader that it passed over without getting must be
    /// announced by the read itself. Returns whether it got anything.
    fn read(
        log: &Log,
        published: &[(u64, u8)],
        r: &mut Reader,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<bool, TestCaseError> {
        let mut out = Vec::new();
        let done = log.read(
            &rings(log, r.mask),
            r.cursor,
            max_bytes,
            max_events,
            &mut out,
        );
        let got: Vec<u64> = out.iter().map(seq_of).collect();
        prop_assert!(done.cursor >= r.cursor);
        let skipped = published
            .iter()
            .filter(|(s, m)| m & r.mask != 0 && *s > r.cursor && *s <= done.cursor)
            .any(|(s, _)| !got.contains(s));
        prop_assert!(
            !skipped || done.evicted,
            "events skipped silently after {}",
            r.cursor
        );
        r.lost |= done.evicted;
        r.got.extend(&got);
        r.cursor = done.cursor;
        Ok(!out.is_empty())
    }

    fn run(
        history: usize,
        max_bytes: u64,
        masks: [u8; 3],
        ops: Vec<Op>,
    ) -> Result<(), TestCaseError> {
        let log = Log::new(history, 1).with_max_bytes(max_bytes);
        let epoch = Epoch::random();
        let mut published: Vec<(u64, u8)> = Vec::new();
        let mut readers: Vec<Reader> = masks
            .iter()
            .map(|&mask| Reader {
                mask,
                cursor: 0,
                got: Vec::new(),
                lost: false,
            })
            .collect();
        for op in ops {
            match op {
                Op::Publish(batch) => {
                    let events: Vec<Event> = batch
                        .iter()
                        .map(|&(_, n)| Event::new("x".repeat(n)))
                        .collect();
                    let placed: Vec<_> = batch.iter().map(|&(m, _)| rings(&log, m)).collect();
                    let touched = rings(&log, batch.iter().fold(0, |all, (m, _)| all | m));
                    let next = log.next_seq();
                    match log.append(&epoch, &events, &placed, &touched) {
                        Ok(appended) => {
                            for ((seq, _), &(m, _)) in appended.iter().zip(&batch) {
                                published.push((*seq, m));
                            }
                        }
                        Err(e) => {
                            // Refused whole: nothing numbered.
                            prop_assert!(e.bytes > max_bytes);
                            prop_assert_eq!(log.next_seq(), next);
                        }
                    }
                    let order = lock!(log.order);
                    let counted: u64 = order.retained.iter().map(|r| r.len).sum();
                    prop_assert_eq!(order.bytes, counted);
                    prop_assert!(order.bytes <= max_bytes && order.retained.len() <= history);
                }
                Op::Read {
                    sub,
                    max_events,
                    max_bytes,
                } => {
                    read(&log, &published, &mut readers[sub], max_events, max_bytes)?;
                }
                Op::Resume { sub } => {
                    // A new connection resumes from the last id it got (or from the start).
                    let r = &mut readers[sub];
                    r.cursor = r.got.last().copied().unwrap_or(0);
                }
            }
        }
        for r in &mut readers {
            while read(&log, &published, r, 7, 300)? {}
            let want: Vec<u64> = published
                .iter()
                .filter(|(_, m)| m & r.mask != 0)
                .map(|(s, _)| *s)
                .collect();
            // In order, each once.
            prop_assert!(
                r.got.windows(2).all(|w| w[0] < w[1]),
                "out of order or twice: {:?}",
                r.got
            );
            if r.lost {
                // What it got is what was published for it, minus what it was told it lost.
                prop_assert!(r.got.iter().all(|s| want.contains(s)));
            } else {
                prop_assert_eq!(&r.got, &want);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_event_once_in_order(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(10_000, u64::MAX, masks, ops)?;
        }

        #[test]
        fn with_eviction_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(5, u64::MAX, masks, ops)?;
        }

        /// Events encode to 27 to 88 bytes: 200 bytes hold 2 to 7 of them, and a batch of
        /// three can be too large.
        #[test]
        fn with_eviction_by_bytes_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(10_000, 200, masks, ops)?;
        }

        #[test]
        fn with_both_limits_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(4, 150, masks, ops)?;
        }
    }
}
