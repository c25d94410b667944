//! What a subscription does when events it is owed left memory: read them from the store, or
//! tell the subscriber of the loss (a `gap` event on a resume, the end of a stream that fell
//! behind).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{End, FirstRead, Subscription, BATCH_BYTES, BATCH_EVENTS};
use crate::event::encode_without_id;
use crate::hub::resume::id_line;
use crate::store::{ReadLimit, Scope};

impl Subscription {
    /// Events owed to this subscriber left the history. A resume is told with a `gap` event
    /// (inserted at `at`, before `first`, the first event it does get); a subscriber past its
    /// first read fell behind and is ended.
    pub(super) fn report_loss(&mut self, out: &mut Vec<Bytes>, at: usize) -> Result<(), End> {
        match self.first_read {
            FirstRead::ReportGap => {
                let message = if self.last_event_id.is_some() {
                    "events after lastEventId on these topics left the history before this resume"
                } else {
                    "events published since this stream opened left the history before it could send them"
                };
                let data = serde_json::json!({
                    "reason": "evicted",
                    "lastEventId": self.last_event_id,
                    // The id of the first event it does get, as it will see it.
                    "resumedAt": out.get(at).and_then(|b| id_line(b)),
                    "message": message,
                });
                out.insert(at, encode_without_id("gap", &data.to_string()));
                Ok(())
            }
            FirstRead::Quiet => Ok(()),
            FirstRead::Done => {
                out.truncate(at);
                self.hub.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                Err(End::Lagged)
            }
        }
    }

    /// Takes the events after the cursor up to `upto` (or a batch of them) from the store.
    pub(super) async fn read_store(
        &mut self,
        upto: u64,
        out: &mut Vec<Bytes>,
    ) -> Result<usize, End> {
        let before = out.len();
        let replay = self
            .hub
            .store
            .read_after(
                if self.reads_all {
                    Scope::All
                } else {
                    Scope::Topics(&self.names)
                },
                self.cursor,
                upto,
                ReadLimit {
                    events: BATCH_EVENTS,
                    bytes: BATCH_BYTES,
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!("replay: {e}");
                End::History
            })?;
        let access = &self.access;
        out.extend(
            replay
                .events
                .into_iter()
                .filter(|e| access.admits_event(false, &e.topics, e.private))
                .map(|e| e.bytes),
        );
        if replay.lost {
            self.report_loss(out, before)?;
        }
        // Whatever follows (more from the store, or memory) is ready now.
        self.more = true;
        if replay.cursor > self.cursor {
            self.first_read = FirstRead::Done;
            self.cursor = replay.cursor;
        }
        Ok(out.len() - before)
    }
}
