//! The server: the listeners, the two places connections run, and the shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::connection::{accepted, Shared};
use super::hyper_path::Protocol;
use super::{hyper_path, routes, AppState, HttpConfig};
use crate::hub::Hub;

/// After shutdown begins, streams and requests get this long to finish.
const DRAIN: Duration = Duration::from_secs(3);

/// The server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] io::Error),
}

/// Where the server listens.
///
/// `main` serves everything; publishing there needs the bearer token
/// ([`HttpConfig::publish_token`]) unless [`HttpConfig::publish_open`] is set. `publish`, if
/// given, also serves everything, and takes publishes without a token when it is bound to a
/// loopback address: it is for publishers on the same host, and no reverse proxy should point
/// at it. (A proxy on the same host makes every request to `main` come from loopback, so a
/// loopback peer address proves nothing there.)
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use tokio::net::TcpListener;
/// let listeners = ssehub::http::Listeners {
///     main: TcpListener::bind("127.0.0.1:8080").await?,
///     publish: Some(TcpListener::bind("127.0.0.1:8081").await?),
///     protocol: ssehub::http::Protocol::Http1,
/// };
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listeners {
    /// Subscribers, the viewer page, health, metrics, and publishers with a token.
    pub main: TcpListener,
    /// Publishers on this host, without a token (if bound to loopback).
    pub publish: Option<TcpListener>,
    /// How `main` speaks: plain HTTP/1.1 (streams on the fast path), TLS (HTTP/2 by ALPN) or
    /// h2c. The publish listener always speaks plain HTTP/1.1.
    pub protocol: Protocol,
}

impl From<TcpListener> for Listeners {
    fn from(main: TcpListener) -> Listeners {
        Listeners {
            main,
            publish: None,
            protocol: Protocol::Http1,
        }
    }
}

/// Serves the hub until `shutdown` resolves, then closes the hub, ends every stream, lets
/// requests in flight finish (up to 3 s) and returns.
///
/// Every request head is read by the server itself: a `GET /events` (first on its connection or
/// after any number of kept-alive requests) is streamed on the current runtime by a small writer
/// that owns the socket; every other request is served by hyper and the router on a thread of
/// its own, so publishers never wait behind fan-out. On a TLS or h2c main listener
/// ([`Listeners::protocol`]) connections are served whole by hyper (HTTP/1.1 and HTTP/2) on the
/// current runtime, with the same limits for every stream (see the README's TLS section).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = ssehub::Hub::builder().build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
/// ssehub::http::serve(listener, hub, ssehub::http::HttpConfig::default(), ctrl_c).await?;
/// # Ok(()) }
/// ```
pub async fn serve<F>(
    listeners: impl Into<Listeners>,
    hub: Hub,
    config: HttpConfig,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()>,
{
    let Listeners {
        main,
        publish,
        protocol,
    } = listeners.into();
    let mut app = AppState::new(hub.clone(), config);
    // Anonymous publishing on the publish listener only where nobody else can reach it.
    let mut trusted_publish = false;
    if let Some(listener) = &publish {
        let addr = listener.local_addr()?;
        if addr.ip().is_loopback() {
            trusted_publish = true;
            app.publish_listener = Some(addr);
        } else {
            tracing::warn!(
                "the publish listener {addr} is not on loopback: it takes no anonymous publishes"
            );
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (requests, _request_thread) = request_thread()?;
    let shared = Arc::new(Shared::new(
        app.clone(),
        routes(app),
        tokio::runtime::Handle::current(),
        requests,
        stop_rx,
    ));
    tokio::pin!(shutdown);
    loop {
        let (accepted_on, from_publish) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = main.accept() => (accepted, None),
            accepted = accept(publish.as_ref()) => (accepted, Some(trusted_publish)),
        };
        match accepted_on {
            // TLS and h2c connections are hyper's whole (`hyper_path.rs` says why); plain
            // HTTP/1.1 ones are read by us, and their streams take the fast path.
            Ok((stream, peer)) => match (from_publish, &protocol) {
                (None, protocol) if protocol.by_hyper() => {
                    let protocol = protocol.clone();
                    tokio::spawn(hyper_path::accepted(stream, peer, protocol, shared.clone()));
                }
                (from_publish, _) => {
                    let trusted = from_publish.unwrap_or(false);
                    tokio::spawn(accepted(stream, peer, trusted, shared.clone()));
                }
            },
            Err(e) => {
                // Out of file descriptors and the like: wait for some to be freed.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop((main, publish));
    hub.close();
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while tokio::time::Instant::now() < deadline
        && (hub.stats().clients > 0 || shared.on_request_thread.load(Ordering::Acquire) > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn accept(
    listener: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The request thread: a runtime of its own, running until the returned sender is dropped.
fn request_thread() -> io::Result<(tokio::runtime::Handle, oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (done, until) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ssehub-requests".into())
        .spawn(move || {
            let _ = runtime.block_on(until);
        })?;
    Ok((handle, done))
}

/// Raises this process's open-file soft limit to its hard limit: every stream is a socket.
///
/// On unix through the `rlimit` crate (on macOS also capped at `kern.maxfilesperproc`, as the
/// kernel requires); elsewhere (Windows) there is no such limit and this does nothing.
///
/// ```
/// // First thing in main, before listening: a hub holds a socket per stream.
/// ssehub::http::raise_open_file_limit();
/// ```
pub fn raise_open_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("could not raise the open-file limit: {e}");
    }
}
