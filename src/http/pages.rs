//! `GET /`: the viewer page, and its script and style. Plain files embedded in the binary (no
//! build step, no CDN): it works offline. The page subscribes with `EventSource` exactly as a
//! user's page would, to the topics in `?topic=`.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::AppState;

const PAGE: &str = include_str!("viewer/index.html");
const SCRIPT: &str = include_str!("viewer/viewer.js");
const STYLE: &str = include_str!("viewer/viewer.css");

/// The page, told where publishing needs no token (the loopback publish listener), so that its
/// `curl` lines work when pasted on the hub's host. Its `Link` header is Mercure's discovery: a
/// Mercure client finds the hub from any page that carries it.
pub(crate) async fn viewer(State(app): State<AppState>) -> Response {
    let listener = app
        .publish_listener
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_default();
    (
        [(header::LINK, MERCURE_LINK)],
        Html(PAGE.replace("{{publish-listener}}", &listener)),
    )
        .into_response()
}

/// Relative, so it is right behind any proxy and under any host name.
const MERCURE_LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Revalidate on every load: an upgraded hub must not run an old script.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
