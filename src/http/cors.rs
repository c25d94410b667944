//! `--cors-origin`: cross-origin access for exact origins only. An allowed origin is echoed back
//! (never `*`), with credentials allowed, so a page on that origin can use `EventSource` (also
//! `withCredentials`) and `fetch` the publish endpoint after a preflight. Other origins get no
//! CORS headers, and their preflights a `403`.
//!
//! The router's requests go through tower-http's [`CorsLayer`], for listed origins only ([`gate`]).
//! The stream fast path writes its response heads itself, so it keeps the two small helpers
//! below ([`allowed`], [`response_headers`]); they must give the same headers as the layer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use super::{ApiError, AppState};

/// Checks an origin given to `--cors-origin`: `scheme://host[:port]`, nothing more.
///
/// ```
/// use ssehub::http::check_origin;
/// assert_eq!(check_origin("https://App.example.com").unwrap(), "https://app.example.com");
/// assert!(check_origin("*").is_err());
/// assert!(check_origin("https://example.com/").is_err());
/// ```
pub fn check_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Err(
            "\"*\" is not accepted: list exact origins, like https://app.example.com".into(),
        );
    }
    let lower = origin.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@', ' '])
        || rest.chars().any(char::is_control)
    {
        return Err(format!(
            "{origin:?} must be scheme://host[:port], with no path"
        ));
    }
    Ok(lower)
}

/// The request's `Origin`, if it is one of the allowed ones.
pub(crate) fn allowed<'a>(app: &AppState, origin: Option<&'a [u8]>) -> Option<&'a str> {
    listed(&app.config.cors_origins, origin)
}

fn listed<'a>(origins: &[String], origin: Option<&'a [u8]>) -> Option<&'a str> {
    let origin = std::str::from_utf8(origin?).ok()?;
    origins.iter().any(|o| o == origin).then_some(origin)
}

/// CORS response headers for an allowed origin, as `(name, value)` pairs (for the fast path; the
/// router's [`CorsLayer`] sends the same).
pub(crate) fn response_headers(origin: &str) -> [(&'static str, &str); 4] {
    [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "retry-after"),
        ("vary", "origin"),
    ]
}

/// The router's CORS: the listed origins, and the [`CorsLayer`] their requests go through.
pub(crate) struct Gate {
    origins: Vec<String>,
    cors: CorsLayer,
}

impl Gate {
    pub(crate) fn new(origins: &[String]) -> Arc<Gate> {
        // `*` never gets here from the command line (`check_origin`); from a library user's
        // config it is left out, as tower-http's list would panic on it (and it never matched).
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter(|o| *o != "*")
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        let cors = CorsLayer::new()
            .allow_origin(list)
            .allow_credentials(true)
            .expose_headers([header::RETRY_AFTER])
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(600))
            .vary([header::ORIGIN]);
        Arc::new(Gate {
            origins: origins.to_vec(),
            cors,
        })
    }
}

/// The middleware on every route. A request from a listed origin goes through the
/// [`CorsLayer`], which answers its preflights (`204`) and adds the headers to its responses.
/// Any other request skips it, so it gets no CORS headers (tower-http would add `Vary`,
/// `Access-Control-Expose-Headers` and, on `OPTIONS`, the allowed methods and headers to every
/// response), and a preflight from an unlisted origin is refused with `403`.
pub(crate) async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(HeaderValue::as_bytes);
    if listed(&gate.origins, origin).is_none() {
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this origin is not allowed (the hub lists allowed ones with --cors-origin)",
            )
            .into_response();
        }
        return next.run(request).await;
    }
    let options = request.method() == Method::OPTIONS;
    let mut response = match gate.cors.layer(next).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if options {
        // The layer answered it, with an empty 200; the hub has always said 204 (no content).
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}
