//! `ssehub listen`: prints a stream's events, reconnecting with `Last-Event-ID`.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, StatusCode};

use super::http::{self, Backoff, Conn};
use super::{secs, stop_signal, ClientError, HubUrl, ListenArgs, MAX_BACKOFF};
use crate::parse::{Frame, ParsedEvent, Parser};

/// The reconnection time until a stream says `retry:` (what browsers use).
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// How one connection ended.
enum Outcome {
    /// The stream was open and ended: come back after `retry`.
    Ended,
    /// Not reached, or a server error: back off.
    Failed(String),
    /// `503`/`429`: wait as told, or back off.
    Busy(String, Option<Duration>),
    /// `204 No Content`: the server asks not to come back.
    Done,
    /// Standard output is closed (`listen | head`): nothing more to do.
    OutputClosed,
}

/// Prints the events of `args`' stream to standard output until SIGINT or SIGTERM
/// (example in the [module documentation](super)).
///
/// # Errors
///
/// A refusal that retrying would not change (any status but `200`, `204`, `429` and `5xx`),
/// or an answer that is not an event stream.
pub async fn listen(args: &ListenArgs) -> Result<(), ClientError> {
    let url = args.stream_url();
    let mut state = State {
        json: args.json,
        last_id: args.last_event_id.clone().filter(|id| !id.is_empty()),
        resumed: true,
        retry: DEFAULT_RETRY,
    };
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut backoff = Backoff::new(DEFAULT_RETRY, MAX_BACKOFF);
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    loop {
        let outcome = tokio::select! {
            () = &mut stop => return Ok(()),
            outcome = one_stream(&url, args.token.as_ref(), idle, &mut state) => outcome?,
        };
        // Errors back off from the stream's own reconnection time.
        backoff.base = state.retry.max(Duration::from_millis(100));
        let wait = match outcome {
            Outcome::Ended => {
                backoff.reset();
                state.retry
            }
            Outcome::Failed(why) => {
                let wait = backoff.next();
                eprintln!("ssehub: {why}; again in {}", secs(wait));
                wait
            }
            Outcome::Busy(why, after) => {
                let wait = after.unwrap_or_else(|| backoff.next());
                eprintln!("ssehub: {why}; again in {}", secs(wait));
                wait
            }
            Outcome::Done | Outcome::OutputClosed => return Ok(()),
        };
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What carries over from one connection to the next.
struct State {
    json: bool,
    /// The last event id seen: sent as `Last-Event-ID`.
    last_id: Option<String>,
    /// No event with an id has come on this connection yet.
    resumed: bool,
    retry: Duration,
}

/// Opens the stream once and prints it until it ends.
async fn one_stream(
    url: &HubUrl,
    token: Option<&HeaderValue>,
    idle: Option<Duration>,
    state: &mut State,
) -> Result<Outcome, ClientError> {
    let mut conn = match Conn::open(url).await {
        Ok(conn) => conn,
        Err(why) => return Ok(Outcome::Failed(why)),
    };
    let mut req = http::request(Method::GET, url, token, None, Bytes::new())
        .map_err(ClientError::Unreachable)?;
    let headers = req.headers_mut();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(id) = &state.last_id {
        // An id with a control character cannot be a header; start over without it then.
        if let Ok(value) = HeaderValue::from_str(id) {
            headers.insert("last-event-id", value);
        }
    }
    let answer = match tokio::time::timeout(http::CONNECT_TIMEOUT, conn.send(req)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => return Ok(Outcome::Failed(format!("{}: {why}", url.authority()))),
        Err(_) => return Ok(Outcome::Failed(format!("{}: no answer", url.authority()))),
    };
    let status = answer.status();
    match status {
        StatusCode::OK => {}
        StatusCode::NO_CONTENT => return Ok(Outcome::Done),
        s if s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::TOO_MANY_REQUESTS => {
            let after = http::retry_after(&answer);
            return Ok(Outcome::Busy(http::reason(answer).await, after));
        }
        s if s.is_server_error() => return Ok(Outcome::Failed(http::reason(answer).await)),
        _ => {
            return Err(ClientError::Refused {
                url: url.to_string(),
                reason: http::reason(answer).await,
            })
        }
    }
    let content_type = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(ClientError::Refused {
            url: url.to_string(),
            reason: format!("not an event stream (Content-Type: {content_type:?})"),
        });
    }
    let mut body = answer.into_body();
    let mut parser = Parser::new();
    state.resumed = true;
    let mut frames = Vec::new();
    loop {
        let next = match idle {
            Some(idle) => tokio::time::timeout(idle, body.frame()).await,
            None => Ok(body.frame().await),
        };
        let bytes = match next {
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => bytes,
                Err(_) => continue,
            },
            // A cut stream ends like a closed one: resume from the last id.
            Ok(Some(Err(_)) | None) => return Ok(Outcome::Ended),
            Err(_) => {
                let why = format!(
                    "{}: nothing came for {}",
                    url.authority(),
                    secs(idle.unwrap_or_default())
                );
                return Ok(Outcome::Failed(why));
            }
        };
        parser.feed(&bytes, &mut |f| frames.push(f));
        // Locked per chunk, never across an await (the future stays `Send`).
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for frame in frames.drain(..) {
            match frame {
                Frame::Event(event) => {
                    if print(&mut out, state, &event).is_err() {
                        return Ok(Outcome::OutputClosed);
                    }
                }
                Frame::Retry(ms) => state.retry = Duration::from_millis(ms),
                Frame::Comment(_) => {}
            }
        }
        if out.flush().is_err() {
            return Ok(Outcome::OutputClosed);
        }
    }
}

/// One event, as a JSON line or as its data lines; the hub's `gap` notice goes to standard
/// error in plain mode (it is not the stream's data).
fn print(out: &mut impl Write, state: &mut State, event: &ParsedEvent) -> std::io::Result<()> {
    if !event.id.is_empty() {
        // The first id after a reconnect equal to the last one printed is that event again
        // (a server that replays from the id it was given, not after it).
        let again = state.resumed && state.last_id.as_deref() == Some(event.id.as_str());
        state.resumed = false;
        if again {
            return Ok(());
        }
        state.last_id = Some(event.id.clone());
    }
    if state.json {
        let line = serde_json::to_string(&JsonLine {
            id: &event.id,
            event: &event.event,
            data: &event.data,
        })?;
        writeln!(out, "{line}")
    } else if event.event == "gap" {
        eprintln!("ssehub: gap in the stream: {}", event.data);
        Ok(())
    } else {
        writeln!(out, "{}", event.data)
    }
}

/// `--json`'s line, its keys in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    id: &'a str,
    event: &'a str,
    data: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, name: &str, data: &str) -> ParsedEvent {
        ParsedEvent {
            id: id.into(),
            event: name.into(),
            data: data.into(),
        }
    }

    fn printed(json: bool, events: &[ParsedEvent]) -> String {
        let mut state = State {
            json,
            last_id: None,
            resumed: true,
            retry: DEFAULT_RETRY,
        };
        let mut out = Vec::new();
        for e in events {
            print(&mut out, &mut state, e).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_prints_data_lines_and_json_one_object_a_line() {
        let events = [
            event("1", "message", "a\nb"),
            event("2", "status", "{\"up\":1}"),
        ];
        assert_eq!(printed(false, &events), "a\nb\n{\"up\":1}\n");
        assert_eq!(
            printed(true, &events),
            "{\"id\":\"1\",\"event\":\"message\",\"data\":\"a\\nb\"}\n\
             {\"id\":\"2\",\"event\":\"status\",\"data\":\"{\\\"up\\\":1}\"}\n"
        );
    }

    #[test]
    fn the_last_id_replayed_after_a_reconnect_is_not_printed_again() {
        let events = [event("1", "message", "a"), event("1", "message", "b")];
        assert_eq!(printed(false, &events), "a\nb\n");
        let mut state = State {
            json: false,
            last_id: Some("1".into()),
            resumed: true,
            retry: DEFAULT_RETRY,
        };
        let mut out = Vec::new();
        for e in &[event("1", "message", "a"), event("2", "message", "b")] {
            print(&mut out, &mut state, e).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "b\n");
    }
}
