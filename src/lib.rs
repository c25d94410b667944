//! ssehub: a Server-Sent Events hub.
//!
//! Publishers send events over HTTP (or from code, or from standard input); every subscriber on
//! their topics receives them as a `text/event-stream`, and can resume with `Last-Event-ID`
//! without a gap or a duplicate. Use it as the `ssehub` binary, or mount it in an axum app:
//!
//! ```no_run
//! use ssehub::{http::HttpConfig, Hub};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::builder().max_clients(1000).build();
//! let app = axum::Router::new()
//!     .route("/hello", axum::routing::get(|| async { "hi" }))
//!     .merge(ssehub::http::router(hub.clone(), HttpConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Modules: [`event`] (validation, encoding), [`parse`] (incremental event-stream parser),
//! [`hub`] (log, subscriptions, slots), [`store`] (history backends), [`http`] (routes and the
//! event-stream fast path), [`feed`] (stdin), [`config`] (flags, env, TOML).

#![warn(missing_docs)]

#[cfg(feature = "bench")]
// Its doc comments are also `--help` text, shown verbatim: `<data>` is not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
pub mod bench;
#[cfg(feature = "cli")]
pub mod config;
pub mod event;
pub mod feed;
pub mod http;

pub mod hub;
pub mod parse;
pub mod store;

pub use event::EventError;
pub use event::{Event, Topic};
pub use hub::{
    End, Events, Gap, Hub, HubBuilder, HubConfig, PublishError, Receipt, Received, ReceivedEvent,
    Stats, SubscribeError, SubscribeRequest, Subscription,
};
