//! The server: one listener, the request head read once, then the fast path or hyper.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::{Extension, Router};
use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::fast::{serve_events, write_refusal, Head};
use super::{routes, ApiError, AppState, HttpConfig};
use crate::hub::Hub;

/// A request head must arrive within this time...
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and fit in this many bytes.
const MAX_HEAD: usize = 16 * 1024;
/// After shutdown begins, streams and requests get this long to finish.
const DRAIN: Duration = Duration::from_secs(3);

/// The server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] io::Error),
}

/// Serves the hub on `listener` until `shutdown` resolves, then closes the hub, ends every
/// stream, lets requests in flight finish (up to 3 s) and returns. HTTP/1 event streams are
/// served on the current runtime; every other request on a thread of its own, so publishers
/// never wait behind fan-out.
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
    listener: TcpListener,
    hub: Hub,
    config: HttpConfig,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()>,
{
    let app = AppState::new(hub.clone(), config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let requests = Arc::new(Requests::start(routes(app.clone()), stop_rx)?);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, app.clone(), requests.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    hub.close();
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while tokio::time::Instant::now() < deadline
        && (hub.stats().clients > 0 || requests.live.load(Ordering::Acquire) > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Where a connection goes after its first request head.
enum Route {
    Events(Head),
    Hyper,
    Refuse(ApiError),
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: AppState,
    requests: Arc<Requests>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let route = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(Some(route))) => route,
        // Closed, failed, or too slow to send a head: nothing to answer.
        _ => return,
    };
    match route {
        Route::Events(head) => {
            drop(buf);
            serve_events(stream, peer.ip(), head, &app).await;
        }
        Route::Refuse(error) => write_refusal(&stream, &error, None).await,
        Route::Hyper => requests.hand_off(stream, peer, Bytes::from(buf)),
    }
}

/// Request/response connections (publish, metrics, the page, anything not a fast-path stream)
/// run on a thread of their own. A publisher then never waits behind a fan-out round over
/// thousands of streams: its latency does not grow with the number of subscribers, and under
/// load each round carries many events (bigger batches, fewer writes per event).
struct Requests {
    handoff: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, Bytes)>,
    /// Connections being served, for the shutdown drain.
    live: Arc<AtomicUsize>,
}

impl Requests {
    fn start(routes: Router, stop: watch::Receiver<bool>) -> io::Result<Requests> {
        let (handoff, mut incoming) =
            mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Bytes)>();
        let live = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counter = live.clone();
        std::thread::Builder::new()
            .name("ssehub-requests".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Ends when the server drops its sender, after the shutdown drain.
                    while let Some((stream, peer, read)) = incoming.recv().await {
                        // Handlers see the client's address (the per-address stream limit).
                        let routes = routes.clone().layer(Extension(ConnectInfo(peer)));
                        let (stop, counter) = (stop.clone(), counter.clone());
                        tokio::spawn(async move {
                            if let Ok(stream) = TcpStream::from_std(stream) {
                                serve_hyper(stream, read, routes, stop).await;
                            }
                            counter.fetch_sub(1, Ordering::AcqRel);
                        });
                    }
                })
            })?;
        Ok(Requests { handoff, live })
    }

    /// Moves a connection, and the bytes already read from it, to the request thread.
    fn hand_off(&self, stream: TcpStream, peer: SocketAddr, read: Bytes) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        self.live.fetch_add(1, Ordering::AcqRel);
        if self.handoff.send((stream, peer, read)).is_err() {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads until a whole request head is in `buf` and decides where it goes. `None`: the client
/// closed first.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Route>> {
    loop {
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
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(_)) => return Ok(Some(route(&request))),
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
}

fn route(request: &httparse::Request<'_, '_>) -> Route {
    let (path, query) = match request.path.unwrap_or("").split_once('?') {
        Some((path, query)) => (path, query),
        None => (request.path.unwrap_or(""), ""),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // Only a plain GET without a body is ours; anything unusual goes to hyper, which knows HTTP.
    let plain = request.method == Some("GET")
        && path == "/events"
        && header("upgrade").is_none()
        && header("content-length").is_none()
        && header("transfer-encoding").is_none();
    if !plain {
        return Route::Hyper;
    }
    Route::Events(Head {
        http11: request.version == Some(1),
        query: query.to_string(),
        last_event_id: header("last-event-id").map(<[u8]>::to_vec),
        origin: header("origin").map(<[u8]>::to_vec),
    })
}

async fn serve_hyper(
    stream: TcpStream,
    read: Bytes,
    routes: Router,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Rewind { read, stream });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(routes));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A socket whose first bytes were already read: they are read again first.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Raises this process's open-file soft limit to its hard limit: every stream is a socket.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
    }
}
