//! The upstream relay (`--upstream TOPIC=URL`): a feed that reads a remote event stream, such
//! as a small device's `/event`, and publishes each event it receives into `TOPIC` through the
//! hub's normal publish path, keeping its event name, data and `retry`. The device then serves
//! one connection, the hub's; the hub serves every browser, with history and resume.
//!
//! ```no_run
//! use std::time::Duration;
//! use ssehub::upstream::{spawn, Upstream, UpstreamOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hub = ssehub::Hub::builder().build();
//! let device: Upstream = "device=http://192.168.1.20/event".parse().unwrap();
//! let relays = spawn(&hub, &[device], UpstreamOptions { idle_timeout: Duration::from_secs(45) });
//! let mut metrics = String::new();
//! relays.render_metrics(&mut metrics); // ssehub_upstream_connected{topic="device",...} 0
//! # }
//! ```
//!
//! ## Ids
//!
//! The hub gives every relayed event an id of its own, in its own order: an upstream's ids are
//! not reused. A device that restarts and counts from 1 again is then relayed as new events,
//! never dropped as duplicates of ids the hub has seen. The relay only remembers the upstream's
//! last id, to send it as `Last-Event-ID` when it reconnects (an upstream that keeps history,
//! such as another hub, resumes after it; the event it names, if sent again first, is skipped).
//!
//! ## Reconnecting
//!
//! One connection per upstream, at most: the next opens only after the last one closed. After
//! a stream ends, the relay waits its `retry:` (3 s until told); after a `503` or a `429`, what
//! `Retry-After` says (seconds or a date); after other errors, and when nothing (not even a comment)
//! came for the idle timeout, a backoff from `retry:` doubling up to 30 s, with jitter. The
//! topic's subscribers stay connected meanwhile: they get heartbeats, and an `upstream` event
//! (JSON: `url`, `connected`, `reconnects`, `events`, `last_event_ms`, `error`) each time the
//! relay connects or loses the upstream. Events the upstream sent while no relay was connected
//! are not relayed (a device keeps no history); the hub's own ids have no gap for them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::HubUrl;
use crate::event::Topic;
use crate::hub::Hub;

mod relay;
mod state;

use state::State;
pub use state::UpstreamStatus;

/// One `--upstream TOPIC=URL`: what to read, and where to publish it.
///
/// ```
/// let up: ssehub::upstream::Upstream = "device=http://10.0.0.7/event".parse().unwrap();
/// assert_eq!((up.topic.as_str(), up.url.to_string().as_str()), ("device", "http://10.0.0.7/event"));
/// assert!("http://10.0.0.7/event".parse::<ssehub::upstream::Upstream>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The hub's topic the events are published into.
    pub topic: Topic,
    /// The remote event stream (`http://` or `https://`; a URL without a path means `/`).
    pub url: HubUrl,
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Upstream, String> {
        // The topic ends at the last `=` before the URL's scheme (a URL's query has `=`s too).
        let scheme = s
            .find("://")
            .ok_or("expected TOPIC=URL, like device=http://10.0.0.7/event")?;
        let (topic, url) = s[..scheme]
            .rfind('=')
            .map(|at| (&s[..at], &s[at + 1..]))
            .ok_or("expected TOPIC=URL, like device=http://10.0.0.7/event")?;
        let topic = Topic::new(topic).map_err(|e| format!("topic {topic:?}: {e}"))?;
        let url: HubUrl = url.parse()?;
        Ok(Upstream { topic, url })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.topic.as_str(), self.url)
    }
}

/// How the relays behave.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    /// Reconnect when nothing, not even a comment, came for this long (a stalled upstream).
    pub idle_timeout: Duration,
}

/// The relays started by [`spawn`]: their state, for `/metrics` (and for code).
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    states: Arc<Vec<Arc<State>>>,
}

/// Starts one relay task per upstream, on the current tokio runtime; each runs until the hub
/// closes (example in the [module documentation](self)).
pub fn spawn(hub: &Hub, upstreams: &[Upstream], options: UpstreamOptions) -> Upstreams {
    let states: Vec<Arc<State>> = upstreams
        .iter()
        .map(|up| {
            let state = Arc::new(State::new(up));
            tokio::spawn(relay::run(hub.clone(), up.clone(), options, state.clone()));
            state
        })
        .collect();
    Upstreams {
        states: Arc::new(states),
    }
}

impl Upstreams {
    /// Each relay's state now, in the order given to [`spawn`].
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.states.iter().map(|s| s.status()).collect()
    }

    /// Appends the relays' state to `out` as Prometheus text (nothing without relays):
    /// `ssehub_upstream_connected`, `ssehub_upstream_reconnects_total`,
    /// `ssehub_upstream_events_total` and `ssehub_upstream_last_event_timestamp_seconds`, each
    /// labelled with `topic` and `url`.
    pub fn render_metrics(&self, out: &mut String) {
        state::render_metrics(&self.status(), out);
    }
}
