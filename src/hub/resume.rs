//! Where a subscription starts: a resume id read against the history (the hub's own ids and
//! publishers' ids), the `gap` notice for one it does not hold, and the timer that ends a
//! stream when its token expires.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Inner;
use crate::event::encode_without_id;
use crate::id::IdMatch;

/// The id an event's bytes carry (their first line, `id: ...`).
pub(super) fn id_line(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(b"id: ")?;
    let end = memchr::memchr(b'\n', rest)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// A stream's end (its token's `exp`) and the task that wakes it then; dropping it (the stream
/// ended first) stops the task.
pub(super) struct Expiry {
    pub(super) at: Instant,
    timer: Option<tokio::task::AbortHandle>,
}

impl Expiry {
    pub(super) fn new(at: std::time::Instant, notify: &Arc<Notify>) -> Box<Expiry> {
        let at = Instant::from_std(at);
        // Without a runtime at hand (a library caller outside tokio) the end is seen at the
        // stream's next wake-up instead.
        let timer = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let notify = notify.clone();
            runtime
                .spawn(async move {
                    tokio::time::sleep_until(at).await;
                    notify.notify_one();
                })
                .abort_handle()
        });
        Box::new(Expiry { at, timer })
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}

/// Where a resume from `id` starts: a hub id of this history, or a retained publisher's id.
pub(super) fn resume_point(hub: &Inner, id: &str, committed: u64) -> Option<u64> {
    let seq = match hub.epoch.parse(id) {
        IdMatch::Current(seq) => Some(seq),
        _ => hub.log.seq_of(id),
    };
    seq.filter(|seq| *seq <= committed)
}

/// The `gap` notice for a resume id this history does not hold.
pub(super) fn unknown_id_gap(hub: &Inner, id: &str) -> Bytes {
    // A publisher's id may look like another history's (`order-42`); only our own shape counts.
    let reason = match hub.epoch.parse(id) {
        IdMatch::OtherHistory if crate::event::check_id(id).is_err() => "other-history",
        _ => "unknown-id",
    };
    let data = serde_json::json!({
        "reason": reason,
        "lastEventId": id,
        "message": "this id is not from this hub's current history; replaying every retained event",
    });
    encode_without_id("gap", &data.to_string())
}
