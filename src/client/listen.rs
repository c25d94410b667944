//! `ssehub listen`: prints a stream's events, reconnecting with `Last-Event-ID`.

use std::io::Write;
use std::time::Duration;

use super::source::{LastId, Outcome, Reconnect, Stream};
use super::{secs, stop_signal, ClientError, ListenArgs};
use crate::parse::{Frame, ParsedEvent};

/// Prints the events of `args`' stream to standard output until SIGINT or SIGTERM
/// (example in the [module documentation](super)).
///
/// # Errors
///
/// A refusal that retrying would not change (any status but `200`, `204`, `429` and `5xx`),
/// or an answer that is not an event stream.
pub async fn listen(args: &ListenArgs) -> Result<(), ClientError> {
    let url = args.stream_url();
    let mut last = LastId::new(args.last_event_id.clone());
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut reconnect = Reconnect::new();
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    loop {
        let outcome = tokio::select! {
            () = &mut stop => return Ok(()),
            outcome = one_stream(args, idle, &mut last, &mut reconnect) => outcome,
        };
        let Some(outcome) = outcome else {
            // Standard output is closed (`listen | head`): nothing more to do.
            return Ok(());
        };
        let wait = match &outcome {
            Outcome::Refused(reason) => {
                return Err(ClientError::Refused {
                    url: url.to_string(),
                    reason: reason.clone(),
                })
            }
            Outcome::Done => return Ok(()),
            _ => reconnect.wait(&outcome).unwrap_or(reconnect.retry),
        };
        match &outcome {
            Outcome::Failed(why) | Outcome::Busy(why, _) => {
                eprintln!("ssehub: {why}; again in {}", secs(wait));
            }
            _ => {}
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens the stream once and prints it until it ends; `None` once standard output is closed.
async fn one_stream(
    args: &ListenArgs,
    idle: Option<Duration>,
    last: &mut LastId,
    reconnect: &mut Reconnect,
) -> Option<Outcome> {
    let url = args.stream_url();
    let mut stream = match Stream::open(&url, args.token.as_ref(), last.id.as_deref()).await {
        Ok(stream) => stream,
        Err(outcome) => return Some(outcome),
    };
    last.reconnected();
    let mut frames = Vec::new();
    loop {
        if let Err(outcome) = stream.read(idle, &url, &mut frames).await {
            return Some(outcome);
        }
        // Locked per chunk, never across an await (the future stays `Send`).
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for frame in frames.drain(..) {
            match frame {
                Frame::Event(event) => {
                    if print(&mut out, args.json, last, &event).is_err() {
                        return None;
                    }
                }
                Frame::Retry(ms) => reconnect.retry = Duration::from_millis(ms),
                Frame::Comment(_) => {}
            }
        }
        if out.flush().is_err() {
            return None;
        }
    }
}

/// One event, as a JSON line or as its data lines; the hub's `gap` notice goes to standard
/// error in plain mode (it is not the stream's data).
fn print(
    out: &mut impl Write,
    json: bool,
    last: &mut LastId,
    event: &ParsedEvent,
) -> std::io::Result<()> {
    if last.is_repeat(&event.id) {
        return Ok(());
    }
    if json {
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
        let mut last = LastId::new(None);
        let mut out = Vec::new();
        for e in events {
            print(&mut out, json, &mut last, e).unwrap();
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
        let mut last = LastId::new(Some("1".into()));
        let mut out = Vec::new();
        for e in &[event("1", "message", "a"), event("2", "message", "b")] {
            print(&mut out, false, &mut last, e).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "b\n");
    }
}
