//! A relay's state: counters the relay task updates and `/metrics` reads, and the `upstream`
//! event that tells a topic's subscribers about it.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Upstream;

/// One relay's state at a moment.
///
/// ```
/// let relays = ssehub::upstream::Upstreams::default();
/// assert!(relays.status().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct UpstreamStatus {
    /// The hub's topic.
    #[serde(skip)]
    pub topic: String,
    /// The upstream's URL.
    pub url: String,
    /// A stream from the upstream is open.
    pub connected: bool,
    /// Connection attempts after the first one.
    pub reconnects: u64,
    /// Events relayed into the topic.
    pub events: u64,
    /// When the last event was relayed, in milliseconds since the Unix epoch (none yet: `None`).
    pub last_event_ms: Option<u64>,
    /// Why the last connection failed or ended, if it did.
    pub error: Option<String>,
}

/// What the relay task updates.
#[derive(Debug)]
pub(crate) struct State {
    topic: String,
    url: String,
    connected: AtomicBool,
    attempts: AtomicU64,
    events: AtomicU64,
    /// 0: none yet.
    last_event_ms: AtomicU64,
    error: Mutex<Option<String>>,
}

impl State {
    pub(crate) fn new(up: &Upstream) -> State {
        State {
            topic: up.topic.as_str().to_string(),
            url: up.url.to_string(),
            connected: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            events: AtomicU64::new(0),
            last_event_ms: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    /// A connection is being tried.
    pub(crate) fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.set_error(None);
        }
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = error;
        }
    }

    /// `n` events were relayed just now.
    pub(crate) fn relayed(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_event_ms.store(now, Ordering::Relaxed);
    }

    pub(crate) fn status(&self) -> UpstreamStatus {
        let last = self.last_event_ms.load(Ordering::Relaxed);
        UpstreamStatus {
            topic: self.topic.clone(),
            url: self.url.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.attempts.load(Ordering::Relaxed).saturating_sub(1),
            events: self.events.load(Ordering::Relaxed),
            last_event_ms: (last > 0).then_some(last),
            error: self.error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// The data of the `upstream` event.
pub(crate) fn event_json(status: &UpstreamStatus) -> String {
    serde_json::to_string(status).unwrap_or_default()
}

/// Prometheus text for `statuses` (nothing for none).
pub(crate) fn render_metrics(statuses: &[UpstreamStatus], out: &mut String) {
    if statuses.is_empty() {
        return;
    }
    type Value = fn(&UpstreamStatus) -> String;
    let families: [(&str, &str, &str, Value); 4] = [
        (
            "ssehub_upstream_connected",
            "1 while the relay holds an open stream from the upstream (--upstream).",
            "gauge",
            |s| u8::from(s.connected).to_string(),
        ),
        (
            "ssehub_upstream_reconnects_total",
            "Connection attempts to the upstream after the first.",
            "counter",
            |s| s.reconnects.to_string(),
        ),
        (
            "ssehub_upstream_events_total",
            "Events relayed from the upstream into its topic.",
            "counter",
            |s| s.events.to_string(),
        ),
        (
            "ssehub_upstream_last_event_timestamp_seconds",
            "When the last event was relayed from the upstream (Unix time; 0: none yet).",
            "gauge",
            |s| format!("{:.3}", s.last_event_ms.unwrap_or(0) as f64 / 1000.0),
        ),
    ];
    for (name, help, kind, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in statuses {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",url=\"{}\"}} {}",
                label(&s.topic),
                label(&s.url),
                value(s)
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_each_upstream_with_escaped_labels() {
        let up: Upstream = "dev\"ice=http://10.0.0.7/event".parse().unwrap();
        let state = State::new(&up);
        state.attempt();
        state.attempt();
        state.set_connected(true);
        state.relayed(3);
        let mut out = String::new();
        render_metrics(&[state.status()], &mut out);
        let labels = "{topic=\"dev\\\"ice\",url=\"http://10.0.0.7/event\"}";
        assert!(
            out.contains(&format!("ssehub_upstream_connected{labels} 1\n")),
            "{out}"
        );
        assert!(out.contains(&format!("ssehub_upstream_reconnects_total{labels} 1\n")));
        assert!(out.contains(&format!("ssehub_upstream_events_total{labels} 3\n")));
        let json = event_json(&state.status());
        assert!(json.starts_with("{\"url\":\"http://10.0.0.7/event\",\"connected\":true,\"reconnects\":1,\"events\":3,\"last_event_ms\":"), "{json}");
    }
}
