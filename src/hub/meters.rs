//! Cheap meters the hub keeps for `/metrics`: atomics only, nothing that takes a lock on the
//! publish or fan-out path. The HTTP layer reads them at scrape time (see [`Hub::delivery_lag`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Hub;

/// The upper bounds of the latency histograms' buckets, in seconds: 100 µs to 10 s.
///
/// ```
/// assert_eq!(ssehub::hub::BUCKETS.last(), Some(&10.0));
/// ```
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// A latency histogram of atomic counters: observing is three relaxed additions, no lock, so
/// it may sit on a hot path. Buckets are [`BUCKETS`] (and `+Inf`).
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// What a histogram holds at one moment, as Prometheus shows it.
///
/// ```
/// let lag = ssehub::Hub::builder().build().delivery_lag();
/// assert_eq!((lag.count, lag.buckets.len()), (0, ssehub::hub::BUCKETS.len()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations in this bucket alone)`, not cumulative, the
    /// bounds of [`BUCKETS`]; observations above the last bound count only in `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            buckets: BUCKETS
                .iter()
                .copied()
                .zip(counts.iter().copied())
                .collect(),
            count: counts.iter().sum(),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// One event in this many is stamped with the instant it became readable (see [`Probe`]).
const PROBE_EVERY: u64 = 64;
/// Stamps kept: a stream that is up to this many probes behind still finds its event's.
const PROBE_SLOTS: usize = 8;

/// The instants at which sampled events (one sequence number in [`PROBE_EVERY`]) became
/// readable, for the delivery lag. The publisher stamps (two stores per batch at most, none for
/// most batches); a writer looks a stamp up only when its batch holds a sampled event.
#[derive(Debug)]
pub(crate) struct Probe {
    base: Instant,
    slots: [(AtomicU64, AtomicU64); PROBE_SLOTS],
}

impl Default for Probe {
    fn default() -> Probe {
        Probe {
            base: Instant::now(),
            slots: Default::default(),
        }
    }
}

impl Probe {
    /// The sampled sequence number in `(after, upto]`, if any (the newest one).
    fn sampled(after: u64, upto: u64) -> Option<u64> {
        let seq = upto / PROBE_EVERY * PROBE_EVERY;
        (seq > after && seq > 0).then_some(seq)
    }

    fn slot(&self, seq: u64) -> &(AtomicU64, AtomicU64) {
        &self.slots[(seq / PROBE_EVERY) as usize % PROBE_SLOTS]
    }

    /// Events `(after, upto]` become readable now: stamps the sampled one among them. Called
    /// before they are readable, so a reader never sees the event without its stamp.
    pub(crate) fn stamp(&self, after: u64, upto: u64) {
        let Some(seq) = Probe::sampled(after, upto) else {
            return;
        };
        let (at_seq, nanos) = self.slot(seq);
        let since = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Cleared first, so a reader racing this write sees a mismatch rather than a wrong time.
        at_seq.store(0, Ordering::Release);
        nanos.store(since, Ordering::Release);
        at_seq.store(seq, Ordering::Release);
    }

    /// When the sampled event in `(after, upto]` became readable, if there is one and its stamp
    /// is still kept.
    pub(crate) fn stamped(&self, after: u64, upto: u64) -> Option<Instant> {
        let seq = Probe::sampled(after, upto)?;
        let (at_seq, nanos) = self.slot(seq);
        if at_seq.load(Ordering::Acquire) != seq {
            return None;
        }
        let since = nanos.load(Ordering::Acquire);
        (at_seq.load(Ordering::Acquire) == seq).then(|| self.base + Duration::from_nanos(since))
    }
}

/// A counter split over cache lines: many streams' writers add to it at once without all
/// contending for one line.
#[derive(Debug, Default)]
pub(crate) struct Spread([Padded; 8]);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Spread {
    /// Adds `n` on the line `key` picks (any number; the same key, the same line).
    pub(crate) fn add(&self, key: usize, n: u64) {
        self.0[(key >> 7) % 8].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// The hub's meters beside its counters (see [`Stats`](super::Stats)).
#[derive(Debug, Default)]
pub(crate) struct Meters {
    /// Event-stream bytes handed to streams' sockets.
    pub(crate) bytes_out: Spread,
    /// Sampled: from an event becoming readable to a stream's write of it completing.
    pub(crate) delivery_lag: Histogram,
    /// Resumed subscriptions whose first events came from memory.
    pub(crate) replays_memory: AtomicU64,
    /// Resumed subscriptions whose first events came from the store.
    pub(crate) replays_store: AtomicU64,
}

impl Hub {
    /// The delivery lag so far: for one event in 64, the time from its becoming readable (a
    /// publish is acknowledged then, or once durable with a store) to each stream's write of it
    /// completing ([`Subscription::delivered`](super::Subscription::delivered)).
    ///
    /// ```
    /// let hub = ssehub::Hub::builder().build();
    /// assert_eq!(hub.delivery_lag().count, 0);
    /// ```
    pub fn delivery_lag(&self) -> HistogramSnapshot {
        self.inner.meters.delivery_lag.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[5], (0.005, 1));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 2);
        assert!((s.sum - 60.00305).abs() < 1e-6);
    }

    #[test]
    fn a_probe_finds_the_stamp_of_the_sampled_event_in_a_range() {
        let p = Probe::default();
        p.stamp(0, 10);
        assert_eq!(p.stamped(0, 10), None, "no sampled event in 1..=10");
        p.stamp(60, 70);
        assert!(p.stamped(63, 64).is_some());
        assert!(p.stamped(0, 100).is_some());
        assert_eq!(p.stamped(64, 100), None, "64 was written before");
        // Eight probes later the slot holds another event.
        p.stamp(64 * 9 - 1, 64 * 9);
        assert_eq!(p.stamped(63, 64), None);
    }
}
