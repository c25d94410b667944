//! `GET /events`: reading the request, refusing it, and the axum-side stream.
//!
//! The binary answers most `GET /events` on its fast path (`fast.rs`); this handler serves the
//! rest (a router mounted in someone else's app, a request on a reused keep-alive connection).
//! Both read the request and shape refusals with the same functions below.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};

use super::per_ip::IpGuard;
use super::query::parse_query;
use super::{ApiError, AppState, WhenFull, STREAM_HEADERS};
use crate::event::Topic;
use crate::hub::{SubscribeError, SubscribeRequest, Subscription};

/// Reads `?topic=..&lastEventId=..` and the `Last-Event-ID` header (which wins).
pub(crate) fn subscribe_request(
    query: &str,
    last_event_id_header: Option<&[u8]>,
) -> Result<SubscribeRequest, ApiError> {
    let mut topics = Vec::new();
    let mut last_event_id = None;
    for (key, value) in parse_query(query).map_err(ApiError::bad_request)? {
        match key.as_str() {
            "topic" => topics.push(Topic::new(&value).map_err(ApiError::bad_request)?),
            "lastEventId" => last_event_id = Some(value),
            // Browsers and libraries add cache-busters and the like: not an error on this route.
            _ => {}
        }
    }
    if let Some(header) = last_event_id_header {
        // A header that is not UTF-8 cannot be one of our ids; it still means "resume", from an
        // unknown point, so the client is told about the gap.
        last_event_id = Some(String::from_utf8_lossy(header).into_owned());
    }
    let request = SubscribeRequest::new(topics);
    Ok(match last_event_id {
        Some(id) => request.resume_after(id),
        None => request,
    })
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

pub(crate) async fn events(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let header = headers.get("last-event-id").map(|v| v.as_bytes());
    let request = match subscribe_request(query.as_deref().unwrap_or(""), header) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    // Mounted in an app that does not say who the client is, there is no per-address limit.
    let per_ip = match peer.map(|Extension(ConnectInfo(addr))| per_address(&app, addr.ip())) {
        Some(Err(e)) => return e.into_response(),
        Some(Ok(guard)) => Some(guard),
        None => None,
    };
    match app.hub.subscribe(request) {
        Ok(subscription) => stream_response(subscription, per_ip),
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

fn stream_response(subscription: Subscription, per_ip: Option<IpGuard>) -> Response {
    // The address's count is held as long as the body (the stream) lives.
    let stream =
        futures_util::stream::unfold((subscription, per_ip), |(mut sub, per_ip)| async move {
            let mut out = Vec::new();
            sub.next(&mut out).await.ok()?;
            Some((Ok::<_, Infallible>(concat(out)), (sub, per_ip)))
        });
    with_stream_headers(Body::from_stream(stream))
}

/// One frame for the body: a single event as is, several copied together.
fn concat(mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        all.extend_from_slice(&p);
    }
    all.freeze()
}
