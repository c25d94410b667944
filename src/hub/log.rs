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

mod counts;
mod every;
mod reads;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::locks::{lock, read, write};
use super::ring::{Entry, Meta, EVICTED_TAIL};
use crate::event::{encode, encoded_len_worst, Event, Topic};
use crate::id::Epoch;

// The rings are the log's; readers and publishers name them through it.
pub(crate) use super::ring::{TopicLog, Waiter};

pub(crate) struct Log {
    order: Mutex<Order>,
    /// Every event, whatever its topics: what `*` and URI-template subscriptions read.
    all: Arc<TopicLog>,
    /// Every event with a sequence number up to this one is in its rings.
    committed: AtomicU64,
    /// When sampled events became readable, for the delivery lag.
    pub(crate) probe: super::meters::Probe,
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
    /// The retained events whose publisher chose their id: id to sequence number.
    ids: HashMap<Arc<str>, u64>,
    /// The log's ring of every event (see [`Log`]).
    all: Arc<TopicLog>,
    /// The ring of every event is kept: a `*` or template subscription has come. Until then
    /// publishing pays nothing for it (no entry there, no shared [`Meta`] for public events).
    keeps_all: bool,
}

struct Retained {
    seq: u64,
    /// The id its publisher chose, if any.
    id: Option<Arc<str>>,
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
        // A relayed event may have taken its id over (see `append_relayed`): it keeps it.
        if let Some(id) = old.id.filter(|id| self.ids.get(id) == Some(&old.seq)) {
            self.ids.remove(&id);
        }
        let all = self.keeps_all.then_some(&self.all);
        for t in old.placement.rings().iter().chain(all) {
            let mut ring = write!(t.ring);
            // Rings are in sequence order and eviction is too: it is the front.
            if ring.entries.front().is_some_and(|e| e.seq == old.seq) {
                if let Some(e) = ring.entries.pop_front() {
                    ring.evicted_bytes = e.end;
                    if let (true, Some(meta)) = (Arc::ptr_eq(t, &self.all), e.meta) {
                        if ring.evicted_tail.len() == EVICTED_TAIL {
                            ring.evicted_tail.pop_front();
                        }
                        ring.evicted_tail.push_back((e.seq, meta));
                    }
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

/// Receives a numbered batch (sequence number and wire bytes of each event) under the publish
/// lock.
pub(crate) type Submit<'a> = &'a mut dyn FnMut(&[(u64, Bytes)]);

/// Why a batch was refused. Nothing was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// See [`TooLarge`].
    TooLarge(TooLarge),
    /// A publisher-chosen id is already retained, or named twice in the batch.
    DuplicateId(String),
}

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
        let all = Arc::new(TopicLog::new(
            Topic::new("*").unwrap_or_else(|_| Topic::default_topic()),
            next_seq.max(1) - 1,
        ));
        Log {
            order: Mutex::new(Order {
                next_seq: next_seq.max(1),
                retained: VecDeque::new(),
                bytes: 0,
                ids: HashMap::new(),
                all: all.clone(),
                keeps_all: false,
            }),
            all,
            committed: AtomicU64::new(next_seq.max(1) - 1),
            probe: Default::default(),
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
        let t = Arc::new(TopicLog::new(topic.clone(), topics.dropped_up_to));
        topics.map.insert(topic.clone(), t.clone());
        t
    }

    /// Wakes the readers of `touched`, and of every event. Always the latter: skipping it when
    /// no `*` reader seems to be there would race with one just subscribing (an uncontended
    /// lock and an empty list cost next to nothing).
    fn wake(&self, touched: &[Arc<TopicLog>]) {
        touched.iter().for_each(|t| t.wake());
        self.all.wake();
    }

    /// Every topic log, for waking them all at shutdown.
    pub(crate) fn all_topics(&self) -> Vec<Arc<TopicLog>> {
        let mut all: Vec<_> = read!(self.topics).map.values().cloned().collect();
        all.push(self.all.clone());
        all
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
    ) -> Result<Vec<(u64, Bytes)>, Refused> {
        let out = self.insert(epoch, events, rings, None, false)?;
        // Wake outside the publish lock.
        self.wake(touched);
        Ok(out)
    }

    /// Like [`append`](Self::append) for events a cluster's reader brings in (feature
    /// `cluster`): never refused, since Redis took them already. An id already indexed now
    /// names the newer event (two hubs may accept one publisher id).
    #[cfg(feature = "cluster")]
    pub(crate) fn append_relayed(
        &self,
        epoch: &Epoch,
        events: &[Event],
        rings: &[Vec<Arc<TopicLog>>],
        touched: &[Arc<TopicLog>],
    ) {
        // A relayed insert has no refusal to make.
        let _ = self.insert(epoch, events, rings, None, true);
        self.wake(touched);
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
    ) -> Result<Vec<(u64, Bytes)>, Refused> {
        self.insert(epoch, events, rings, Some(submit), false)
    }

    /// Everything up to `upto` is now readable; wakes the waiters of `touched` (each topic of
    /// the batch, once).
    pub(crate) fn make_readable(&self, upto: u64, touched: &[Arc<TopicLog>]) {
        self.probe.stamp(self.committed(), upto);
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
        self.wake(touched);
    }

    fn insert(
        &self,
        epoch: &Epoch,
        events: &[Event],
        rings: &[Vec<Arc<TopicLog>>],
        mut deferred: Option<Submit<'_>>,
        relayed: bool,
    ) -> Result<Vec<(u64, Bytes)>, Refused> {
        let mut order = lock!(self.order);
        let first = order.next_seq;
        if !relayed {
            check_ids(&order.ids, events)?;
        }
        let keeps_all = order.keeps_all;
        // A batch that may not fit (bounded without looking at its data) is encoded before
        // anything changes, and refused if it does not; any other is encoded event by event as
        // it is placed, which keeps each buffer freed by eviction at hand for the next one.
        let hub_id_len = epoch.as_str().len() + "-18446744073709551615".len();
        let worst = events.iter().fold(0u64, |sum, e| {
            let id_len = e.id().map_or(hub_id_len, str::len);
            sum.saturating_add(encoded_len_worst(id_len, e) as u64)
        });
        let encode_one = |seq: u64, event: &Event| match event.id() {
            Some(id) => encode(id, event),
            None => encode(&epoch.id(seq), event),
        };
        let mut encoded = Vec::new();
        if worst > self.max_bytes && !relayed {
            encoded = (first..)
                .zip(events)
                .map(|(seq, event)| encode_one(seq, event))
                .collect();
            let total = encoded.iter().map(|b| b.len() as u64).sum();
            if total > self.max_bytes {
                return Err(Refused::TooLarge(TooLarge {
                    bytes: total,
                    limit: self.max_bytes,
                }));
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
            let bytes = encoded.next().unwrap_or_else(|| encode_one(seq, event));
            let len = bytes.len() as u64;
            let private = event.is_private();
            // Only what a reader may look at: a private event's topics (for rights), and every
            // event's once the ring of every event is kept (for selectors).
            let meta = (private || keeps_all).then(|| {
                Arc::new(Meta {
                    topics: event.topics().into(),
                    private,
                })
            });
            let all = keeps_all.then_some(&self.all);
            for t in topics.iter().chain(all) {
                let mut ring = write!(t.ring);
                let end = ring.appended() + len;
                ring.entries.push_back(Entry {
                    seq,
                    bytes: bytes.clone(),
                    end,
                    private,
                    meta: meta.clone(),
                });
            }
            let id = event.shared_id().cloned();
            if let Some(id) = &id {
                order.ids.insert(id.clone(), seq);
            }
            let placement = match topics.as_slice() {
                [one] => Placement::One(one.clone()),
                many => Placement::Many(many.into()),
            };
            order.retained.push_back(Retained {
                seq,
                id,
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
                    self.probe.stamp(first - 1, *last);
                    self.committed.store(*last, Ordering::Release);
                }
            }
        }
        Ok(out)
    }
}

/// Refuses a batch naming an id that is retained, or naming one twice.
fn check_ids(retained: &HashMap<Arc<str>, u64>, events: &[Event]) -> Result<(), Refused> {
    let mut seen: Vec<&str> = Vec::new();
    for id in events.iter().filter_map(Event::id) {
        if retained.contains_key(id) || seen.contains(&id) {
            return Err(Refused::DuplicateId(id.to_string()));
        }
        seen.push(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
