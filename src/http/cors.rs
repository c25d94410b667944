//! `--cors-origin`: cross-origin access for exact origins only. An allowed origin is echoed back
//! (never `*`), with credentials allowed, so a page on that origin can use `EventSource` (also
//! `withCredentials`) and `fetch` the publish endpoint after a preflight. Other origins get no
//! CORS headers, and their preflights a `403`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
    let origin = std::str::from_utf8(origin?).ok()?;
    app.config
        .cors_origins
        .iter()
        .any(|o| o == origin)
        .then_some(origin)
}

/// CORS response headers for an allowed origin, as `(name, value)` pairs.
pub(crate) fn response_headers(origin: &str) -> [(&'static str, &str); 4] {
    [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "retry-after"),
        ("vary", "origin"),
    ]
}

fn add_headers(headers: &mut HeaderMap, origin: &str) {
    for (name, value) in response_headers(origin) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// The middleware on every axum route: answers preflights, adds headers for allowed origins.
pub(crate) async fn layer(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.as_bytes().to_vec());
    let allowed = allowed(&app, origin.as_deref()).map(str::to_owned);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(origin) = allowed else {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this origin is not allowed (the hub lists allowed ones with --cors-origin)",
            )
            .into_response();
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        add_headers(headers, &origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = allowed {
        add_headers(response.headers_mut(), &origin);
    }
    response
}
