//! One client connection, from its first byte to its close.
//!
//! Every request head on a connection is read here, the first and every one after it: a
//! `GET /events`, `GET /event` or `GET /.well-known/mercure` becomes a stream on the stream runtime
//! (`fast.rs`) whether it came first or after any number of kept-alive requests (a browser opens
//! its `EventSource` on the connection that loaded the page); any other request is served by hyper on the request thread, one request
//! at a time, after which the connection comes back here for its next head. So every stream gets
//! the same path, the same limits and the same thread, however it arrived.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{StatusCode, Uri};
use axum::{Extension, Router};
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::fast::{refusal_response, serve_events, write_refusal, Head};
use super::message_end::RequestBody;
use super::one_request::OneRequest;
use super::subscribe::StreamRoute;
use super::{ApiError, AppState, PublishListener};

/// A request head must arrive within this time (on a kept-alive connection: the next one)...
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and fit in this many bytes.
const MAX_HEAD: usize = 16 * 1024;
/// A connection closed after a refusal keeps reading (and dropping) what the client still sends
/// for at most this long and this many bytes, so that the refusal is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;
/// Connections lingering at once, at most; past it they are closed at once.
const MAX_LINGERING: usize = 1024;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) app: AppState,
    pub(crate) routes: Router,
    /// Where streams run (the runtime `serve` was called on).
    pub(crate) streams: tokio::runtime::Handle,
    /// Where requests run: a thread of their own, so that a publisher never waits behind a
    /// fan-out round over thousands of streams.
    pub(crate) requests: tokio::runtime::Handle,
    /// Connections on the request thread, for the shutdown drain.
    pub(crate) on_request_thread: AtomicUsize,
    pub(crate) stop: watch::Receiver<bool>,
    lingering: AtomicUsize,
    /// For the A/B in BENCHMARKS.md only (`SSEHUB_BENCH_STREAMS_VIA_HYPER=1`): streams are served
    /// by hyper on the request thread, as a mounted router serves them, instead of `fast.rs`.
    streams_via_hyper: bool,
}

impl Shared {
    pub(crate) fn new(
        app: AppState,
        routes: Router,
        streams: tokio::runtime::Handle,
        requests: tokio::runtime::Handle,
        stop: watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            app,
            routes,
            streams,
            requests,
            on_request_thread: AtomicUsize::new(0),
            stop,
            lingering: AtomicUsize::new(0),
            streams_via_hyper: std::env::var_os("SSEHUB_BENCH_STREAMS_VIA_HYPER")
                .is_some_and(|v| v == "1"),
        }
    }
}

/// A client connection and what was read from it but not yet used.
pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    publish_listener: bool,
    buf: BytesMut,
    /// Requests served on it so far.
    served: u64,
}

/// Where a request goes.
enum Route {
    Events(Head),
    /// Anything else: hyper serves it. The head is `head_len` bytes at the start of the buffer.
    Request {
        head_len: usize,
        body: RequestBody,
    },
    Refuse(ApiError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Streams,
    Requests,
}

/// Serves a connection just accepted (on the stream runtime).
pub(crate) async fn accepted(
    stream: TcpStream,
    peer: SocketAddr,
    publish_listener: bool,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let connection = Connection {
        stream,
        peer,
        publish_listener,
        buf: BytesMut::new(),
        served: 0,
    };
    run(connection, None, Place::Streams, shared).await;
}

/// Serves a connection's requests; a stream, once one starts, runs here.
async fn run(conn: Connection, route: Option<Route>, place: Place, shared: Arc<Shared>) {
    // The request loop is boxed and gone before the stream starts: an idle stream's task (most of
    // a hub's memory) holds only the stream's own state.
    if let Some((stream, peer, head)) = Box::pin(requests(conn, route, place, &shared)).await {
        serve_events(stream, peer, head, &shared.app).await;
    }
}

/// Reads request heads and serves them until the connection ends, moves to the other place, or
/// becomes a stream here (returned).
async fn requests(
    mut conn: Connection,
    mut route: Option<Route>,
    place: Place,
    shared: &Arc<Shared>,
) -> Option<(TcpStream, IpAddr, Head)> {
    let mut service = None;
    loop {
        let next = match route.take() {
            Some(next) => next,
            None => next_head(&mut conn, shared).await?,
        };
        match (next, place) {
            (Route::Events(head), Place::Streams) => {
                return Some((conn.stream, conn.peer.ip(), head));
            }
            (Route::Refuse(error), _) => {
                write_refusal(&conn.stream, &error, None).await;
                linger(conn.stream, shared).await;
                return None;
            }
            (Route::Request { head_len, body }, Place::Requests) => {
                let service = service.get_or_insert_with(|| {
                    let mut routes = shared
                        .routes
                        .clone()
                        .layer(Extension(ConnectInfo(conn.peer)));
                    if conn.publish_listener {
                        routes = routes.layer(Extension(PublishListener));
                    }
                    TowerToHyperService::new(routes)
                });
                conn.served += 1;
                if !serve_one(&mut conn, head_len, body, service, shared).await {
                    linger(conn.stream, shared).await;
                    return None;
                }
            }
            (next, _) => {
                move_to_other_place(conn, next, place, shared.clone());
                return None;
            }
        }
    }
}

/// Reads the next request head, counted as waiting (`pending.rs`). `None`: the connection ended
/// (closed, timed out, evicted, refused, or the server is stopping).
async fn next_head(conn: &mut Connection, shared: &Shared) -> Option<Route> {
    let waiting = match shared.app.pending.start(conn.peer.ip()) {
        Ok(waiting) => waiting,
        Err(_) => {
            if conn.served == 0 {
                let error = ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    reason: format!(
                        "too many connections from {} waiting to send a request; retry later",
                        conn.peer.ip()
                    ),
                    retry_after: Some(1),
                };
                refuse_at_once(&conn.stream, &error);
            }
            return None;
        }
    };
    let mut stop = shared.stop.clone();
    tokio::select! {
        read = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn.stream, &mut conn.buf, shared.streams_via_hyper)) => {
            match read {
                Ok(Ok(route)) => route,
                // Failed, or too slow to send a head: nothing to answer.
                _ => None,
            }
        }
        _ = waiting.evicted() => {
            if conn.served == 0 {
                let error = ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: "too many connections waiting to send a request; retry later".into(),
                    retry_after: Some(1),
                };
                refuse_at_once(&conn.stream, &error);
            }
            None
        }
        _ = stopping(&mut stop) => None,
    }
}

/// Resolves once the server is stopping (holding no borrow of the flag).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await.is_ok();
}

/// Moves a connection to the stream runtime (a stream) or the request thread (a request).
fn move_to_other_place(conn: Connection, route: Route, from: Place, shared: Arc<Shared>) {
    let Connection {
        stream,
        peer,
        publish_listener,
        buf,
        served,
    } = conn;
    // Registered with this runtime's reactor: it must leave it to join the other one.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let (to, handle) = match from {
        Place::Streams => (Place::Requests, shared.requests.clone()),
        Place::Requests => (Place::Streams, shared.streams.clone()),
    };
    if to == Place::Requests {
        shared.on_request_thread.fetch_add(1, Ordering::AcqRel);
    }
    handle.spawn(async move {
        if let Ok(stream) = TcpStream::from_std(stream) {
            let conn = Connection {
                stream,
                peer,
                publish_listener,
                buf,
                served,
            };
            run(conn, Some(route), to, shared.clone()).await;
        }
        if to == Place::Requests {
            shared.on_request_thread.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

/// Reads until a whole request head is at the start of `buf` and decides where it goes. `None`:
/// the client closed first.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    streams_via_hyper: bool,
) -> io::Result<Option<Route>> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    return Ok(Some(route(&request, head_len, streams_via_hyper)))
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Ok(Some(Route::Refuse(ApiError::new(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "more than 64 request headers",
                    ))))
                }
                Err(e) => {
                    return Ok(Some(Route::Refuse(ApiError::bad_request(format!(
                        "malformed request: {e}"
                    )))))
                }
            }
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Some(Route::Refuse(ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request head is larger than {MAX_HEAD} bytes"),
            ))));
        }
        buf.reserve(1024.min(MAX_HEAD - buf.len()));
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

fn route(request: &httparse::Request<'_, '_>, head_len: usize, streams_via_hyper: bool) -> Route {
    let method = request.method.unwrap_or("");
    // The path as hyper and the router see it (absolute form, a fragment): every request they
    // would route to a stream route is a stream here. One they cannot parse, hyper refuses.
    let uri = request.path.unwrap_or("").parse::<Uri>().ok();
    let path = uri.as_ref().map_or("", Uri::path);
    let query = uri.as_ref().and_then(Uri::query).unwrap_or("");
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let stream_route = StreamRoute::at(path).filter(|_| method == "GET" && !streams_via_hyper);
    let Some(stream_route) = stream_route else {
        let body =
            RequestBody::from_head(method, request.headers.iter().map(|h| (h.name, h.value)));
        return Route::Request { head_len, body };
    };
    // An `Upgrade: h2c` offer is simply not taken; a body has no meaning here.
    let has_body = header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|v| v.trim_ascii() != b"0");
    if has_body {
        return Route::Refuse(ApiError::bad_request("a subscription request has no body"));
    }
    Route::Events(Head {
        route: stream_route,
        http11: request.version == Some(1),
        query: query.to_string(),
        last_event_id: header("last-event-id").map(<[u8]>::to_vec),
        origin: header("origin").map(<[u8]>::to_vec),
        authorization: header("authorization").map(<[u8]>::to_vec),
        cookies: request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .map(|h| h.value.to_vec())
            .collect(),
    })
}

/// Serves the request at the start of the connection's buffer with hyper. `true`: the
/// connection is kept alive and its next request may follow.
async fn serve_one(
    conn: &mut Connection,
    head_len: usize,
    body: RequestBody,
    service: &TowerToHyperService<Router>,
    shared: &Shared,
) -> bool {
    // A body we cannot frame takes the rest of the connection, so hyper must not read another
    // request from it: it would serve it itself (a stream included) instead of handing it back.
    let last = body == RequestBody::Rest;
    let mut io = OneRequest::new(&mut conn.stream, &mut conn.buf, head_len, body);
    let served = {
        let connection = hyper::server::conn::http1::Builder::new()
            // The head is already here (we read it, under HEAD_TIMEOUT): no timer per request.
            .header_read_timeout(None)
            // Our reader ends each request with an end of file: that is not a client leaving.
            .half_close(true)
            .keep_alive(!last)
            .serve_connection(TokioIo::new(&mut io), service.clone());
        tokio::pin!(connection);
        let mut stop = shared.stop.clone();
        tokio::select! {
            served = connection.as_mut() => served,
            _ = stopping(&mut stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    served.is_ok() && io.at_next_request() && !*shared.stop.borrow()
}

/// Closes a connection so that what was written to it reaches the client. Closing a socket with
/// unread bytes in it (a body refused before it was read, the rest of an oversized head) makes
/// the kernel send a reset, and a client that gets the reset before reading our answer loses the
/// answer. So: send our end of file, then read and drop what the client still sends, for a
/// bounded time and amount.
pub(crate) async fn linger(mut stream: TcpStream, shared: &Shared) {
    // Stopping: the answer said `connection: close`; the shutdown must not wait for lingerers.
    if *shared.stop.borrow() {
        drain_ready(&stream);
        return;
    }
    if shared.lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        shared.lingering.fetch_sub(1, Ordering::AcqRel);
        drain_ready(&stream);
        return;
    }
    if stream.shutdown().await.is_ok() {
        // On the heap: this future is part of every connection's task, streams included.
        let mut sink = vec![0u8; 8192];
        let mut dropped = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while dropped < LINGER_BYTES {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dropped += n,
                }
            }
        })
        .await;
    }
    shared.lingering.fetch_sub(1, Ordering::AcqRel);
}

/// Reads and drops whatever has already arrived, without waiting, so a close after it is a FIN.
pub(crate) fn drain_ready(stream: &TcpStream) {
    let mut sink = [0u8; 8192];
    for _ in 0..64 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// A refusal written without waiting (the socket is fresh, so it fits), for when the hub is
/// too busy to spend more on this connection.
fn refuse_at_once(stream: &TcpStream, error: &ApiError) {
    let (head, body) = refusal_response(error, None);
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
    drain_ready(stream);
}
