//! Pacing a stream: the batch window after a busy write, heartbeats when quiet, and the cut-off
//! for a subscriber too far behind.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::{End, Subscription};

impl Subscription {
    /// Bytes are going out: note when. If more than one event was waiting, events arrive
    /// faster than this stream writes: open the batch window so the next ones go out together.
    /// One event alone means the stream keeps up, and the next event goes out at once; so does
    /// the next batch of a read cut at its limits (a replay), which is ready already.
    pub(super) fn sent(&mut self, events: usize) {
        let now = Instant::now();
        self.last_sent = now;
        let window = self.hub.config.batch_window;
        if events > 1 && !self.more && !window.is_zero() {
            self.read_at = Some(now + window);
        }
    }

    /// A heartbeat is due when the hub ticked since we last looked and this stream has been
    /// quiet for half a period (the tick comes every half period, so the gap stays within one).
    pub(super) fn heartbeat_due(&mut self) -> bool {
        let Some(every) = self.hub.config.heartbeat else {
            return false;
        };
        let tick = self.hub.heartbeat_tick.load(Ordering::Acquire);
        if tick == self.seen_tick {
            return false;
        }
        self.seen_tick = tick;
        self.last_sent.elapsed() >= every / 2
    }

    /// Ends the stream if it is too far behind: more unsent bytes or events (published since it
    /// began) than the hub allows, or events it was owed already left the history. Writers call
    /// this while a write is blocked; [`next`](Self::next) ends the stream itself when events
    /// it was owed left the history.
    ///
    /// # Errors
    ///
    /// [`End::Lagged`]: end the stream; the client resumes with its last event id.
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().build();
    /// let sub = hub.subscribe(ssehub::SubscribeRequest::topics(["a"])?)?;
    /// assert!(sub.check_backlog().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_backlog(&self) -> Result<(), End> {
        let from = self.cursor.max(self.start);
        let backlog = self.hub.log.backlog(&self.topics, &self.access, from);
        let config = &self.hub.config;
        if backlog.evicted
            || backlog.bytes > config.max_backlog_bytes
            || backlog.events > config.max_backlog_events(self.hub.durable)
        {
            self.hub.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            return Err(End::Lagged);
        }
        Ok(())
    }
}
