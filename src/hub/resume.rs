//! Where a subscription starts: a resume id read against the history (the hub's own ids and
//! publishers' ids), the `gap` notice for one it does not hold, and the timer that ends a
//! stream when its token expires or it reaches its maximum age.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{End, Inner};
use crate::event::encode_without_id;
use crate::id::IdMatch;

/// The id an event's bytes carry (their first line, `id: ...`).
pub(super) fn id_line(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(b"id: ")?;
    let end = memchr::memchr(b'\n', rest)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// A stream's end (its token's `exp`, or its maximum age) and the task that wakes it then;
/// dropping it (the stream ended first) stops the task.
pub(super) struct Expiry {
    at: Instant,
    /// Why the stream ends then.
    end: End,
    timer: Option<tokio::task::AbortHandle>,
}

impl Expiry {
    /// The earlier of a token's end and the stream's maximum age (80 to 100% of `max_age`,
    /// drawn per stream, so that the clients of a hub started together do not all come back
    /// in the same second). One timer either way.
    pub(super) fn first(
        token_end: Option<std::time::Instant>,
        max_age: Option<Duration>,
        notify: &Arc<Notify>,
    ) -> Option<Box<Expiry>> {
        let aged = max_age.map(|age| std::time::Instant::now() + jittered(age));
        let (at, end) = match (token_end, aged) {
            (Some(token), Some(aged)) if aged < token => (aged, End::MaxAge),
            (Some(token), _) => (token, End::Expired),
            (None, Some(aged)) => (aged, End::MaxAge),
            (None, None) => return None,
        };
        Some(Expiry::new(at, end, notify))
    }

    /// The reason to end now, once the time has come.
    pub(super) fn due(&self) -> Option<End> {
        (self.at <= Instant::now()).then_some(self.end)
    }

    fn new(at: std::time::Instant, end: End, notify: &Arc<Notify>) -> Box<Expiry> {
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
        Box::new(Expiry { at, end, timer })
    }
}

/// 80 to 100% of `age`, at random (a fixed 90% if the system has no randomness to give).
fn jittered(age: Duration) -> Duration {
    let permille = getrandom::u64().map_or(100, |r| r % 201);
    age.mul_f64((800 + permille) as f64 / 1000.0)
}

impl Drop for Expiry {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}

/// "Now": the log's newest readable sequence number and, in a cluster, the id that resumes
/// right after it on any hub, read together. A single hub makes its id from the number, and
/// only when asked ([`id_after`]).
pub(super) fn now(hub: &Inner) -> (u64, Option<String>) {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &hub.cluster {
        let (seq, id) = cluster.now(|| hub.log.committed());
        return (seq, Some(id));
    }
    (hub.log.committed(), None)
}

/// The id a resume from after sequence number `seq` uses, as [`now`] gave them: the
/// cluster's, or this hub's own (`earliest` before any event). The one place a number
/// becomes an id a client sees.
pub(super) fn id_after(hub: &Inner, seq: u64, cluster_id: Option<&str>) -> String {
    match cluster_id {
        Some(id) => id.to_string(),
        None if seq == 0 => "earliest".into(),
        None => hub.epoch.id(seq),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_end_wins_with_its_reason_and_ages_are_jittered() {
        let notify = Arc::new(Notify::new());
        let now = std::time::Instant::now();
        let hour = Duration::from_secs(3600);
        let token_first = Expiry::first(Some(now), Some(hour), &notify).unwrap();
        assert_eq!(token_first.end, End::Expired);
        let age_first = Expiry::first(Some(now + 2 * hour), Some(hour), &notify).unwrap();
        assert_eq!(age_first.end, End::MaxAge);
        assert!(Expiry::first(None, None, &notify).is_none());
        let draws: Vec<_> = (0..1000).map(|_| jittered(hour)).collect();
        assert!(draws.iter().all(|d| *d >= hour * 8 / 10 && *d <= hour));
        assert!(
            draws.iter().any(|d| *d < hour * 85 / 100)
                && draws.iter().any(|d| *d > hour * 95 / 100)
        );
    }
}
