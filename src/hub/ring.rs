//! One topic's ring: its retained events in sequence order (each with its byte offset in the
//! topic's stream), what left it, and the subscribers waiting for its next event. The
//! [log](super::log) numbers events, places them in rings and evicts them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;

use super::locks::{lock, read};
use crate::event::Topic;

/// One topic: its ring of retained events, and the subscribers waiting for its next event.
pub(crate) struct TopicLog {
    /// Its topic (`*` for the log's ring of every event).
    pub(super) name: Topic,
    pub(super) ring: RwLock<Ring>,
    waiters: Mutex<Vec<Arc<Waiter>>>,
    pub(crate) subscribers: AtomicUsize,
}

pub(super) struct Ring {
    pub(super) entries: VecDeque<Entry>,
    /// The newest sequence number that left this ring.
    pub(super) evicted_up_to: u64,
    /// Bytes that left this ring; with `Entry::end`, byte offsets in the topic's whole stream.
    pub(super) evicted_bytes: u64,
    /// The ring of every event only: what the newest evicted events were (at most
    /// [`EVICTED_TAIL`]), so that a `*` or template reader is told of a loss only if it would
    /// have received one of them.
    pub(crate) evicted_tail: VecDeque<(u64, Arc<Meta>)>,
}

/// Evicted events the ring of every event remembers (pointers to their shared [`Meta`]).
pub(crate) const EVICTED_TAIL: usize = 1 << 14;

pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) bytes: Bytes,
    /// Offset just past this event in the topic's stream of bytes since start.
    pub(super) end: u64,
    /// Whether it is private, inline: a reader looks no further for public events.
    pub(crate) private: bool,
    /// What readers filter on, shared by every ring the event is in: there for private events,
    /// and for every event once the log keeps its ring of every event.
    pub(crate) meta: Option<Arc<Meta>>,
}

/// What a reader may need to know of an event besides its bytes: its topics (for URI-template
/// and `*` subscriptions, and for private events' rights) and whether it is private.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) topics: Box<[Topic]>,
    pub(crate) private: bool,
}

impl Ring {
    pub(super) fn appended(&self) -> u64 {
        self.entries.back().map_or(self.evicted_bytes, |e| e.end)
    }

    /// Index of the first entry after `seq`.
    pub(super) fn after(&self, seq: u64) -> usize {
        self.entries.partition_point(|e| e.seq <= seq)
    }

    pub(super) fn offset_at(&self, index: usize) -> u64 {
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
    pub(super) fn new(name: Topic, evicted_up_to: u64) -> TopicLog {
        TopicLog {
            name,
            ring: RwLock::new(Ring {
                entries: VecDeque::new(),
                evicted_up_to,
                evicted_bytes: 0,
                evicted_tail: VecDeque::new(),
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
