//! `GET /`: the viewer page. A plain page for now; it subscribes exactly as a user's page would.

use axum::extract::RawQuery;
use axum::response::Html;

const VIEWER: &str = include_str!("viewer.html");

pub(crate) async fn viewer(RawQuery(_query): RawQuery) -> Html<&'static str> {
    Html(VIEWER)
}
