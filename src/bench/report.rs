//! The bench's report: a table for people, JSON for scripts.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http1::Url;
use super::mercure::Scenario;
use super::timeline::Timeline;
use super::{lock, BenchArgs, Shared};

/// Memory and CPU time of a process, read from `/proc`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcessSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl ProcessSample {
    /// Reads `/proc/<pid>`; zeros if the process is gone.
    pub fn of(pid: u32) -> ProcessSample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        let hz = clock_ticks_per_second();
        ProcessSample {
            rss_kib,
            cpu_seconds: ticks as f64 / hz,
        }
    }
}

/// The unit of `/proc/PID/stat`'s CPU times.
#[cfg(unix)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Without `/proc` there is nothing to scale; the usual value keeps the arithmetic sane.
#[cfg(not(unix))]
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// This process's CPU time so far, seconds (0 where the platform does not say).
#[cfg(unix)]
pub(super) fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// This process's CPU time so far, seconds (0 where the platform does not say).
#[cfg(not(unix))]
pub(super) fn self_cpu_seconds() -> f64 {
    0.0
}

/// What the report is made from.
pub(super) struct Inputs<'a> {
    pub(super) args: &'a BenchArgs,
    pub(super) url: &'a Url,
    pub(super) publish_url: &'a Url,
    pub(super) scenario: Scenario,
    pub(super) shared: &'a Shared,
    pub(super) expected: u64,
    pub(super) publish_start: Duration,
    pub(super) publish_end: Duration,
    pub(super) hub: (
        Option<ProcessSample>,
        Option<ProcessSample>,
        Option<ProcessSample>,
    ),
    pub(super) bench_cpu: f64,
    pub(super) timeline: Timeline,
}

/// A bench run's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's name in charts and comparisons (`--label`).
    pub label: Option<String>,
    /// What was measured: native or Mercure, with the selector, topic and privacy.
    pub scenario: Scenario,
    /// The stream subscribed to (`{topic}` not filled in, a subscriber token shown as `TOKEN`).
    pub url: String,
    /// Where events were published (`{topic}` not filled in).
    pub publish_url: String,
    /// How each stream's connection was opened: `fresh` (the stream is its first request) or
    /// `reused` (after a plain GET for `first_request` on the same connection).
    pub connections: &'static str,
    /// With reused connections, the path requested before each stream.
    pub first_request: Option<String>,
    /// Subscriber connections.
    pub subscribers: Subscribers,
    /// Publishing.
    pub events: Events,
    /// Deliveries checked by the subscribers.
    pub deliveries: Deliveries,
    /// Publish-to-receive latency, milliseconds.
    pub latency_ms: Percentiles,
    /// Publish request latency (request sent to answer read), milliseconds.
    pub publish_latency_ms: Percentiles,
    /// The delivery latency distribution: `[milliseconds, fraction of deliveries at or below]`
    /// at fixed fractions (finer towards the tail), for charts.
    pub latency_cdf: Vec<[f64; 2]>,
    /// The same for publish requests.
    pub publish_latency_cdf: Vec<[f64; 2]>,
    /// Deliveries, publishes and open streams every 100 ms.
    pub timeline: Timeline,
    /// The server, when `--pid` was given.
    pub server: Option<Server>,
    /// The load generator itself.
    pub bench: BenchSelf,
}

/// Subscriber connections.
#[derive(Debug, Clone, Serialize)]
pub struct Subscribers {
    /// Asked for.
    pub requested: usize,
    /// Got a 200 `text/event-stream`.
    pub connected: usize,
    /// Answered with anything else.
    pub refused_total: usize,
    /// Those answers, by `"<status> <media type>"` (`503 text/plain`).
    pub refused: std::collections::BTreeMap<String, usize>,
    /// Got no answer, or lost the reused connection before the stream's answer.
    pub failed_total: usize,
    /// What went wrong, by kind.
    pub failed: std::collections::BTreeMap<String, usize>,
    /// Streams the server ended (or that failed) before the run ended.
    pub ended_by_server: usize,
}

/// Publishing.
#[derive(Debug, Clone, Serialize)]
pub struct Events {
    /// Asked for.
    pub requested: u64,
    /// Accepted (2xx).
    pub published: u64,
    /// Refused, by status (or connection error).
    pub failed: std::collections::BTreeMap<String, u64>,
    /// Bytes of data per event.
    pub size: u64,
    /// Accepted events per second, first request to last answer.
    pub per_second: f64,
    /// Seconds from the first publish to the last answer.
    pub seconds: f64,
}

/// Deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct Deliveries {
    /// Deliveries owed: for each connected subscriber, the published events its topic (or
    /// Mercure selector) matches.
    pub expected: u64,
    /// Distinct events received, all subscribers together.
    pub received: u64,
    /// Expected but never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicated: u64,
    /// Received before an earlier event of the same publisher.
    pub out_of_order: u64,
    /// Events whose data was not a bench event.
    pub malformed: u64,
    /// Received per second, first publish to last delivery.
    pub per_second: f64,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

/// The measured server.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Its process id.
    pub pid: u32,
    /// Before the subscribers connected.
    pub before: ProcessSample,
    /// With every subscriber connected, idle, before publishing.
    pub connected: ProcessSample,
    /// At the end.
    pub after: ProcessSample,
    /// RSS growth per connected subscriber, bytes.
    pub rss_per_connection_bytes: f64,
    /// CPU seconds the server spent during publishing and delivery.
    pub cpu_seconds_under_load: f64,
}

/// The load generator.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSelf {
    /// Worker threads.
    pub threads: u64,
    /// CPU seconds it spent.
    pub cpu_seconds: f64,
}

fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// The fractions a CDF is sampled at: every percent, then every 0.1% and 0.01% of the tail.
fn cdf_fractions() -> impl Iterator<Item = f64> {
    let percent = (0..100).map(|i| i as f64 / 100.0);
    let tenths = (1..10).map(|i| 0.99 + i as f64 / 1000.0);
    let hundredths = (1..10).map(|i| 0.999 + i as f64 / 10_000.0);
    percent.chain(tenths).chain(hundredths).chain([1.0])
}

fn cdf(h: &hdrhistogram::Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<[f64; 2]> = Vec::with_capacity(120);
    for q in cdf_fractions() {
        let ms = h.value_at_quantile(q) as f64 / 1000.0;
        // One point per latency: the highest fraction at it is the CDF's value there.
        match points.last_mut() {
            Some(last) if last[0] == ms => last[1] = q,
            _ => points.push([ms, q]),
        }
    }
    points
}

impl Report {
    pub(super) fn new(i: Inputs<'_>) -> Report {
        let s = i.shared;
        let received = s.received.load(Ordering::Acquire);
        let published = s.published.load(Ordering::Acquire);
        let publish_seconds = (i.publish_end - i.publish_start).as_secs_f64();
        let last_us = s.last_receive_us.load(Ordering::Acquire);
        let delivery_seconds = (last_us as f64 / 1e6 - i.publish_start.as_secs_f64()).max(1e-9);
        let connected = s.connected.load(Ordering::Acquire);
        let server = match (i.args.pid, i.hub) {
            (Some(pid), (Some(before), Some(connected_sample), Some(after))) => Some(Server {
                pid,
                before,
                connected: connected_sample,
                after,
                rss_per_connection_bytes: if connected > 0 {
                    (connected_sample.rss_kib as f64 - before.rss_kib as f64) * 1024.0
                        / connected as f64
                } else {
                    0.0
                },
                cpu_seconds_under_load: after.cpu_seconds - connected_sample.cpu_seconds,
            }),
            _ => None,
        };
        let refused = lock(&s.refused).clone();
        let failed = lock(&s.failed).clone();
        let (latency, publish_latency) = (lock(&s.latency), lock(&s.publish_latency));
        Report {
            label: i.args.label.clone(),
            scenario: i.scenario,
            url: format!("http://{}{}", i.url.authority, i.url.target),
            publish_url: format!("http://{}{}", i.publish_url.authority, i.publish_url.target),
            connections: if i.args.reuse_connection.is_some() {
                "reused"
            } else {
                "fresh"
            },
            first_request: i.args.reuse_connection.clone(),
            subscribers: Subscribers {
                requested: i.args.subscribers,
                connected,
                refused_total: refused.values().sum(),
                refused,
                failed_total: failed.values().sum(),
                failed,
                ended_by_server: s.ended_by_server.load(Ordering::Acquire),
            },
            events: Events {
                requested: i.args.events,
                published,
                failed: lock(&s.publish_failed).clone(),
                size: i.args.size,
                per_second: if publish_seconds > 0.0 {
                    published as f64 / publish_seconds
                } else {
                    0.0
                },
                seconds: publish_seconds,
            },
            deliveries: Deliveries {
                expected: i.expected,
                received,
                lost: i.expected.saturating_sub(received),
                duplicated: s.duplicated.load(Ordering::Acquire),
                out_of_order: s.out_of_order.load(Ordering::Acquire),
                malformed: s.malformed.load(Ordering::Acquire),
                per_second: if received > 0 {
                    received as f64 / delivery_seconds
                } else {
                    0.0
                },
            },
            latency_ms: percentiles(&latency),
            publish_latency_ms: percentiles(&publish_latency),
            latency_cdf: cdf(&latency),
            publish_latency_cdf: cdf(&publish_latency),
            timeline: i.timeline,
            server,
            bench: BenchSelf {
                threads: i.args.threads,
                cpu_seconds: i.bench_cpu,
            },
        }
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let grouped = |total: usize, groups: &std::collections::BTreeMap<String, usize>| {
            let groups: Vec<String> = groups.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            if groups.is_empty() {
                format!("{total}")
            } else {
                format!("{total} ({})", groups.join(", "))
            }
        };
        let failed: Vec<String> = self
            .events
            .failed
            .iter()
            .map(|(k, v)| format!("{v} x {k}"))
            .collect();
        let d = &self.deliveries;
        // The scenario first, so a figure copied from here says what it measured.
        let _ = writeln!(
            t,
            "ssehub bench: {}, {}",
            self.url,
            match &self.first_request {
                Some(path) => format!(
                    "each stream on a reused connection (GET {path} first, then the stream)"
                ),
                None => "each stream on a fresh connection".into(),
            }
        );
        let _ = writeln!(t, "scenario     {}", self.scenario.describe());
        let _ = writeln!(t, "publishing   to {}", self.publish_url);
        let sub = &self.subscribers;
        let _ = writeln!(
            t,
            "subscribers  {} requested, {} connected, refused {}, failed {}, ended by server: {}",
            sub.requested,
            sub.connected,
            grouped(sub.refused_total, &sub.refused),
            grouped(sub.failed_total, &sub.failed),
            sub.ended_by_server
        );
        let _ =
            writeln!(
            t,
            "events       {} requested, {} published ({} B each), failed: {}, {:.0} published/s",
            self.events.requested,
            self.events.published,
            self.events.size,
            if failed.is_empty() { "none".into() } else { failed.join(", ") },
            self.events.per_second
        );
        let _ = writeln!(
            t,
            "deliveries   {} expected, {} received, {} lost, {} duplicated, {} out of order, {} malformed",
            d.expected, d.received, d.lost, d.duplicated, d.out_of_order, d.malformed
        );
        let _ = writeln!(t, "throughput   {:.0} deliveries/s", d.per_second);
        for (name, p) in [
            ("latency ms", &self.latency_ms),
            ("publish ms", &self.publish_latency_ms),
        ] {
            let _ = writeln!(
                t,
                "{name:<12} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} samples)",
                p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
            );
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                t,
                "server       pid {}: RSS {} KiB before, {} KiB connected ({:.0} B per connection), {} KiB after; {:.2} CPU s under load",
                s.pid, s.before.rss_kib, s.connected.rss_kib, s.rss_per_connection_bytes, s.after.rss_kib, s.cpu_seconds_under_load
            );
        }
        let _ = writeln!(
            t,
            "bench        {} thread(s), {:.2} CPU s",
            self.bench.threads, self.bench.cpu_seconds
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdf_rises_to_the_largest_sample() {
        let mut h = super::super::histogram();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let points = cdf(&h);
        assert!(
            points
                .windows(2)
                .all(|w| w[0][0] < w[1][0] && w[0][1] < w[1][1]),
            "{points:?}"
        );
        assert_eq!(points.last().unwrap()[1], 1.0);
        assert_eq!(points.last().unwrap()[0], h.max() as f64 / 1000.0);
        // The median is where half the samples are: 5 ms, to the histogram's precision.
        let median = points.iter().find(|p| p[1] >= 0.5).unwrap()[0];
        assert!((median - 5.0).abs() < 0.01, "{median}");
        assert!(cdf(&super::super::histogram()).is_empty());
    }
}
