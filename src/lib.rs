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
//! Read a topic from code, as a [`Stream`](futures_util::Stream) of decoded events:
//!
//! ```
//! use futures_util::StreamExt;
//! use ssehub::{Event, Hub, Received, SubscribeRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder().build();
//! let mut events = hub.subscribe(SubscribeRequest::topics(["device"])?)?.into_stream();
//! hub.publish_one(Event::new("{\"up\":true}").with_topic("device")?.with_name("status")?).await?;
//! if let Some(Ok(Received::Event(e))) = events.next().await {
//!     assert_eq!((e.name.as_str(), e.data.as_str()), ("status", "{\"up\":true}"));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `durable` (default): [`store::Disk`], the history in a redb file.
//! - `cli` (default): the binary's flags, environment and config file (`ssehub::config`), and
//!   the command-line clients `ssehub listen` and `ssehub publish` (`ssehub::client`).
//! - `bench` (default): the load generator `ssehub bench` (`ssehub::bench`).
//! - `cluster` (default): several hubs sharing one history in Redis (`ssehub::cluster`,
//!   `--redis`; see `docs/cluster.md`). It brings the Redis client.
//!
//! `cli` and `bench` are the binary's, default so that a fresh clone builds, runs and tests
//! with no flags. A library wants `default-features = false, features = ["durable"]`.
//!
//! # Modules
//!
//! The re-exports at the root are the API. Modules: [`event`] (validation, encoding),
//! [`parse`] (incremental event-stream parser), [`hub`] (log, subscriptions, slots), [`store`]
//! (history backends; the [`Store`](store::Store) trait is sealed), [`http`] (routes and the
//! event-stream fast path), [`feed`] (stdin), and with their features `config` (flags, env,
//! TOML), `client` (the `listen` and `publish` clients), `upstream` (the relay of a remote
//! event stream, `--upstream`), `cluster` (Redis) and `bench` (the load generator, its charts).

#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "cli")]
pub mod config;
pub mod event;
pub mod feed;
pub mod http;

pub mod hub;
mod id;
pub mod parse;
pub mod selector;
pub mod store;
#[cfg(feature = "cli")]
pub mod upstream;

pub use event::EventError;
pub use event::{Event, Topic};
pub use hub::{
    End, Events, Gap, Hub, HubBuilder, HubConfig, PublishError, Receipt, Received, ReceivedEvent,
    RedisHealth, Stats, SubscribeError, SubscribeRequest, Subscription,
};
