//! The hyper path: connections on a TLS listener (HTTP/1.1 or HTTP/2 by ALPN) or an
//! `--http2-cleartext` one, served whole by hyper and the router, and the stream body every
//! stream on it gets.
//!
//! Why not the fast path: HTTP/2 multiplexes many streams on one connection, and TLS wraps the
//! socket, so no stream owns a socket it could write by itself. The guarantees are kept by other
//! means, each the same code as the fast path's where it can be:
//! - slots, `--max-clients-per-ip`, tokens, replay: the same `subscribe::stream` handler, so an
//!   HTTP/2 stream takes a slot like any other (many streams on one connection take one each);
//! - heartbeats: the subscription's own (`Subscription::next`);
//! - backlog cut-off: [`watched_body`]: a task reads the subscription as the fast path's writer
//!   does and, while the body is not taken (a deaf client: flow control or the socket stalls),
//!   checks the backlog every [`STUCK_CHECK`] with the same `check_backlog`;
//! - vanished clients: TCP_USER_TIMEOUT on the socket (twice the heartbeat, as on the fast path),
//!   plus HTTP/2 pings;
//! - shutdown: the hub's close ends every subscription; hyper then ends the connection
//!   gracefully (GOAWAY on HTTP/2);
//! - silent connections: the TLS handshake and the first request (or an h2c listener's first
//!   bytes) within the head timeout, counted as waiting (`pending.rs`) until then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tower::ServiceExt;

mod first_bytes;
mod handoff;
#[cfg(feature = "tls")]
mod preface;

use super::connection::Shared;
use super::fast::give_up_unacknowledged_after;
use crate::hub::Subscription;

/// How often a stream whose body is not being taken looks at its backlog (as `fast.rs`).
const STUCK_CHECK: Duration = Duration::from_millis(100);
/// A TLS handshake must finish within this time, or the connection is closed.
#[cfg(feature = "tls")]
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 request head, the HTTP/2 preface, or an h2c listener's first bytes must arrive
/// within this time (as a head on the fast path).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once (each also takes a hub slot).
pub(crate) const MAX_H2_STREAMS: u32 = 256;
/// Bytes HTTP/2 buffers per stream for a client that does not take them: past it the body is
/// no longer read, and the backlog check takes over.
const H2_SEND_BUFFER: usize = 64 * 1024;
/// HTTP/2 request heads (all headers) at most, as the fast path's head limit.
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// Serves a connection accepted on a TLS or `--http2-cleartext` listener.
pub(crate) async fn accepted(
    stream: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let heartbeat = shared.app.hub.config().heartbeat;
    if let Some(every) = heartbeat {
        // Set once for the connection: every stream on it is written through this socket.
        give_up_unacknowledged_after(&stream, every * 2);
    }
    match protocol {
        #[cfg(feature = "tls")]
        Protocol::Tls(tls) => {
            let Some(stream) = handshake(stream, peer, tls.acceptor(), &shared).await else {
                return;
            };
            // ALPN decides; hyper need not sniff (and its HTTP/1.1 head timer runs at once).
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let stream = preface::PrefaceWithin::new(stream, HEAD_TIMEOUT);
                serve(TokioIo::new(stream), Version::H2, peer, heartbeat, &shared).await;
            } else {
                serve(TokioIo::new(stream), Version::H1, peer, heartbeat, &shared).await;
            }
        }
        _ => {
            if !first_bytes_in_time(&stream, peer, &shared).await {
                return;
            }
            serve(
                TokioIo::new(stream),
                Version::Sniff,
                peer,
                heartbeat,
                &shared,
            )
            .await;
        }
    }
}

/// Which HTTP hyper speaks on a connection.
#[derive(Clone, Copy)]
enum Version {
    #[cfg(feature = "tls")]
    H1,
    #[cfg(feature = "tls")]
    H2,
    /// HTTP/1.1, or HTTP/2 if the connection starts with its preface (h2c).
    Sniff,
}

/// An h2c listener's connection must show within the head timeout whether it speaks HTTP/1.1 or
/// HTTP/2, counted meanwhile as waiting (`pending.rs`), as a head on the fast path is.
async fn first_bytes_in_time(stream: &TcpStream, peer: SocketAddr, shared: &Shared) -> bool {
    let Ok(waiting) = shared.app.pending.start(peer.ip()) else {
        return false;
    };
    let mut stop = shared.stop.clone();
    tokio::select! {
        sniffable = first_bytes::sniffable(stream, HEAD_TIMEOUT) => sniffable,
        _ = waiting.evicted() => false,
        _ = stopping(&mut stop) => false,
    }
}

#[cfg(feature = "tls")]
/// The TLS handshake, counted as a connection waiting for a request (`pending.rs`: bounded per
/// address and overall) and bounded in time, so silent connections cannot pile up.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    shared: &Shared,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let waiting = shared.app.pending.start(peer.ip()).ok()?;
    let mut stop = shared.stop.clone();
    tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {peer} failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake with {peer} timed out");
                None
            }
        },
        _ = waiting.evicted() => None,
        _ = stopping(&mut stop) => None,
    }
}

/// Serves HTTP/1.1 or HTTP/2 until the connection ends or the server stops.
async fn serve<I>(
    io: TokioIo<I>,
    version: Version,
    peer: SocketAddr,
    heartbeat: Option<Duration>,
    shared: &Shared,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The peer goes into each request's extensions (what `Extension(ConnectInfo)` would add):
    // layering the router per connection would rebuild its route table, kilobytes per
    // connection, and on HTTP/1.1 every stream is a connection.
    let routes = shared.routes.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        routes.clone().oneshot(request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match version {
        #[cfg(feature = "tls")]
        Version::H1 => builder.http1_only(),
        #[cfg(feature = "tls")]
        Version::H2 => builder.http2_only(),
        Version::Sniff => builder,
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    // Pings find a vanished client on a connection whose streams are quiet (heartbeats off).
    let ping = heartbeat.unwrap_or(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(ping)
        .keep_alive_timeout(ping);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stop = shared.stop.clone();
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stopping(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!("connection from {peer}: {e}");
    }
}

/// Resolves once the server is stopping (holding no borrow of the flag).
async fn stopping(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await.is_ok();
}

/// How the main listener speaks.
///
/// ```
/// use ssehub::http::Protocol;
/// assert!(matches!(Protocol::default(), Protocol::Http1));
/// ```
#[derive(Debug, Clone, Default)]
pub enum Protocol {
    /// Plain HTTP/1.1: streams take the fast path (the default).
    #[default]
    Http1,
    /// Plain HTTP/1.1 and HTTP/2 with prior knowledge (h2c), for a reverse proxy that speaks
    /// h2c to its backends. Served by hyper.
    Http2Cleartext,
    /// TLS, then HTTP/2 for clients that pick `h2` by ALPN and HTTP/1.1 otherwise. Served by
    /// hyper. (Feature `tls`.)
    #[cfg(feature = "tls")]
    Tls(super::Tls),
}

impl Protocol {
    /// The URL scheme of the listener.
    pub fn scheme(&self) -> &'static str {
        match self {
            #[cfg(feature = "tls")]
            Protocol::Tls(_) => "https",
            _ => "http",
        }
    }

    /// The protocols the listener speaks, for the start line.
    pub fn describe(&self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2Cleartext => "http/1.1, h2c",
            #[cfg(feature = "tls")]
            Protocol::Tls(_) => "tls: h2, http/1.1",
        }
    }

    /// Connections are served whole by hyper (`hyper_path.rs`), not by the fast path.
    pub(crate) fn by_hyper(&self) -> bool {
        !matches!(self, Protocol::Http1)
    }
}

/// A stream's response body on the hyper path. A task reads the subscription, as the fast
/// path's writer does, and hands each batch to the body; while the body does not take it (the
/// client stopped reading: its flow-control window or the socket is full) the task checks the
/// backlog every [`STUCK_CHECK`] and ends the stream past the bound, freeing its slot. `held`
/// lives as long as the stream (its per-address count, its announcement).
pub(crate) fn watched_body(subscription: Subscription, held: impl Send + 'static) -> Body {
    // One batch in hand: the body never holds more than the writer would.
    let (giver, taker) = handoff::handoff();
    tokio::spawn(pump(subscription, giver, held));
    Body::from_stream(taker)
}

async fn pump(mut subscription: Subscription, batches: handoff::Giver, held: impl Send) {
    let _held = held;
    let mut out = Vec::new();
    loop {
        let next = tokio::select! {
            next = subscription.next(&mut out) => next,
            // The client went away (hyper dropped the body).
            _ = batches.closed() => return,
        };
        if next.is_err() {
            return;
        }
        let batch = concat(std::mem::take(&mut out));
        let room = loop {
            tokio::select! {
                room = batches.room() => break room,
                _ = tokio::time::sleep(STUCK_CHECK) => {
                    if subscription.check_backlog().is_err() {
                        return;
                    }
                }
            }
        };
        if room.is_err() {
            return;
        }
        let len = batch.len();
        batches.give(batch);
        // Handed to hyper, which writes it next: as near to the socket as this path sees.
        subscription.delivered(len);
    }
}

/// One frame for the body: a single event as is, several copied together.
fn concat(mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        all.extend_from_slice(&p);
    }
    all.freeze()
}
