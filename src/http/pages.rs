//! `GET /`: the viewer page, and its script and style. Plain files embedded in the binary (no
//! build step, no CDN): it works offline. The page subscribes with `EventSource` exactly as a
//! user's page would, to the topics in `?topic=`.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("viewer/index.html");
const SCRIPT: &str = include_str!("viewer/viewer.js");
const STYLE: &str = include_str!("viewer/viewer.css");

pub(crate) async fn viewer() -> Html<&'static str> {
    Html(PAGE)
}

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
