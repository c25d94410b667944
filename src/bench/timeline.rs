//! The run's timeline: the bench's own counters (deliveries, publishes, connected streams) read
//! by one ticker every 100 ms. Sampling shared atomics costs the hot paths nothing: they already
//! add to those counters, and no per-event lock or clock read is added.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{lock, Shared};

/// How often the counters are read.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);

/// Counters sampled every `interval_ms` while the bench runs, one entry per sample (columns, so
/// a recorded report stays short).
///
/// ```
/// let t = ssehub::bench::Timeline::default();
/// assert!(t.t_ms.is_empty());
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// The interval asked for, milliseconds (a sample's real time is in `t_ms`).
    pub interval_ms: u64,
    /// When each sample was taken, milliseconds since the bench started (before connecting).
    pub t_ms: Vec<u64>,
    /// Deliveries received since the previous sample.
    pub deliveries: Vec<u64>,
    /// Events accepted by the server since the previous sample.
    pub published: Vec<u64>,
    /// Streams open at the sample (connected, not yet ended by the server).
    pub connected: Vec<u64>,
}

/// The ticker: samples until [`Recorder::finish`].
pub(super) struct Recorder {
    shared: Arc<Shared>,
    timeline: Arc<Mutex<Timeline>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub(super) fn start(shared: Arc<Shared>) -> Recorder {
        let timeline = Arc::new(Mutex::new(Timeline {
            interval_ms: INTERVAL.as_millis() as u64,
            ..Timeline::default()
        }));
        let (s, t) = (shared.clone(), timeline.clone());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(INTERVAL);
            // A late tick (a busy runtime) is taken late, not made up in a burst.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut last = (0, 0);
            loop {
                ticker.tick().await;
                last = sample(&s, &mut lock(&t), last);
            }
        });
        Recorder {
            shared,
            timeline,
            task,
        }
    }

    /// Stops the ticker and returns the timeline, with a last sample at the end.
    pub(super) fn finish(self) -> Timeline {
        self.task.abort();
        let mut t = lock(&self.timeline);
        let sum = |v: &[u64]| v.iter().sum::<u64>();
        let last = (sum(&t.deliveries), sum(&t.published));
        sample(&self.shared, &mut t, last);
        std::mem::take(&mut *t)
    }
}

/// Appends one sample; returns the running totals for the next one.
fn sample(s: &Shared, t: &mut Timeline, (received, published): (u64, u64)) -> (u64, u64) {
    let now_received = s.received.load(Ordering::Acquire);
    let now_published = s.published.load(Ordering::Acquire);
    let open = s
        .connected
        .load(Ordering::Acquire)
        .saturating_sub(s.ended_by_server.load(Ordering::Acquire));
    t.t_ms.push(s.start.elapsed().as_millis() as u64);
    t.deliveries.push(now_received.saturating_sub(received));
    t.published.push(now_published.saturating_sub(published));
    t.connected.push(open as u64);
    (now_received, now_published)
}
