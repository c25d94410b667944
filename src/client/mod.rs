//! Command-line clients of a hub (feature `cli`): `ssehub listen` prints a stream,
//! `ssehub publish` sends events, one or every line of standard input.
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] listen: ssehub::client::ListenArgs }
//! let cli = Cli::parse_from(["listen", "http://127.0.0.1:8080", "--topic", "app", "--json"]);
//! // Prints every event until SIGINT or SIGTERM, reconnecting as needed.
//! ssehub::client::block_on(ssehub::client::listen(&cli.listen))?;
//! # Ok::<(), ssehub::client::ClientError>(())
//! ```
//!
//! ## Reconnecting
//!
//! `listen` resumes with `Last-Event-ID`: the hub replays what came after it, so nothing is
//! printed twice or lost while the hub still keeps it (across a hub restart too, with
//! `--data-dir`). After a stream ends it waits the stream's `retry:`; after an error, a backoff
//! from there, doubling up to [`MAX_BACKOFF`]; on `503` or `429`, what `Retry-After` says.
//!
//! ## Retried publishes
//!
//! `publish` gives each event an id of its own (a random prefix per run, then a counter), so
//! a request retried after a `503`, a `429` or a lost connection cannot be published twice: the
//! hub refuses an id it has (`409`), and a batch is published whole or not at all, so a `409`
//! on a retry means the first try went through. (An id already gone from the hub's history,
//! past `--history`, can no longer be recognised.)

use std::future::Future;
use std::time::Duration;

mod args;
mod http;
mod listen;
mod publish;
pub(crate) mod source;
mod tls;
mod url;

pub use args::{ListenArgs, PublishArgs};
pub use http::bearer;
pub use listen::listen;
pub use publish::publish;
pub use url::HubUrl;

/// The longest wait between two tries after errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The hub (or what answers at the URL) refused, and retrying would not help.
    #[error("{url}: {reason}")]
    Refused {
        /// Where.
        url: String,
        /// The status and the first line of the answer.
        reason: String,
    },
    /// The hub could not be reached, or answered nothing usable, for too long.
    #[error("{0}")]
    Unreachable(String),
    /// Standard input or output failed.
    #[error("{0}")]
    Io(String),
}

/// Runs a client to its end on a small runtime of its own (what `main` does).
///
/// # Errors
///
/// The client's own.
pub fn block_on<F: Future<Output = Result<(), ClientError>>>(client: F) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Io(format!("cannot start: {e}")))?;
    runtime.block_on(client)
}

/// Resolves on SIGINT or SIGTERM (on SIGINT only, where SIGTERM cannot be watched).
pub(crate) async fn stop_signal() {
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// A wait, said in a log line: `1.5s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
