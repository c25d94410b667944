//! A baseline for the benchmark: the SSE fan-out a Rust user writes by hand with axum's
//! `Sse` response and a `tokio::sync::broadcast` channel. No topics, no history, no resume.
//!
//! - `GET /events`: an event stream; every published message arrives as `data: <text>`.
//! - `POST /publish`: the raw body (UTF-8 text) is the event data; answers `200` with the number
//!   of receivers it was sent to.
//! - `GET /healthz`: `ok` (for `ssehub bench --reuse-connection`, which sends a plain request
//!   before the stream on the same connection, as a browser does).
//!
//! Run it (the address is the first argument; port 0 picks a free port):
//!
//! ```sh
//! cargo run --release --example axum_broadcast -- 127.0.0.1:3001
//! ```
//!
//! It prints one line to stderr, `listening on http://<address>`, once bound.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

/// Messages the channel holds for the slowest receiver; a receiver further behind than this
/// loses the oldest messages (see `events`).
const CAPACITY: usize = 4096;

type Tx = broadcast::Sender<String>;

async fn events(State(tx): State<Tx>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold(tx.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(text) => return Some((Ok(Event::default().data(text)), rx)),
                // What hand-written code typically does: a receiver that fell more than CAPACITY
                // messages behind just skips the ones it missed and carries on, silently.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn publish(State(tx): State<Tx>, body: String) -> impl IntoResponse {
    // `send` fails only when nobody is listening; that is still a successful publish.
    let receivers = tx.send(body).unwrap_or(0);
    (StatusCode::OK, receivers.to_string())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".to_owned());
    let (tx, _) = broadcast::channel::<String>(CAPACITY);
    let app = Router::new()
        .route("/events", get(events))
        .route("/publish", post(publish))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
