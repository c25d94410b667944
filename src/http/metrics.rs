//! `GET /metrics`: the Prometheus text, rendered with `prometheus-client` from a registry built
//! once per app. The hub's counters are read at scrape time by a [`Collector`] (one
//! `Hub::stats()` call: no per-stream work, so a scrape costs the same at 20,000 streams as at
//! one); what runs beside the hub adds its own through [`ExtraMetrics`].

mod hub;
mod refusals;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder};
use prometheus_client::registry::Registry;

pub(crate) use refusals::count as count_refusal;

use super::pending::Pending;
use super::{ApiError, AppState};
use crate::hub::{Histogram, Hub};

/// Sources of more `GET /metrics` lines, from what runs beside the hub (the upstream relay, a
/// cluster's reader): text appended when the page is built ([`add`](Self::add)), or a
/// `prometheus-client` [`Collector`] put in the page's registry
/// ([`add_collector`](Self::add_collector)). The HTTP layer knows nothing of them.
///
/// ```
/// use ssehub::http::prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
/// use ssehub::http::prometheus_client::metrics::MetricType;
///
/// #[derive(Debug)]
/// struct Lag;
/// impl Collector for Lag {
///     fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
///         e.encode_descriptor("my_lag_seconds", "Lag.", None, MetricType::Gauge)?
///             .encode_gauge(&0.5)
///     }
/// }
///
/// let mut config = ssehub::http::HttpConfig::default();
/// config.extra_metrics.add(|out| out.push_str("my_gauge 1\n"));
/// config.extra_metrics.add_collector(Lag);
/// ```
#[derive(Clone, Default)]
pub struct ExtraMetrics {
    text: Vec<TextSource>,
    collectors: Vec<Arc<dyn Collector>>,
}

/// One text source of [`ExtraMetrics`].
type TextSource = Arc<dyn Fn(&mut String) + Send + Sync>;

impl ExtraMetrics {
    /// Adds a source of Prometheus text, appended to the page as it is.
    pub fn add(&mut self, source: impl Fn(&mut String) + Send + Sync + 'static) {
        self.text.push(Arc::new(source));
    }

    /// Adds a collector, asked for its metrics at each scrape.
    pub fn add_collector(&mut self, collector: impl Collector) {
        self.collectors.push(Arc::new(collector));
    }
}

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExtraMetrics({} text sources, {} collectors)",
            self.text.len(),
            self.collectors.len()
        )
    }
}

/// A shared collector, registered as a boxed one.
#[derive(Debug)]
struct Shared(Arc<dyn Collector>);

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// Which publish API a request used: the label of `ssehub_publish_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishApi {
    /// `POST /publish` with a JSON body.
    Json,
    /// `POST /publish` with a raw body.
    Raw,
    /// Mercure's form, `POST /.well-known/mercure`.
    Form,
}

/// Publish latencies, per API: from the handler's start to the answer (the hub acknowledged).
#[derive(Debug, Default)]
pub(crate) struct PublishTimes([Histogram; 3]);

impl PublishTimes {
    const LABELS: [&'static str; 3] = ["json", "raw", "form"];

    pub(crate) fn observe(&self, api: PublishApi, took: Duration) {
        self.0[api as usize].observe(took);
    }
}

/// The `/metrics` page of one app: its registry, and the text sources appended after it.
pub(crate) struct Metrics {
    registry: Registry,
    text: Vec<TextSource>,
    /// Publish latencies, which the publish handlers record.
    pub(crate) publish: Arc<PublishTimes>,
}

impl Metrics {
    pub(crate) fn new(hub: Hub, pending: Arc<Pending>, extra: &ExtraMetrics) -> Metrics {
        let publish = Arc::new(PublishTimes::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(hub::HubCollector {
            hub,
            pending,
            publish: publish.clone(),
        }));
        for c in &extra.collectors {
            registry.register_collector(Box::new(Shared(c.clone())));
        }
        Metrics {
            registry,
            text: extra.text.clone(),
            publish,
        }
    }

    /// The page.
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut body, &self.registry)?;
        for source in &self.text {
            source(&mut body);
        }
        Ok(body)
    }
}

/// `GET /metrics`.
pub(crate) async fn handler(State(app): State<AppState>) -> Response {
    match app.metrics.render() {
        Ok(body) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be rendered",
        )
        .into_response(),
    }
}
