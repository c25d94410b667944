//! A subscription: a cursor into the log plus a way to be woken.
//!
//! Woken, it takes everything after its cursor on its topics in one batch. Replay after a
//! `Last-Event-ID` is the same operation from an older cursor, so replay runs into live delivery
//! with no gap and no duplicate.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::access::Access;
use super::log::{TopicLog, Waiter};
use super::received::Decoder;
use super::request::SubscribeRequest;
use super::resume::{resume_point, unknown_id_gap, Expiry};
use super::slots::SlotGuard;
use super::Inner;
use crate::event::{stream_prologue, Topic, HEARTBEAT};
use crate::id::IdMatch;

/// One batch holds about this many bytes at most (one write to the socket).
const BATCH_BYTES: usize = 256 * 1024;
/// One batch holds this many events at most (the writer sends them with one vectored write).
const BATCH_EVENTS: usize = 512;

#[cfg(feature = "cluster")]
use super::relay::generation;
/// Outside a cluster the history never changes under a stream.
#[cfg(not(feature = "cluster"))]
fn generation(_: &Inner) -> u64 {
    0
}

/// How the first read treats events that already left the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstRead {
    /// A resume or a live start: lost events are reported in-band with a `gap` event.
    ReportGap,
    /// The gap was already reported (an unknown id: everything retained is replayed).
    Quiet,
    /// Past the first read, losing events means the subscriber fell behind.
    Done,
}

/// An open subscription: read it as wire bytes with [`next`](Subscription::next) (what the
/// server does) or as decoded events with [`recv`](Subscription::recv) or
/// [`into_stream`](Subscription::into_stream). See the [`hub`](crate::hub) documentation and
/// [`Hub::subscribe`](super::Hub::subscribe).
pub struct Subscription {
    pub(super) hub: Arc<Inner>,
    /// The rings read: the topics', or the ring of every event for a selector subscription.
    pub(super) topics: Vec<Arc<TopicLog>>,
    /// The topics' names, for reading the store (empty for a selector subscription).
    pub(super) names: Vec<Topic>,
    /// Which events of those rings it may be sent.
    pub(super) access: Access,
    /// It reads every event (a `*` or URI-template selector).
    reads_all: bool,
    /// When the stream ends (its token's `exp`, or its maximum age), and the timer that wakes it
    /// then. Boxed: most streams have none, and every idle stream's size counts.
    expiry: Option<Box<Expiry>>,
    /// `last_event_id` may be a publisher's id that left memory: look it up in the store
    /// before the first read.
    resolve: bool,
    /// Resumed from an id, not yet counted: its first read says from where (`delivered.rs`).
    replay: bool,
    /// Asked to start from the earliest retained event.
    earliest: bool,
    /// Events after the cursor up to here left memory: read them from the store next.
    from_store: Option<u64>,
    /// In a cluster, a resume older than memory: read from Redis first.
    #[cfg(feature = "cluster")]
    from_redis: Option<Box<crate::cluster::Replay>>,
    waiters: Vec<Arc<Waiter>>,
    notify: Arc<Notify>,
    /// The last sequence number handed out (or skipped as not on these topics).
    cursor: u64,
    /// The cursor before the last batch: the batch is `(batch_from, cursor]` (`delivered.rs`).
    batch_from: u64,
    /// `committed` when the subscription began: backlog counts from here, so a long replay is
    /// not mistaken for falling behind.
    start: u64,
    opening: Option<Bytes>,
    first_read: FirstRead,
    last_event_id: Option<String>,
    /// In a cluster, the id of `start` (see [`starts_after`](Self::starts_after)).
    start_id: Option<Box<str>>,
    /// When this stream last handed out bytes.
    last_sent: Instant,
    /// The cluster's history generation it opened in: it ends at the next.
    generation: u64,
    /// The hub's heartbeat tick this subscription last looked at.
    seen_tick: u64,
    /// Under load, the next read waits until here so that events gather into one write.
    read_at: Option<Instant>,
    /// The last read stopped at its limits (a replay, or a stream far behind): the next batch is
    /// ready already, so there is nothing to wait for.
    more: bool,
    /// Created by the first [`recv`](Subscription::recv): decodes batches for in-process
    /// readers. The server's path never has one.
    pub(super) decoder: Option<Box<Decoder>>,
    _slot: SlotGuard,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.names)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(super) fn new(hub: Arc<Inner>, request: SubscribeRequest, slot: SlotGuard) -> Subscription {
        let notify = Arc::new(Notify::new());
        let reads_all = request.selectors.is_some();
        // Before the resume id is read against the history, so a change after is seen.
        let generation = generation(&hub);
        let topics: Vec<_> = if reads_all {
            vec![hub.log.all()]
        } else {
            request.topics.iter().map(|t| hub.log.topic(t)).collect()
        };
        let access = Access::new(
            request.selectors.clone(),
            request.private.clone(),
            &request.topics,
        );
        for t in &topics {
            t.subscribers.fetch_add(1, Ordering::Relaxed);
        }
        let waiters = topics.iter().map(|_| Waiter::new(notify.clone())).collect();
        // Read after registering, so nothing committed from here on can be missed.
        let (committed, now_id) = super::resume::now(&hub);
        let mut opening = stream_prologue(hub.config.retry_ms).to_vec();
        let mut resolve = false;
        let (cursor, first_read) = match request.last_event_id.as_deref() {
            None if request.earliest => (0, FirstRead::Quiet),
            // What is older than the tail is not owed: no gap for it.
            None if request.tail.is_some() => (
                hub.log
                    .tail_start(&topics, &access, request.tail.unwrap_or(0), committed),
                FirstRead::Quiet,
            ),
            // A live start reports a loss too: a burst bigger than the history could evict
            // events published after it opened before its first read.
            None => (committed, FirstRead::ReportGap),
            // An id of a history the cluster lost: still in memory, perhaps, but not owed.
            #[cfg(feature = "cluster")]
            Some(id) if super::relay::lost_history(&hub, id).is_some() => {
                let (gap, start) = super::relay::lost_history(&hub, id).unwrap_or_default();
                opening.extend_from_slice(&gap);
                (start, FirstRead::Quiet)
            }
            Some(id) => match resume_point(&hub, id, committed) {
                Some(seq) => (seq, FirstRead::ReportGap),
                // Perhaps a publisher's id that left memory: the store knows (see `next`).
                None if hub.durable && !matches!(hub.epoch.parse(id), IdMatch::Current(_)) => {
                    resolve = true;
                    (committed, FirstRead::ReportGap)
                }
                // A cluster id this hub's reader has not brought in yet (see `next`).
                #[cfg(feature = "cluster")]
                None if super::relay::awaits(&hub, id) => {
                    resolve = true;
                    (committed, FirstRead::ReportGap)
                }
                None => {
                    opening.extend_from_slice(&unknown_id_gap(&hub, id));
                    (0, FirstRead::Quiet)
                }
            },
        };
        // Resumed from an id this history knows (an unknown one starts with a gap instead).
        let replay = request.last_event_id.is_some() && first_read == FirstRead::ReportGap;
        let seen_tick = hub.heartbeat_tick.load(Ordering::Acquire);
        let expiry = Expiry::first(request.expires_at, hub.config.max_stream_age, &notify);
        Subscription {
            last_event_id: request.last_event_id,
            start_id: now_id.map(String::into_boxed_str),
            hub,
            topics,
            names: request.topics,
            access,
            reads_all,
            expiry,
            resolve,
            replay,
            earliest: request.earliest,
            from_store: None,
            #[cfg(feature = "cluster")]
            from_redis: None,
            waiters,
            notify,
            cursor,
            batch_from: cursor,
            start: committed,
            opening: Some(opening.into()),
            first_read,
            last_sent: Instant::now(),
            generation,
            seen_tick,
            read_at: None,
            more: false,
            decoder: None,
            _slot: slot,
        }
    }

    /// The id this stream starts after: the resume id it was given, `earliest`, or the id of
    /// the newest event when it opened (`earliest` if there was none). Mercure sends it as the
    /// `Last-Event-ID` response header, so a client can resume from it later.
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().build();
    /// let sub = hub.subscribe(ssehub::SubscribeRequest::topics(["a"])?)?;
    /// assert_eq!(sub.starts_after(), "earliest");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starts_after(&self) -> String {
        match (&self.last_event_id, self.earliest) {
            (Some(id), _) => id.clone(),
            (None, true) => "earliest".into(),
            (None, false) => {
                super::resume::id_after(&self.hub, self.start, self.start_id.as_deref())
            }
        }
    }

    /// Waits until there is something to send and appends it to `out`: the stream's opening, a
    /// `gap` notice, a batch of events, or a heartbeat, as wire bytes (what the server writes).
    /// Returns `Err` when the stream must end (see [`recv`](Self::recv) for why). Use either
    /// this or [`recv`](Self::recv) on one subscription, not both.
    ///
    /// A subscriber that is behind (its last batch held several events) first waits out the
    /// batch window: under load, events then leave in one write instead of one write each. One
    /// that keeps up sends each event at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a future dropped before it completes has taken nothing from the log.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::{Event, Hub, SubscribeRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::builder().build();
    /// let mut sub = hub.subscribe(SubscribeRequest::topics(["news"])?)?;
    /// let mut out = Vec::new();
    /// sub.next(&mut out).await?; // the opening: `: ssehub` and `retry:`
    /// let id = hub.publish_one(Event::new("hello").with_topic("news")?).await?;
    /// out.clear();
    /// sub.next(&mut out).await?;
    /// assert_eq!(out.concat(), format!("id: {id}\ndata: hello\n\n").into_bytes());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next(&mut self, out: &mut Vec<Bytes>) -> Result<(), End> {
        let next = self.next_batch(out).await;
        if let Err(end) = &next {
            tracing::debug!(reason = %end, cursor = self.cursor, "stream ends");
        }
        next
    }

    async fn next_batch(&mut self, out: &mut Vec<Bytes>) -> Result<(), End> {
        if let Some(id) = self.resolve.then(|| self.last_event_id.clone()).flatten() {
            // Cleared only once answered: a cancelled call asks again.
            // Boxed, as the Redis replay's read below: a resume is rare, and these futures
            // (Redis, the store) inlined made every stream's task ~2 KiB bigger, idle or not.
            let found = Box::pin(self.find_resume(&id)).await;
            self.resolve = false;
            match found {
                Ok(Some(seq)) => self.cursor = seq,
                // Older than memory: replayed from Redis first.
                #[cfg(feature = "cluster")]
                Ok(None) if self.from_redis.is_some() => {}
                Ok(_) => {
                    self.replay = false;
                    let mut opening = self.opening.take().unwrap_or_default().to_vec();
                    opening.extend_from_slice(&unknown_id_gap(&self.hub, &id));
                    self.opening = Some(opening.into());
                    self.cursor = 0;
                    self.first_read = FirstRead::Quiet;
                }
                Err(e) => {
                    tracing::warn!("resume: {e}");
                    return Err(End::History);
                }
            }
        }
        if let Some(opening) = self.opening.take() {
            out.push(opening);
            return Ok(());
        }
        if let Some(at) = self.read_at.take() {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
        }
        loop {
            if let Some(end) = self.expiry.as_ref().and_then(|e| e.due()) {
                return Err(end);
            }
            #[cfg(feature = "cluster")]
            if self.from_redis.is_some() {
                let events = Box::pin(self.read_redis(out)).await?;
                if !out.is_empty() {
                    self.sent(events);
                    return Ok(());
                }
                continue;
            }
            if let Some(upto) = self.from_store.take() {
                let events = self.read_store(upto, out).await?;
                if !out.is_empty() {
                    self.sent(events);
                    return Ok(());
                }
                continue;
            }
            let events = self.read(out)?;
            self.check_history(out)?;
            if self.from_store.is_some() {
                continue;
            }
            if !out.is_empty() {
                self.sent(events);
                return Ok(());
            }
            if self.more {
                // The read stopped at its scan limit with nothing for us yet (a template that
                // matches rarely): go on, letting other tasks run in between.
                tokio::task::yield_now().await;
                continue;
            }
            for (t, w) in self.topics.iter().zip(&self.waiters) {
                t.enroll(w);
            }
            // Read again now that a publish would wake us: nothing falls between the two.
            let events = self.read(out)?;
            self.check_history(out)?;
            if self.from_store.is_some() {
                continue;
            }
            if !out.is_empty() {
                self.sent(events);
                return Ok(());
            }
            if self.more {
                continue;
            }
            if self.hub.is_closing() {
                return Err(End::Shutdown);
            }
            if self.heartbeat_due() {
                out.push(Bytes::from_static(HEARTBEAT));
                self.last_sent = Instant::now();
                return Ok(());
            }
            // Woken by a publish, shutdown, the hub's heartbeat tick, or the stream's end time.
            self.notify.notified().await;
        }
    }

    /// Ends the stream, dropping what it just read, once the cluster's history changed: its
    /// client resumes with its last id and is told of the loss with a `gap`.
    fn check_history(&self, out: &mut Vec<Bytes>) -> Result<(), End> {
        if generation(&self.hub) == self.generation {
            return Ok(());
        }
        out.clear();
        Err(End::HistoryLost)
    }

    /// Where a resume from an id the log did not hold starts: an event a cluster's reader
    /// brings in shortly (or Redis replays), or a publisher's id in the store from before this
    /// stream began.
    async fn find_resume(&mut self, id: &str) -> Result<Option<u64>, crate::store::StoreError> {
        #[cfg(feature = "cluster")]
        if self.hub.cluster.is_some() {
            return self.find_clustered(id).await;
        }
        let found = self.hub.store.find_id(id).await?;
        Ok(found.filter(|seq| *seq <= self.start))
    }

    /// Takes what is after the cursor into `out`; returns how many events that was.
    fn read(&mut self, out: &mut Vec<Bytes>) -> Result<usize, End> {
        let before = out.len();
        let read = self.hub.log.read(
            &self.topics,
            &self.access,
            self.cursor,
            BATCH_BYTES,
            BATCH_EVENTS,
            out,
        );
        self.more = read.more;
        if read.evicted && self.hub.durable {
            // The store still has what memory let go: read that first, then come back here.
            out.truncate(before);
            self.replayed(true);
            self.from_store = Some(read.evicted_up_to.min(self.hub.log.committed()));
            return Ok(0);
        }
        if read.evicted {
            self.report_loss(out, before)?;
        }
        if read.cursor > self.cursor {
            self.replayed(false);
            self.batch_from = self.cursor;
            self.first_read = FirstRead::Done;
            self.cursor = read.cursor;
        }
        // No backlog check here: a subscriber being read for has room to write. The writer
        // checks while a write is blocked, which is when falling behind shows.
        Ok(out.len() - before)
    }
}

mod delivered;
mod end;
mod losses;
mod pacing;
pub use end::End;
#[cfg(feature = "cluster")]
mod redis;

impl Drop for Subscription {
    fn drop(&mut self) {
        tracing::debug!(cursor = self.cursor, "stream closed");
        for t in &self.topics {
            t.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
