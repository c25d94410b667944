//! The event-stream fast path: an HTTP/1 `GET /events`, `GET /event` or `GET /.well-known/mercure`
//! answered on a socket the stream owns.
//!
//! After the response head, the task does three things: wait for the subscription's next batch,
//! write it with one vectored write of the shared event bytes (no copy), and watch the socket so a
//! client that goes away frees its slot at once. A write that cannot progress checks the
//! subscriber's backlog every [`STUCK_CHECK`]; past the bound the stream ends.

use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::active_subscriptions::{announce_stream, to_announce, Presence};
use super::per_ip::IpGuard;
use super::subscribe::{
    last_event_id_value, per_address, refusal, stream_request, Refusal, StreamAsk, StreamRoute,
};
use super::{cors, ApiError, AppState};
use crate::hub::Subscription;

/// How often a blocked write looks at the subscriber's backlog.
const STUCK_CHECK: Duration = Duration::from_millis(100);

/// What the fast path needs from the request head.
pub(crate) struct Head {
    pub(crate) route: StreamRoute,
    /// HTTP/1.1 (chunked body) or HTTP/1.0 (body ends at close).
    pub(crate) http11: bool,
    pub(crate) query: String,
    pub(crate) last_event_id: Option<Vec<u8>>,
    pub(crate) origin: Option<Vec<u8>>,
    pub(crate) authorization: Option<Vec<u8>>,
    /// Every `Cookie` header (a token may be in `mercureAuthorization`).
    pub(crate) cookies: Vec<Vec<u8>>,
}

impl Head {
    /// The request as the shared reader takes it.
    fn ask(&self) -> StreamAsk<'_> {
        StreamAsk {
            route: self.route,
            query: &self.query,
            last_event_id: self.last_event_id.as_deref(),
            authorization: self.authorization.as_deref(),
            cookies: self.cookies.iter().map(Vec::as_slice).collect(),
        }
    }
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n";
const CLOSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n";

pub(crate) async fn serve_events(stream: TcpStream, peer: IpAddr, head: Head, app: &AppState) {
    let http11 = head.http11;
    // Opening is synchronous and takes the head, so that neither the head (its cookies may be
    // kilobytes) nor anything used only to open it stays in an idle stream's task.
    match open(&stream, peer, head, app) {
        Opened::Stream(subscription, response_head, _held) => {
            stream_events(stream, subscription, response_head, http11).await
        }
        Opened::Refused(error, cors) => write_refusal(&stream, &error, cors.as_deref()).await,
        Opened::Retry(cors, bytes) => {
            let head = stream_head(false, cors.as_deref(), None);
            let mut slices = [IoSlice::new(&head), IoSlice::new(&bytes)];
            let _ = write_all(&stream, &mut slices, None).await;
        }
    }
}

/// What opening a stream came to.
// Built and matched at once, never stored: boxing the subscription would cost an allocation per
// stream for nothing.
#[allow(clippy::large_enum_variant)]
enum Opened {
    /// The subscription, its response head, and what lives as long as it: its count against the
    /// address's limit and its announcement.
    Stream(
        Subscription,
        Cow<'static, [u8]>,
        (IpGuard, Option<Presence>),
    ),
    /// A refusal to write (with the CORS origin to allow, if any).
    Refused(ApiError, Option<String>),
    /// `--when-full retry`: a stream carrying only this.
    Retry(Option<String>, Bytes),
}

/// Reads the request and subscribes.
fn open(stream: &TcpStream, peer: IpAddr, head: Head, app: &AppState) -> Opened {
    let cors = cors::allowed(app, head.origin.as_deref());
    let refused = |e: ApiError| Opened::Refused(e, cors.map(str::to_string));
    let (request, payload) = match stream_request(&head.ask(), &app.config) {
        Ok(asked) => asked,
        Err(e) => return refused(e),
    };
    let announced = to_announce(app, head.route, &request);
    let per_ip = match per_address(app, peer) {
        Ok(guard) => guard,
        Err(e) => return refused(e),
    };
    match app.hub.subscribe(request) {
        Ok(subscription) => {
            if let Some(every) = app.hub.config().heartbeat {
                give_up_unacknowledged_after(stream, every * 2);
            }
            // Mercure's answer says where the stream starts, so a client can resume from there.
            let last_event_id =
                (head.route == StreamRoute::Mercure).then(|| last_event_id_value(&subscription));
            let response_head = stream_head(head.http11, cors, last_event_id.as_deref());
            let presence = announce_stream(app, announced, payload);
            Opened::Stream(subscription, response_head, (per_ip, presence))
        }
        Err(e) => match refusal(e, app.config.when_full, app.hub.config().retry_ms) {
            Refusal::Error(e) => refused(e),
            Refusal::RetryStream(bytes) => Opened::Retry(cors.map(str::to_string), bytes),
        },
    }
}

/// A client that vanishes without closing (no FIN, no RST: unplugged, gone off the network)
/// would otherwise hold its stream for the kernel's whole retransmission schedule, about 15
/// minutes. With TCP_USER_TIMEOUT the kernel gives up once sent data (a heartbeat at the latest)
/// goes unacknowledged this long, and the stream ends.
///
/// The option exists on Linux, Android and Fuchsia (where socket2 offers it); elsewhere (macOS,
/// the BSDs, Windows) this does nothing, and a vanished client holds its stream until its backlog
/// passes the bound or the kernel gives up.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
pub(crate) fn give_up_unacknowledged_after(stream: &TcpStream, after: Duration) {
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(after)) {
        tracing::debug!("TCP_USER_TIMEOUT: {e}");
    }
}

/// No TCP_USER_TIMEOUT on this target: see the Linux version above.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
pub(crate) fn give_up_unacknowledged_after(_stream: &TcpStream, _after: Duration) {}

/// The response head of a stream: chunked on HTTP/1.1, ending at close on HTTP/1.0; with CORS
/// headers for an allowed origin, and `last-event-id` when given (a valid header value).
fn stream_head(
    chunked: bool,
    cors: Option<&str>,
    last_event_id: Option<&str>,
) -> Cow<'static, [u8]> {
    let head = if chunked { CHUNKED_HEAD } else { CLOSE_HEAD };
    if cors.is_none() && last_event_id.is_none() {
        return Cow::Borrowed(head);
    }
    let mut more = head[..head.len() - 2].to_vec();
    for (name, value) in cors.map(cors::response_headers).into_iter().flatten() {
        more.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(id) = last_event_id {
        more.extend_from_slice(format!("last-event-id: {id}\r\n").as_bytes());
    }
    more.extend_from_slice(b"\r\n");
    Cow::Owned(more)
}

async fn stream_events(
    stream: TcpStream,
    mut subscription: Subscription,
    head: Cow<'static, [u8]>,
    chunked: bool,
) {
    let mut head = Some(head);
    let mut batch: Vec<Bytes> = Vec::new();
    // One watch on the socket for the stream's whole life (not one per batch).
    let closed = peer_closed(&stream);
    tokio::pin!(closed);
    loop {
        let next = tokio::select! {
            next = subscription.next(&mut batch) => next,
            _ = &mut closed => return,
        };
        if next.is_err() {
            // Shutting down or too far behind: end the body cleanly if the socket takes it now.
            if chunked {
                let _ = stream.try_write(b"0\r\n\r\n");
            }
            return;
        }
        if write_batch(
            &stream,
            head.take().as_deref(),
            &batch,
            chunked,
            &subscription,
        )
        .await
        .is_err()
        {
            return;
        }
        subscription.delivered(batch.iter().map(Bytes::len).sum());
        batch.clear();
        // A burst can leave a big vector behind; idle streams should hold nothing.
        if batch.capacity() > 64 {
            batch = Vec::new();
        }
    }
}

/// Resolves when the client closed its side or the socket failed. Whatever it sends is dropped.
async fn peer_closed(stream: &TcpStream) {
    let mut sink = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

async fn write_batch(
    stream: &TcpStream,
    head: Option<&[u8]>,
    parts: &[Bytes],
    chunked: bool,
    subscription: &Subscription,
) -> io::Result<()> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    let size_line = format!("{total:x}\r\n");
    let mut slices = Vec::with_capacity(parts.len() + 3);
    if let Some(head) = head {
        slices.push(IoSlice::new(head));
    }
    if chunked {
        slices.push(IoSlice::new(size_line.as_bytes()));
    }
    slices.extend(parts.iter().map(|p| IoSlice::new(p)));
    if chunked {
        slices.push(IoSlice::new(b"\r\n"));
    }
    write_all(stream, &mut slices, Some(subscription)).await
}

/// Waits for room in the socket, ending the stream if the subscriber falls too far behind.
async fn wait_writable(stream: &TcpStream, subscription: &Subscription) -> io::Result<()> {
    loop {
        tokio::select! {
            ready = stream.writable() => return ready,
            _ = tokio::time::sleep(STUCK_CHECK) => {
                if subscription.check_backlog().is_err() {
                    return Err(io::Error::other("subscriber fell too far behind"));
                }
            }
        }
    }
}

/// Writes every slice. With a subscription, a write that cannot progress watches its backlog.
async fn write_all(
    stream: &TcpStream,
    slices: &mut [IoSlice<'_>],
    watch: Option<&Subscription>,
) -> io::Result<()> {
    let mut bufs = slices;
    while !bufs.is_empty() {
        match stream.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match watch {
                Some(subscription) => wait_writable(stream, subscription).await?,
                None => stream.writable().await?,
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A refusal's response head and body: its status, a one-line reason as `text/plain`, and
/// `connection: close`.
pub(crate) fn refusal_response(error: &ApiError, cors: Option<&str>) -> (String, String) {
    error.log();
    let body = format!("{}\n", error.reason);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(secs) = error.retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    // As `ApiError`'s axum response says it.
    if error.status == axum::http::StatusCode::UNAUTHORIZED {
        head.push_str("www-authenticate: Bearer\r\n");
    }
    for (name, value) in cors.map(cors::response_headers).into_iter().flatten() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    (head, body)
}

/// Answers with a status and a one-line reason, then closes.
pub(crate) async fn write_refusal(stream: &TcpStream, error: &ApiError, cors: Option<&str>) {
    let (head, body) = refusal_response(error, cors);
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        write_all(
            stream,
            &mut [IoSlice::new(head.as_bytes()), IoSlice::new(body.as_bytes())],
            None,
        ),
    )
    .await;
    // What the client sent past its head (pipelined, or a body) would make the close a reset.
    super::connection::drain_ready(stream);
}
