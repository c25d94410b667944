//! An event stream read over HTTP, shared by `ssehub listen` and the hub's upstream relay
//! ([`crate::upstream`]): opening one connection (with `Last-Event-ID`), reading its frames
//! with an idle timeout, skipping a replayed last event, and the wait before the next
//! connection (`retry:`, `Retry-After`, capped backoff with jitter).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, StatusCode};

use super::http::{self, Backoff, Conn};
use super::{secs, HubUrl, MAX_BACKOFF};
use crate::parse::{Frame, Parser};

/// The reconnection time until a stream says `retry:` (what browsers use).
pub(crate) const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// The shortest wait between two connections.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// How one connection ended, or why it did not open.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The stream was open and ended: come back after `retry`.
    Ended,
    /// Not reached, a server error, or silent past the idle timeout: back off.
    Failed(String),
    /// `503`/`429`: wait as told, or back off.
    Busy(String, Option<Duration>),
    /// `204 No Content`: the server asks not to come back.
    Done,
    /// Any other status, or not an event stream: retrying would not change it.
    Refused(String),
}

/// One open event stream.
pub(crate) struct Stream {
    body: Incoming,
    parser: Parser,
    /// Held so the connection lives as long as its body is read.
    _conn: Conn,
}

impl Stream {
    /// Opens `url` once, sending `last_id` as `Last-Event-ID`.
    pub(crate) async fn open(
        url: &HubUrl,
        token: Option<&HeaderValue>,
        last_id: Option<&str>,
    ) -> Result<Stream, Outcome> {
        let mut conn = Conn::open(url).await.map_err(Outcome::Failed)?;
        let mut req =
            http::request(Method::GET, url, token, None, Bytes::new()).map_err(Outcome::Refused)?;
        let headers = req.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(id) = last_id {
            // An id with a control character cannot be a header; start over without it then.
            if let Ok(value) = HeaderValue::from_str(id) {
                headers.insert("last-event-id", value);
            }
        }
        let answer = match tokio::time::timeout(http::CONNECT_TIMEOUT, conn.send(req)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Err(Outcome::Failed(format!("{}: {why}", url.authority()))),
            Err(_) => return Err(Outcome::Failed(format!("{}: no answer", url.authority()))),
        };
        match answer.status() {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Err(Outcome::Done),
            s if s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::TOO_MANY_REQUESTS => {
                let after = http::retry_after(&answer);
                return Err(Outcome::Busy(http::reason(answer).await, after));
            }
            s if s.is_server_error() => return Err(Outcome::Failed(http::reason(answer).await)),
            _ => return Err(Outcome::Refused(http::reason(answer).await)),
        }
        let content_type = answer
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(Outcome::Refused(format!(
                "not an event stream (Content-Type: {content_type:?})"
            )));
        }
        Ok(Stream {
            body: answer.into_body(),
            parser: Parser::new(),
            _conn: conn,
        })
    }

    /// Reads the next chunk and parses it into `frames`; the stream's end, or silence for
    /// `idle` (a connection that died without closing), as an `Err`.
    pub(crate) async fn read(
        &mut self,
        idle: Option<Duration>,
        url: &HubUrl,
        frames: &mut Vec<Frame>,
    ) -> Result<(), Outcome> {
        loop {
            let next = match idle {
                Some(idle) => tokio::time::timeout(idle, self.body.frame()).await,
                None => Ok(self.body.frame().await),
            };
            match next {
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.parser.feed(&bytes, &mut |f| frames.push(f));
                        return Ok(());
                    }
                }
                // A cut stream ends like a closed one: resume from the last id.
                Ok(Some(Err(_)) | None) => return Err(Outcome::Ended),
                Err(_) => {
                    let quiet = secs(idle.unwrap_or_default());
                    return Err(Outcome::Failed(format!(
                        "{}: nothing came for {quiet}",
                        url.authority()
                    )));
                }
            }
        }
    }
}

/// The last event id seen, sent as `Last-Event-ID` on the next connection.
#[derive(Debug, Default)]
pub(crate) struct LastId {
    pub(crate) id: Option<String>,
    /// No event with an id has come on this connection yet.
    resumed: bool,
}

impl LastId {
    pub(crate) fn new(id: Option<String>) -> LastId {
        LastId {
            id: id.filter(|id| !id.is_empty()),
            resumed: true,
        }
    }

    /// A new connection opened.
    pub(crate) fn reconnected(&mut self) {
        self.resumed = true;
    }

    /// Notes an event's id; `true` if the event is the last one again (a server that
    /// replays from the id it was given, not after it): skip it.
    pub(crate) fn is_repeat(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        let again = self.resumed && self.id.as_deref() == Some(id);
        self.resumed = false;
        if !again {
            self.id = Some(id.to_string());
        }
        again
    }
}

/// The wait before the next connection: the stream's `retry:` after a stream ended, what
/// `Retry-After` says after a `503`/`429`, a capped backoff with jitter after errors.
#[derive(Debug)]
pub(crate) struct Reconnect {
    /// The stream's reconnection time (`retry:`).
    pub(crate) retry: Duration,
    backoff: Backoff,
}

impl Reconnect {
    pub(crate) fn new() -> Reconnect {
        Reconnect {
            retry: DEFAULT_RETRY,
            backoff: Backoff::new(DEFAULT_RETRY, MAX_BACKOFF),
        }
    }

    /// How long to wait after `outcome`; `None` for an outcome not to come back after.
    pub(crate) fn wait(&mut self, outcome: &Outcome) -> Option<Duration> {
        // Errors back off from the stream's own reconnection time.
        self.backoff.base = self.retry.max(MIN_WAIT);
        match outcome {
            Outcome::Ended => {
                self.backoff.reset();
                // Never at once: a server that says `retry: 0` and closes would be hammered.
                Some(self.retry.max(MIN_WAIT))
            }
            Outcome::Failed(_) => Some(self.backoff.next()),
            Outcome::Busy(_, after) => Some(after.unwrap_or_else(|| self.backoff.next())),
            Outcome::Done | Outcome::Refused(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_id_replayed_first_after_a_reconnect_is_a_repeat() {
        let mut last = LastId::new(Some("1".into()));
        assert!(last.is_repeat("1"));
        assert!(!last.is_repeat("2"));
        assert!(
            !last.is_repeat("2"),
            "only the first event after a reconnect"
        );
        last.reconnected();
        assert!(!last.is_repeat("1"), "ids that go back are new events");
        assert_eq!(last.id.as_deref(), Some("1"));
    }

    #[test]
    fn waits_follow_retry_retry_after_and_backoff() {
        let mut r = Reconnect::new();
        r.retry = Duration::from_millis(1500);
        assert_eq!(r.wait(&Outcome::Ended), Some(Duration::from_millis(1500)));
        let after = Some(Duration::from_secs(7));
        assert_eq!(r.wait(&Outcome::Busy(String::new(), after)), after);
        let backoff = r.wait(&Outcome::Failed(String::new())).unwrap();
        assert!(backoff >= Duration::from_millis(750) && backoff <= Duration::from_millis(1500));
        assert_eq!(r.wait(&Outcome::Refused(String::new())), None);
        r.retry = Duration::ZERO;
        assert_eq!(r.wait(&Outcome::Ended), Some(MIN_WAIT));
    }
}
