//! HTTP: the routes, and the server that drives them.
//!
//! Every route is an axum handler, so [`router`] mounts the whole hub in any axum app. The
//! `ssehub` binary serves with [`serve`], which reads each connection's first request head itself:
//! an HTTP/1 `GET /events` is answered by a small purpose-built writer that owns the socket (an
//! idle stream then costs about a task and a socket, not a full HTTP connection state), and
//! everything else goes to hyper and the same router.
//!
//! Policy lives here (status codes, `--when-full`, the publish token); the hub holds the state.
//!
//! ```
//! use ssehub::http::{router, HttpConfig, WhenFull};
//! let hub = ssehub::Hub::builder().build();
//! let config = HttpConfig { when_full: WhenFull::Retry, ..HttpConfig::default() };
//! let app: axum::Router = router(hub, config);
//! ```

mod active_subscriptions;
mod connection;
mod cors;
mod fast;
mod hyper_path;
mod jwt;
mod message_end;
mod metrics;
mod one_request;
mod pages;
mod pending;
mod per_ip;
mod publish;
pub mod query;
mod server;
mod subscribe;
#[cfg(feature = "tls")]
mod tls;

use std::str::FromStr;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use cors::check_origin;
pub use hyper_path::Protocol;
pub use jwt::{JwtAlg, JwtKey};
pub use metrics::ExtraMetrics;
/// The metrics crate `/metrics` is rendered with, for [`ExtraMetrics::add_collector`].
pub use prometheus_client;
pub use server::{raise_open_file_limit, serve, Listeners, ServeError};
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsError};

use crate::event::Topic;
use crate::hub::Hub;

/// What a full hub answers a new subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// `503 Service Unavailable` with `Retry-After` (the default).
    #[default]
    Status503,
    /// A `200` stream that sends only `retry: <ms>` and ends, so an `EventSource` comes back.
    Retry,
}

impl FromStr for WhenFull {
    type Err = String;
    fn from_str(s: &str) -> Result<WhenFull, String> {
        match s {
            "503" => Ok(WhenFull::Status503),
            "retry" => Ok(WhenFull::Retry),
            _ => Err(format!("expected 503 or retry, got {s:?}")),
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest publish body, in bytes; larger gets `413`.
    pub max_body: usize,
    /// How long a publish body may take to arrive; slower gets `408`.
    pub body_timeout: std::time::Duration,
    /// Bearer token that lets a request publish, on any listener.
    pub publish_token: Option<String>,
    /// Key that verifies publishers' JWTs: a valid token publishes to the topics its
    /// `mercure.publish` claim lists (`*`: all).
    pub publisher_jwt_key: Option<JwtKey>,
    /// Key that verifies subscribers' JWTs: a valid token's `mercure.subscribe` claim says which
    /// topics' private events it may receive, and the stream ends at its `exp`. Without it, the
    /// hub does not look at subscribers' tokens: every subscriber gets public events only.
    pub subscriber_jwt_key: Option<JwtKey>,
    /// Refuse subscriptions without a valid subscriber token (`401`). Off by default: anonymous
    /// subscribers get public events.
    pub subscribers_need_token: bool,
    /// Announce subscriptions to the Mercure front as private updates on
    /// `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, and list them at
    /// `GET /.well-known/mercure/subscriptions` (Mercure's active subscriptions). Off by default.
    pub mercure_subscriptions: bool,
    /// Anyone who reaches the router may publish, without a token. Off by default: behind a
    /// reverse proxy every request would qualify. (Publishes that come in on a loopback
    /// [`Listeners::publish`] need no token either way.)
    pub publish_open: bool,
    /// What a full hub answers.
    pub when_full: WhenFull,
    /// Streams one client address may hold open; past it, `429`. 0: no limit.
    pub max_clients_per_ip: usize,
    /// Origins allowed cross-origin access, exactly as browsers send them (see [`check_origin`]).
    pub cors_origins: Vec<String>,
    /// Connections waiting for a request head (new, or kept alive between requests), at most;
    /// past it, the one that has waited longest is closed. Applies to [`serve`].
    pub max_pending_connections: usize,
    /// Connections from one address waiting for a request head, at most; past it, that
    /// address's new connections get `429`. 0: no limit. Applies to [`serve`].
    pub max_pending_per_ip: usize,
    /// The topic `GET /event` streams (`default` by default): the path a device's page opens
    /// with `new EventSource('event')`, so such a page works on the hub unchanged.
    ///
    /// ```
    /// let config = ssehub::http::HttpConfig {
    ///     event_topic: ssehub::Topic::new("log")?,
    ///     ..Default::default()
    /// };
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub event_topic: Topic,
    /// More lines for `GET /metrics`, from what runs beside the hub (the upstream relay).
    pub extra_metrics: ExtraMetrics,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body: 1 << 20,
            body_timeout: std::time::Duration::from_secs(30),
            publish_token: None,
            publisher_jwt_key: None,
            subscriber_jwt_key: None,
            subscribers_need_token: false,
            mercure_subscriptions: false,
            publish_open: false,
            when_full: WhenFull::Status503,
            max_clients_per_ip: 0,
            cors_origins: Vec::new(),
            max_pending_connections: 4096,
            max_pending_per_ip: 1024,
            event_topic: Topic::default_topic(),
            extra_metrics: ExtraMetrics::default(),
        }
    }
}

/// Set on requests that came in on a loopback publish listener ([`Listeners::publish`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishListener;

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<HttpConfig>,
    pub(crate) per_ip: Arc<per_ip::PerIp>,
    /// Connections waiting for a request head ([`serve`] only).
    pub(crate) pending: Arc<pending::Pending>,
    /// The loopback publish listener's address, if [`serve`] has one (the viewer page shows it).
    pub(crate) publish_listener: Option<std::net::SocketAddr>,
    /// Mercure's active subscriptions (used with `--mercure-subscriptions`).
    pub(crate) subscriptions: Arc<active_subscriptions::Registry>,
    /// The `/metrics` page's registry, and the publish latencies.
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub(crate) fn new(hub: Hub, config: HttpConfig) -> AppState {
        let pending =
            pending::Pending::new(config.max_pending_connections, config.max_pending_per_ip);
        AppState {
            metrics: Arc::new(metrics::Metrics::new(
                hub.clone(),
                pending.clone(),
                &config.extra_metrics,
            )),
            hub,
            per_ip: per_ip::PerIp::new(config.max_clients_per_ip),
            pending,
            publish_listener: None,
            subscriptions: Arc::new(active_subscriptions::Registry::new()),
            config: Arc::new(config),
        }
    }
}

/// The whole hub as an axum router: `GET /events`, `GET /event` (one topic, for a device's
/// page), `GET` and `POST /.well-known/mercure`
/// (Mercure's subscribe and publish), `GET /.well-known/mercure/subscriptions[/..]` (with
/// [`HttpConfig::mercure_subscriptions`]), `POST /publish`, `GET /`, `GET /healthz`,
/// `GET /readyz`, `GET /metrics`.
///
/// ```no_run
/// use ssehub::http::{router, HttpConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = ssehub::Hub::builder().build();
/// let config = HttpConfig { publish_token: Some("s3cret".into()), ..HttpConfig::default() };
/// let app = axum::Router::new().nest("/sse", router(hub, config));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn router(hub: Hub, config: HttpConfig) -> Router {
    routes(AppState::new(hub, config))
}

/// The routes over a given state (the server shares one state between them and its fast path).
pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::viewer))
        .route("/assets/viewer.js", get(pages::script))
        .route("/assets/viewer.css", get(pages::style))
        .route("/events", get(subscribe::stream))
        .route("/event", get(subscribe::stream))
        .route(subscribe::MERCURE_PATH, get(subscribe::stream))
        .route("/publish", post(publish::publish))
        .route(subscribe::MERCURE_PATH, post(publish::mercure))
        .route(active_subscriptions::PREFIX, get(active_subscriptions::api))
        .route(
            &format!("{}/{{*rest}}", active_subscriptions::PREFIX),
            get(active_subscriptions::api),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::handler))
        .layer(axum::middleware::from_fn_with_state(
            cors::Gate::new(&state.config.cors_origins),
            cors::gate,
        ))
        .with_state(state)
}

/// The events a `POST /publish` with this query string and body would publish (JSON when
/// `json`), or its one-line refusal, with the default limits (64 topics per event). For fuzzing
/// and tools; the route uses the same code.
///
/// ```
/// let events = ssehub::http::publish_request_events("topic=a&event=status", false, b"up").unwrap();
/// assert_eq!(events[0].name(), Some("status"));
/// assert!(ssehub::http::publish_request_events("", true, b"{\"data\": 1, \"event\": \"a\\nb\"}").is_err());
/// ```
pub fn publish_request_events(
    query: &str,
    json: bool,
    body: &[u8],
) -> Result<Vec<crate::event::Event>, String> {
    let max_topics = crate::hub::HubConfig::default().max_topics_per_event;
    publish::request_events(query, json, body, max_topics)
        .map(|(events, _)| events)
        .map_err(|e| e.reason)
}

/// The subscription a `GET /events` with this query string and `Last-Event-ID` would open, or its
/// one-line refusal. For fuzzing and tools; the route uses the same code.
///
/// ```
/// let req = ssehub::http::subscribe_request_from("topic=a&topic=b", Some(b"abc-1")).unwrap();
/// assert_eq!(req.topic_list().len(), 2);
/// ```
pub fn subscribe_request_from(
    query: &str,
    last_event_id: Option<&[u8]>,
) -> Result<crate::hub::SubscribeRequest, String> {
    subscribe::subscribe_request(query, last_event_id).map_err(|e| e.reason)
}

/// The headers of every event stream.
pub(crate) const STREAM_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// A refusal: a status and a one-line reason, as `text/plain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(reason: impl ToString) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, reason.to_string())
    }

    /// Every refusal is logged at debug as it is answered (axum's path and the fast path): at
    /// info a flood of them would drown the log.
    pub(crate) fn log(&self) {
        metrics::count_refusal(self);
        tracing::debug!(status = self.status.as_u16(), reason = %self.reason, "refused");
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status, format!("{}\n", self.reason)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `GET /readyz`: `200 ok` while the hub takes publishes, else `503` with the reason (see
/// [`Hub::readiness`]), for load balancers; `/healthz` only says the process answers.
async fn ready(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    match app.hub.readiness() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
            .into_response(),
    }
}
