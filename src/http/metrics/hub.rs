//! The hub's metrics, read at scrape time: counters and gauges from `Hub::stats()`, the waiting
//! connections, the refusals, and the latency histograms.

use std::fmt::Result;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::super::pending::Pending;
use super::{refusals, PublishTimes};
use crate::hub::{HistogramSnapshot, Hub};

pub(super) struct HubCollector {
    pub(super) hub: Hub,
    pub(super) pending: Arc<Pending>,
    pub(super) publish: Arc<PublishTimes>,
}

impl std::fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> Result {
        f.write_str("HubCollector")
    }
}

/// A gauge with no labels.
fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// A counter with no labels; `name` without `_total` (the encoder adds it).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// A counter with one label, a sample per value.
fn counters(
    e: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    values: &[(&str, u64)],
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        m.encode_family(&[(label, *value)])?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

fn histogram(m: &mut MetricEncoder, h: &HistogramSnapshot) -> Result {
    m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

impl Collector for HubCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result {
        let s = self.hub.stats();
        let e = &mut e;
        // The names, help and order of the page before prometheus-client: dashboards and
        // alerts use them.
        gauge(e, "ssehub_clients", "Open event streams.", s.clients as u64)?;
        gauge(
            e,
            "ssehub_max_clients",
            "The limit on open event streams.",
            s.max_clients as u64,
        )?;
        counter(
            e,
            "ssehub_published",
            "Events published.",
            s.published_total,
        )?;
        counter(
            e,
            "ssehub_rejected",
            "Subscriptions refused because the hub was full.",
            s.rejected_total,
        )?;
        counter(
            e,
            "ssehub_slow_disconnects",
            "Streams ended for falling too far behind.",
            s.slow_disconnects_total,
        )?;
        gauge(e, "ssehub_topics", "Topics known.", s.topics as u64)?;
        gauge(
            e,
            "ssehub_history_events",
            "Events retained for replay in memory.",
            s.history_events as u64,
        )?;
        gauge(
            e,
            "ssehub_pending_connections",
            "Connections waiting for a request head (new, or kept alive between requests).",
            self.pending.live() as u64,
        )?;
        gauge(
            e,
            "ssehub_history_bytes",
            "Encoded bytes of the events retained for replay in memory (each event once).",
            s.history_bytes,
        )?;
        gauge(
            e,
            "ssehub_history_store_failed",
            "1 once a write to the history store failed (publishes are refused).",
            u64::from(s.store_failed),
        )?;
        if let Some(r) = s.redis {
            gauge(
                e,
                "ssehub_redis_up",
                "1 while this hub's reader reaches Redis (cluster mode).",
                u64::from(r.up),
            )?;
            counter(
                e,
                "ssehub_redis_late_events",
                "Events delivered late, out of order, because a Redis master's clock stepped back.",
                r.late_events,
            )?;
            e.encode_descriptor(
                "ssehub_redis_reader_lag_seconds",
                "How far behind Redis' clock this hub's reader has delivered everything, after its last round.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&r.lag_seconds)?;
            counter(
                e,
                "ssehub_redis_trimmed_unread",
                "Times this hub's reader fell behind Redis' trimming (its streams ended; clients got a gap).",
                r.trims,
            )?;
        }
        counter(
            e,
            "ssehub_bytes_out",
            "Event-stream bytes written to streams (without HTTP framing).",
            s.bytes_out,
        )?;
        counters(
            e,
            (
                "ssehub_replays",
                "Subscriptions that resumed from an id, by where their first events came from.",
                "source",
            ),
            &[("memory", s.replays_memory), ("store", s.replays_store)],
        )?;
        counters(
            e,
            (
                "ssehub_refusals",
                "Requests refused, by reason (every refusal answered with an error status).",
                "reason",
            ),
            &refusals::counts(),
        )?;
        let mut m = e.encode_descriptor(
            "ssehub_publish_duration_seconds",
            "Publish requests, from the handler's start to the answer (the hub acknowledged), by API.",
            None,
            MetricType::Histogram,
        )?;
        for (api, h) in PublishTimes::LABELS.iter().zip(&self.publish.0) {
            histogram(&mut m.encode_family(&[("api", *api)])?, &h.snapshot())?;
        }
        let mut m = e.encode_descriptor(
            "ssehub_delivery_lag_seconds",
            "Sampled (one event in 64): from an event being acknowledged (readable) to each stream's write of it completing.",
            None,
            MetricType::Histogram,
        )?;
        histogram(&mut m, &self.hub.delivery_lag())
    }
}
