//! `GET /events`, `GET /event` and `GET /.well-known/mercure`: reading the request, refusing it,
//! and the axum-side stream.
//!
//! The binary answers most stream requests on its fast path (`fast.rs`); the handlers here serve
//! the rest (a router mounted in someone else's app). Both read the request, check its token and
//! shape refusals with the same functions below.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;

use super::active_subscriptions::{announce_stream, to_announce, Presence};
use super::jwt::{self, SubscribeGrant};
use super::per_ip::IpGuard;
use super::query::parse_query;
use super::{ApiError, AppState, HttpConfig, WhenFull, STREAM_HEADERS};
use crate::event::Topic;
use crate::hub::{SubscribeError, SubscribeRequest, Subscription};
use crate::selector::{Selector, SelectorError, SelectorSet};

/// The most events `?tail=N` asks for (memory holds the newest 10,000 by default).
const MAX_TAIL: usize = 100_000;

/// The path of Mercure's hub: `GET` subscribes here.
pub(crate) const MERCURE_PATH: &str = "/.well-known/mercure";

/// Which stream route a request came in on: they read their query differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRoute {
    /// `GET /events`: `topic` names exact topics (none: `default`), resume with `lastEventId`.
    Events,
    /// `GET /event`: the device's stream, one topic set by the hub
    /// ([`HttpConfig::event_topic`](super::HttpConfig::event_topic)); a `topic` parameter is
    /// ignored, so a device's page moved onto the hub works unchanged.
    Event,
    /// `GET /.well-known/mercure`: `topic` holds selectors (at least one), resume with
    /// `lastEventID` (`earliest`: all history); the answer carries `Last-Event-ID`.
    Mercure,
}

impl StreamRoute {
    /// The stream route at `path`, if it is one.
    pub(crate) fn at(path: &str) -> Option<StreamRoute> {
        match path {
            "/events" => Some(StreamRoute::Events),
            "/event" => Some(StreamRoute::Event),
            MERCURE_PATH => Some(StreamRoute::Mercure),
            _ => None,
        }
    }
}

/// A stream request as either reader (the fast path, axum) has it.
pub(crate) struct StreamAsk<'a> {
    pub(crate) route: StreamRoute,
    pub(crate) query: &'a str,
    /// The `Last-Event-ID` header.
    pub(crate) last_event_id: Option<&'a [u8]>,
    /// The `Authorization` header.
    pub(crate) authorization: Option<&'a [u8]>,
    /// Every `Cookie` header.
    pub(crate) cookies: Vec<&'a [u8]>,
}

impl<'a> StreamAsk<'a> {
    /// The request as axum has it.
    fn from_headers(route: StreamRoute, query: &'a str, headers: &'a HeaderMap) -> StreamAsk<'a> {
        StreamAsk {
            route,
            query,
            last_event_id: headers.get("last-event-id").map(HeaderValue::as_bytes),
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            cookies: headers
                .get_all(header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect(),
        }
    }
}

/// Reads a stream request: its topics or selectors, where it resumes (the `Last-Event-ID` header
/// beats the query), and its subscriber token, checked (see [`subscriber_grant`]).
/// Also returns the token's `mercure.payload`, for the active-subscription announcements.
pub(crate) fn stream_request(
    ask: &StreamAsk<'_>,
    config: &HttpConfig,
) -> Result<(SubscribeRequest, Option<serde_json::Value>), ApiError> {
    let mercure = ask.route == StreamRoute::Mercure;
    let mut topics = Vec::new();
    let mut selectors = Vec::new();
    let mut last_event_id = None;
    let mut query_token = None;
    let mut tail = None;
    for (key, value) in parse_query(ask.query).map_err(ApiError::bad_request)? {
        match key.as_str() {
            // Compiled after the token is checked: a refused request costs no template.
            "topic" if mercure => selectors.push(value),
            "topic" if ask.route == StreamRoute::Event => {}
            "topic" => topics.push(Topic::new(&value).map_err(ApiError::bad_request)?),
            "lastEventID" if mercure => last_event_id = Some(value),
            "lastEventId" if !mercure => last_event_id = Some(value),
            "tail" => {
                tail = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= MAX_TAIL)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "tail must be a number of events, 0 to {MAX_TAIL} (got {value:?})"
                            ))
                        })?,
                )
            }
            // The first, as `jwt::token` (publish) takes it.
            "authorization" if query_token.is_none() => query_token = Some(value),
            // Browsers and libraries add cache-busters and the like: not an error on this route.
            _ => {}
        }
    }
    if let Some(header) = ask.last_event_id {
        // A header that is not UTF-8 cannot be one of our ids; it still means "resume", from an
        // unknown point, so the client is told about the gap.
        last_event_id = Some(String::from_utf8_lossy(header).into_owned());
    }
    let token = jwt::token_from(
        ask.authorization,
        || query_token,
        ask.cookies.iter().copied(),
    );
    let grant = subscriber_grant(config, token)?;
    let mut request = if mercure {
        if selectors.is_empty() {
            return Err(ApiError::bad_request(
                "at least one topic selector is required (?topic=...)",
            ));
        }
        let selectors = selectors
            .iter()
            .map(|s| Selector::parse(s).map_err(selector_refusal))
            .collect::<Result<Vec<_>, _>>()?;
        SubscribeRequest::selectors(SelectorSet::new(selectors))
    } else if ask.route == StreamRoute::Event {
        SubscribeRequest::new(vec![config.event_topic.clone()])
    } else {
        SubscribeRequest::new(topics)
    };
    if let Some(n) = tail {
        request = request.tail(n);
    }
    request = match last_event_id {
        Some(id) if mercure && id == "earliest" => request.from_earliest(),
        Some(id) => request.resume_after(id),
        None => request,
    };
    let mut payload = None;
    if let Some(grant) = grant {
        if let Some(private) = grant.private {
            request = request.allow_private(private);
        }
        if let Some(at) = grant.expires_at {
            request = request.expires_at(at);
        }
        payload = grant.payload;
    }
    Ok((request, payload))
}

/// A selector refused: the client's mistake (`400`), or the hub's bound on templates in use
/// (`503`: the same request may pass later).
fn selector_refusal(e: SelectorError) -> ApiError {
    match e {
        SelectorError::TooManyTemplates(_) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: e.to_string(),
            retry_after: Some(5),
        },
        e => ApiError::bad_request(e),
    }
}

/// Reads `?topic=..&lastEventId=..` and the `Last-Event-ID` header (which wins) as an anonymous
/// `GET /events` on a hub with no subscriber key.
pub(crate) fn subscribe_request(
    query: &str,
    last_event_id_header: Option<&[u8]>,
) -> Result<SubscribeRequest, ApiError> {
    let ask = StreamAsk {
        route: StreamRoute::Events,
        query,
        last_event_id: last_event_id_header,
        authorization: None,
        cookies: Vec::new(),
    };
    stream_request(&ask, &HttpConfig::default()).map(|(request, _)| request)
}

/// What a subscriber's token grants. Without a subscriber key the hub does not look at tokens
/// (as Mercure's reference hub): every subscriber is anonymous and gets public events only.
/// With one, a token is verified (`401` with the reason if it fails) and its claims apply; no
/// token is anonymous, unless `--subscribers-need-token` (`401`).
fn subscriber_grant(
    config: &HttpConfig,
    token: Option<String>,
) -> Result<Option<SubscribeGrant>, ApiError> {
    let unauthorized = |reason: String| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    match (&config.subscriber_jwt_key, token) {
        (Some(key), Some(token)) => SubscribeGrant::from_token(key, &token)
            .map(Some)
            .map_err(unauthorized),
        (_, None) if config.subscribers_need_token => Err(unauthorized(
            "this hub needs a subscriber token (--subscribers-need-token): send it as Authorization: Bearer, the authorization query parameter or the mercureAuthorization cookie".into(),
        )),
        // Possible in a library setup only: the binary refuses the flag without a key.
        (None, Some(_)) if config.subscribers_need_token => Err(unauthorized(
            "this hub needs a subscriber token but has no key to verify it (--subscriber-jwt-key)"
                .into(),
        )),
        _ => Ok(None),
    }
}

/// `Last-Event-ID` for a stream's answer: the id it starts after, as a valid header value (an
/// id a client sent may hold anything; ours never need this).
pub(crate) fn last_event_id_value(subscription: &Subscription) -> String {
    subscription
        .starts_after()
        .chars()
        .map(|c| if matches!(c, ' '..='~') { c } else { '?' })
        .collect()
}

/// `Retry-After` (whole seconds, at least 1) for the hub's `--retry` milliseconds.
fn retry_after_secs(retry_ms: u64) -> u64 {
    retry_ms.div_ceil(1000).max(1)
}

/// How a refused subscription is answered.
pub(crate) enum Refusal {
    /// A status with a reason.
    Error(ApiError),
    /// `--when-full retry`: a 200 stream carrying only this.
    RetryStream(Bytes),
}

pub(crate) fn refusal(error: SubscribeError, when_full: WhenFull, retry_ms: u64) -> Refusal {
    match error {
        SubscribeError::Full { .. } if when_full == WhenFull::Retry => {
            Refusal::RetryStream(Bytes::from(format!("retry: {retry_ms}\n\n")))
        }
        SubscribeError::Full { .. } | SubscribeError::Closing => Refusal::Error(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: error.to_string(),
            retry_after: Some(retry_after_secs(retry_ms)),
        }),
        SubscribeError::TooManyTopics { .. } => Refusal::Error(ApiError::bad_request(error)),
    }
}

/// Counts a stream against its address's limit (`--max-clients-per-ip`): `429` past it.
pub(crate) fn per_address(app: &AppState, ip: IpAddr) -> Result<IpGuard, ApiError> {
    app.per_ip.try_acquire(ip).ok_or_else(|| ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        reason: format!(
            "too many streams from {ip} (at most {} per address); retry later",
            app.per_ip.max()
        ),
        retry_after: Some(retry_after_secs(app.hub.config().retry_ms)),
    })
}

/// `GET /events`, `GET /event` and `GET /.well-known/mercure` on the axum side: the route is
/// the path's (as the fast path finds it).
pub(crate) async fn stream(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(route) = StreamRoute::at(uri.path()) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not a stream route").into_response();
    };
    let ask = StreamAsk::from_headers(route, uri.query().unwrap_or(""), &headers);
    serve(&app, peer, &ask)
}

fn serve(
    app: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ask: &StreamAsk<'_>,
) -> Response {
    let (request, payload) = match stream_request(ask, &app.config) {
        Ok(asked) => asked,
        Err(e) => return e.into_response(),
    };
    let announced = to_announce(app, ask.route, &request);
    // Mounted in an app that does not say who the client is, there is no per-address limit.
    let per_ip = match peer.map(|Extension(ConnectInfo(addr))| per_address(app, addr.ip())) {
        Some(Err(e)) => return e.into_response(),
        Some(Ok(guard)) => Some(guard),
        None => None,
    };
    match app.hub.subscribe(request) {
        Ok(subscription) => {
            let last_event_id = (ask.route == StreamRoute::Mercure)
                .then(|| last_event_id_value(&subscription))
                .and_then(|v| HeaderValue::try_from(v).ok());
            let presence = announce_stream(app, announced, payload);
            let mut response = stream_response(subscription, (per_ip, presence));
            if let Some(value) = last_event_id {
                response.headers_mut().insert("last-event-id", value);
            }
            response
        }
        Err(e) => match refusal(e, app.config.when_full, app.hub.config().retry_ms) {
            Refusal::Error(e) => e.into_response(),
            Refusal::RetryStream(bytes) => with_stream_headers(Body::from(bytes)),
        },
    }
}

fn with_stream_headers(body: Body) -> Response {
    let mut response = Response::new(body);
    for (name, value) in STREAM_HEADERS {
        response
            .headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// `held` lives as long as the stream: the address's count, the subscription's announcement.
/// The body is the hyper path's, with its backlog cut-off (`hyper_path.rs`).
fn stream_response(
    subscription: Subscription,
    held: (Option<IpGuard>, Option<Presence>),
) -> Response {
    with_stream_headers(super::hyper_path::watched_body(subscription, held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{JwtAlg, JwtKey};

    fn ask<'a>(route: StreamRoute, query: &'a str, header: Option<&'a [u8]>) -> StreamAsk<'a> {
        StreamAsk {
            route,
            query,
            last_event_id: header,
            authorization: None,
            cookies: Vec::new(),
        }
    }

    #[test]
    fn both_routes_read_their_own_query() {
        let config = HttpConfig::default();
        let read = |a: &StreamAsk<'_>| stream_request(a, &config).map(|(r, _)| r);
        let mercure = read(&ask(
            StreamRoute::Mercure,
            "topic=a&lastEventID=earliest",
            None,
        ));
        assert_eq!(
            mercure.unwrap(),
            SubscribeRequest::topics(["a"]).unwrap().from_earliest()
        );
        // The header wins; `lastEventId` is /events' spelling, not Mercure's.
        let header = read(&ask(
            StreamRoute::Mercure,
            "topic=a&lastEventID=q",
            Some(b"h"),
        ));
        assert_eq!(header.unwrap().last_event_id.as_deref(), Some("h"));
        let other = read(&ask(StreamRoute::Mercure, "topic=a&lastEventId=q", None));
        assert_eq!(other.unwrap().last_event_id, None);
        let events = read(&ask(StreamRoute::Events, "lastEventId=q", None)).unwrap();
        assert_eq!(
            events,
            SubscribeRequest::topics(["default"])
                .unwrap()
                .resume_after("q")
        );
        let none = read(&ask(StreamRoute::Mercure, "", None)).unwrap_err();
        assert_eq!(none.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_device_route_streams_its_one_topic() {
        assert_eq!(StreamRoute::at("/event"), Some(StreamRoute::Event));
        let config = HttpConfig {
            event_topic: Topic::new("log").unwrap(),
            ..HttpConfig::default()
        };
        // A `topic` parameter does not pick another topic; resuming works as on /events.
        let (request, _) = stream_request(
            &ask(StreamRoute::Event, "topic=x&lastEventId=q", None),
            &config,
        )
        .unwrap();
        assert_eq!(
            request,
            SubscribeRequest::topics(["log"]).unwrap().resume_after("q")
        );
        let (request, _) = stream_request(
            &ask(StreamRoute::Event, "", Some(b"h")),
            &HttpConfig::default(),
        )
        .unwrap();
        assert_eq!(
            request,
            SubscribeRequest::topics(["default"])
                .unwrap()
                .resume_after("h")
        );
    }

    #[test]
    fn a_token_grants_private_topics_and_an_end() {
        let config = HttpConfig {
            subscriber_jwt_key: Some(JwtKey::from_flag("s3cret", JwtAlg::Hs256).unwrap()),
            ..HttpConfig::default()
        };
        let claims = serde_json::json!({"exp": 4_000_000_000u64, "mercure": {"subscribe": ["a"]}});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let cookie = format!("x=y; mercureAuthorization={token}");
        let mut a = ask(StreamRoute::Events, "topic=a", None);
        a.cookies.push(cookie.as_bytes());
        let (request, _) = stream_request(&a, &config).unwrap();
        assert!(request.private.is_some() && request.expires_at.is_some());
        // Without a key the same token is not looked at.
        let (request, _) = stream_request(&a, &HttpConfig::default()).unwrap();
        assert!(request.private.is_none() && request.expires_at.is_none());
    }
}
