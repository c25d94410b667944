//! The clients' HTTP/1 half: one connection (hyper's `client::conn`, no pool: each client
//! talks to one hub, one request at a time), answers, `Retry-After`, and the capped backoff.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::HubUrl;

/// Connecting (name lookup and TCP), and then the TLS handshake, take at most this long each.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A refusal's body is read up to this many bytes (its first line is the reason).
const MAX_REASON: usize = 4096;

/// One open HTTP/1 connection.
pub(crate) struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects to the URL's host and port.
    pub(crate) async fn open(url: &HubUrl) -> Result<Conn, String> {
        let connect = tokio::net::TcpStream::connect(url.socket());
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("cannot connect to {}: {e}", url.authority())),
            Err(_) => return Err(format!("cannot connect to {}: timed out", url.authority())),
        };
        // Events and publishes are small writes that should leave at once.
        let _ = stream.set_nodelay(true);
        if url.is_tls() {
            let (host, _) = url.socket();
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, super::tls::connect(stream, host))
                .await
                .map_err(|_| format!("TLS with {}: timed out", url.authority()))??;
            return Conn::over(url, tls).await;
        }
        Conn::over(url, stream).await
    }

    /// HTTP/1.1 over an open connection.
    async fn over<S>(url: &HubUrl, stream: S) -> Result<Conn, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{}: {e}", url.authority()))?;
        tokio::spawn(async move {
            // Its end is seen as the request's or the body's error.
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Whether another request can go on this connection.
    pub(crate) fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request; the answer's head (its body still to read).
    pub(crate) async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| format!("no answer: {e}"))
    }
}

/// A request to `url` with the clients' common headers.
pub(crate) fn request(
    method: Method,
    url: &HubUrl,
    auth: Option<&HeaderValue>,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(url.target())
        .header(HOST, url.authority())
        .header(USER_AGENT, concat!("ssehub/", env!("CARGO_PKG_VERSION")));
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth.clone());
    }
    if let Some(content_type) = content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("{url}: {e}"))
}

/// `Authorization: Bearer TOKEN`, checked (a clap value parser for `--token`).
///
/// ```
/// assert!(ssehub::client::bearer("s3cret").is_ok());
/// assert!(ssehub::client::bearer("two\nlines").is_err());
/// ```
///
/// # Errors
///
/// The token cannot be sent in a header (a control character).
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "a token cannot hold control characters".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The wait a `503` or `429` asks for: `Retry-After` in seconds, or as an HTTP date (the wait
/// until then by this machine's clock; a date past is no wait).
pub(crate) fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let text = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    // An hour at most: a larger wait is more likely a mistake than a plan.
    Some(wait.min(Duration::from_secs(3600)))
}

/// A refusal as one line: the status and the first line of the body.
pub(crate) async fn reason(response: Response<Incoming>) -> String {
    let status = response.status();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while text.len() < MAX_REASON {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        Some(line) => format!("{status}: {line}"),
        None => status.to_string(),
    }
}

/// Whether a status is worth retrying: the hub or a proxy in front of it is busy or away.
pub(crate) fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Exponential backoff with jitter, capped; `reset` after a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The first wait (and what the doubling starts from).
    pub(crate) base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The next wait: `base * 2^failures`, capped, then between half and all of it at random
    /// (clients that lost the same hub do not all come back at once).
    pub(crate) fn next(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let full = self.base.saturating_mul(factor).min(self.cap);
        let half = full / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[2] >= Duration::from_millis(200));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let answer = |v: &str| Response::builder().header(RETRY_AFTER, v).body(()).unwrap();
        assert_eq!(retry_after(&answer("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&answer("999999")),
            Some(Duration::from_secs(3600))
        );
        // A date past: try now.
        assert_eq!(
            retry_after(&answer("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        // A minute from now (HTTP dates count whole seconds).
        let then = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        let wait = retry_after(&answer(&then)).unwrap();
        assert!(
            wait > Duration::from_secs(58) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(retry_after(&answer("soon")), None);
    }
}
