//! The log's ring of every event, read by `*` and URI-template subscriptions: kept only from the
//! first such subscription on, and filled then with what the log retains.

use std::sync::Arc;

use super::{Entry, Log, Meta, Order, TopicLog};
use crate::hub::locks::lock;
use crate::hub::locks::{read, write};

impl Order {
    /// Starts keeping the ring of every event: fills it with the retained events (from their
    /// first topic's ring, which holds each of them), in sequence order.
    pub(super) fn fill_all(&mut self) {
        let mut all = write!(self.all.ring);
        all.entries.clear();
        for r in &self.retained {
            let Some(first) = r.placement.rings().first() else {
                continue;
            };
            let ring = read!(first.ring);
            let Some(e) = ring
                .after(r.seq)
                .checked_sub(1)
                .and_then(|i| ring.entries.get(i))
            else {
                continue;
            };
            let meta = e.meta.clone().unwrap_or_else(|| {
                let topics = r.placement.rings().iter().map(|t| t.name.clone()).collect();
                Arc::new(Meta {
                    topics,
                    private: e.private,
                })
            });
            let end = all.appended() + e.bytes.len() as u64;
            all.entries.push_back(Entry {
                seq: e.seq,
                bytes: e.bytes.clone(),
                end,
                private: e.private,
                meta: Some(meta),
            });
        }
        // Everything before the oldest retained event is gone (for this ring's readers too).
        let oldest = self.retained.front().map_or(self.next_seq, |r| r.seq);
        all.evicted_up_to = all.evicted_up_to.max(oldest.saturating_sub(1));
        drop(all);
        self.keeps_all = true;
    }
}

impl Log {
    /// The ring of every event, for `*` and URI-template subscriptions. The first call starts
    /// keeping it: it is filled with the events retained so far (once, under the publish lock;
    /// about a millisecond per 10,000 events), and every publish from then on adds to it.
    pub(crate) fn all(&self) -> Arc<TopicLog> {
        let mut order = lock!(self.order);
        if !order.keeps_all {
            order.fill_all();
        }
        self.all.clone()
    }

    /// The topics and privacy of a retained event, if the ring of every event is kept.
    pub(crate) fn meta_of(&self, seq: u64) -> Option<Arc<Meta>> {
        let ring = read!(self.all.ring);
        let i = ring.after(seq);
        let e = ring.entries.get(i.checked_sub(1)?)?;
        (e.seq == seq).then(|| e.meta.clone()).flatten()
    }
}
