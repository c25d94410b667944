//! What a stream's writer reports after a write: the bytes it wrote and, for a sampled event,
//! the delivery lag (see `meters.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Subscription;

impl Subscription {
    /// Tells the hub that the last batch from [`next`](Self::next) (`bytes` long) is written to
    /// the client: it counts the bytes, and, if the batch holds a sampled event (one in 64),
    /// the time since that event became readable ([`Hub::delivery_lag`](crate::Hub::delivery_lag)).
    /// A server calls this after each write; nothing breaks if it does not.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = ssehub::Hub::builder().build();
    /// let mut sub = hub.subscribe(ssehub::SubscribeRequest::topics(["a"])?)?;
    /// let mut out = Vec::new();
    /// sub.next(&mut out).await?;
    /// sub.delivered(out.iter().map(|b| b.len()).sum());
    /// assert!(hub.stats().bytes_out > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn delivered(&mut self, bytes: usize) {
        let meters = &self.hub.meters;
        // Each stream adds on its own line of the counter (by its address): no one line that
        // every writer contends for.
        meters
            .bytes_out
            .add(Arc::as_ptr(&self.notify) as usize, bytes as u64);
        if let Some(at) = self.hub.log.probe.stamped(self.batch_from, self.cursor) {
            meters.delivery_lag.observe(at.elapsed());
        }
        self.batch_from = self.cursor;
    }

    /// Counts a resumed subscription once, at its first read: from the store (memory had let
    /// the events after its id go) or from memory.
    pub(super) fn replayed(&mut self, from_store: bool) {
        if std::mem::take(&mut self.replay) {
            let meters = &self.hub.meters;
            let counter = match from_store {
                true => &meters.replays_store,
                false => &meters.replays_memory,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}
