//! `ssehub publish`: one event, or every line of standard input in batches, each event with
//! an id of this run's own so that a retried request is never published twice.

use std::fmt::Write as _;
use std::io::BufRead;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use tokio::sync::mpsc;

use super::http::{self, Backoff, Conn};
use super::{secs, ClientError, HubUrl, PublishArgs};

/// Lines in one request, at most.
pub const MAX_BATCH_LINES: usize = 1000;
/// Bytes of data in one request, about (well under the hub's default `--max-body`, 1 MiB).
pub const MAX_BATCH_BYTES: usize = 256 << 10;
/// A request unanswered for this long is retried (safe: its ids are the same).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// A single publish (not `--stdin`) stops retrying after this long.
const SINGLE_GIVE_UP: Duration = Duration::from_secs(30);
/// Lines read ahead of the hub, at most (then reading waits).
const READ_AHEAD: usize = 4 * MAX_BATCH_LINES;

/// Publishes `args`' event, or with `--stdin` every line of standard input (see the
/// [module documentation](super) for retries).
///
/// # Errors
///
/// A refusal that retrying would not change (`400`, `401`, `403`, `413`, ...), standard input
/// failing, or a single publish unreachable for 30 s.
pub async fn publish(args: &PublishArgs) -> Result<(), ClientError> {
    let url = args.publish_url();
    let mut client = Client {
        url,
        auth: args.token.clone(),
        conn: None,
        ids: IdMaker::new(),
    };
    match &args.data {
        Some(data) if !args.stdin => {
            let id = client.ids.next();
            let url = match client.url.has_query("id") {
                true => client.url.clone(),
                false => client.url.clone().with_query("id", &id),
            };
            let give_up = Instant::now() + SINGLE_GIVE_UP;
            let body = Bytes::from(data.clone());
            let answer = client
                .send(&url, "text/plain; charset=utf-8", body, Some(give_up))
                .await?;
            println!("{}", answer.trim_end());
            Ok(())
        }
        _ => {
            let (tx, rx) = mpsc::channel(READ_AHEAD);
            // A thread of its own: a read blocked on a terminal or `tail -F` must not keep the
            // runtime from ending when the hub refuses.
            std::thread::spawn(move || read_lines(std::io::stdin().lock(), &tx));
            let sent = stdin_batches(&mut client, rx).await?;
            eprintln!("ssehub: published {sent} lines");
            Ok(())
        }
    }
}

/// Sends batches of what `lines` brings until its end; returns how many lines went.
async fn stdin_batches(
    client: &mut Client,
    mut lines: mpsc::Receiver<std::io::Result<String>>,
) -> Result<u64, ClientError> {
    let mut sent = 0;
    let mut carried: Option<String> = None;
    loop {
        let first = match carried.take() {
            Some(line) => line,
            None => match lines.recv().await {
                Some(line) => line.map_err(|e| ClientError::Io(format!("standard input: {e}")))?,
                None => return Ok(sent),
            },
        };
        // Whatever has already arrived goes along, within the batch's bounds.
        let mut bytes = first.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_LINES {
            let Ok(line) = lines.try_recv() else { break };
            let line = line.map_err(|e| ClientError::Io(format!("standard input: {e}")))?;
            if bytes + line.len() > MAX_BATCH_BYTES {
                carried = Some(line);
                break;
            }
            bytes += line.len();
            batch.push(line);
        }
        let items: Vec<Item<'_>> = batch
            .iter()
            .map(|data| Item {
                id: client.ids.next(),
                data,
            })
            .collect();
        let body = serde_json::to_vec(&items)
            .map_err(|e| ClientError::Io(format!("cannot write a batch: {e}")))?;
        let url = client.url.clone();
        client
            .send(&url, "application/json", Bytes::from(body), None)
            .await?;
        sent += items.len() as u64;
    }
}

/// One element of a batch.
#[derive(serde::Serialize)]
struct Item<'a> {
    id: String,
    data: &'a str,
}

/// Reads lines (without their LF or CRLF; not UTF-8 is replaced) until end of input.
fn read_lines(mut input: impl BufRead, tx: &mpsc::Sender<std::io::Result<String>>) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let line = match input.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let end = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let end = end.strip_suffix(b"\r").unwrap_or(end);
                Ok(String::from_utf8_lossy(end).into_owned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = line.is_err();
        if tx.blocking_send(line).is_err() || failed {
            return;
        }
    }
}

/// Ids of this run's own: 16 random hex digits, `-`, a counter (never the hub's shape, 12 hex
/// digits).
struct IdMaker {
    prefix: String,
    next: u64,
}

impl IdMaker {
    fn new() -> IdMaker {
        let mut prefix = String::with_capacity(16);
        let random = getrandom::u64().unwrap_or_else(|_| {
            // A clock is unique enough per run when the OS has no randomness to give.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let _ = write!(prefix, "{random:016x}");
        IdMaker { prefix, next: 0 }
    }

    fn next(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// The hub, one request at a time, on one kept-alive connection.
struct Client {
    url: HubUrl,
    auth: Option<HeaderValue>,
    conn: Option<Conn>,
    ids: IdMaker,
}

impl Client {
    /// Sends one request until it is acknowledged (or, past `give_up`, fails); returns the
    /// answer's body.
    async fn send(
        &mut self,
        url: &HubUrl,
        content_type: &'static str,
        body: Bytes,
        give_up: Option<Instant>,
    ) -> Result<String, ClientError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut tries = 0u32;
        loop {
            tries += 1;
            let why = match self.try_once(url, content_type, body.clone()).await {
                Ok(answer) if answer.status == StatusCode::OK => {
                    if tries > 1 {
                        eprintln!("ssehub: published after {tries} tries");
                    }
                    return Ok(answer.text);
                }
                Ok(answer) if answer.status == StatusCode::CONFLICT && tries > 1 => {
                    // Batches are all or nothing: an id of ours the hub has means the earlier
                    // try went through and only its answer was lost.
                    eprintln!("ssehub: the hub had this request already (409 on a retry): counted as published");
                    return Ok(String::new());
                }
                Ok(answer) if http::retryable(answer.status) => Retry {
                    reason: answer.reason(),
                    after: answer.after,
                },
                Ok(answer) => {
                    return Err(ClientError::Refused {
                        url: url.to_string(),
                        reason: answer.reason(),
                    })
                }
                Err(reason) => {
                    self.conn = None;
                    Retry {
                        reason,
                        after: None,
                    }
                }
            };
            let wait = why.after.unwrap_or_else(|| backoff.next());
            if give_up.is_some_and(|at| Instant::now() + wait > at) {
                return Err(ClientError::Unreachable(format!(
                    "{url}: {} (gave up after {tries} tries)",
                    why.reason
                )));
            }
            eprintln!("ssehub: {}; again in {}", why.reason, secs(wait));
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: the answer, or why there was none.
    async fn try_once(
        &mut self,
        url: &HubUrl,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, String> {
        if !self.conn.as_ref().is_some_and(Conn::is_open) {
            self.conn = Some(Conn::open(url).await?);
        }
        let conn = self.conn.as_mut().ok_or("not connected")?;
        let req = http::request(
            Method::POST,
            url,
            self.auth.as_ref(),
            Some(content_type),
            body,
        )?;
        let exchange = async {
            let answer = conn.send(req).await?;
            let status = answer.status();
            let after = http::retry_after(&answer);
            let text = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("answer cut: {e}"))?
                .to_bytes();
            let text = String::from_utf8_lossy(&text).into_owned();
            Ok(Answer {
                status,
                after,
                text,
            })
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{}: no answer in {}",
                url.authority(),
                secs(ANSWER_TIMEOUT)
            )),
        }
    }
}

/// Why to retry, and when.
struct Retry {
    reason: String,
    after: Option<Duration>,
}

/// A hub's answer.
struct Answer {
    status: StatusCode,
    /// Its `Retry-After`.
    after: Option<Duration>,
    text: String,
}

impl Answer {
    /// The one-line reason: the status and the body's first line.
    fn reason(&self) -> String {
        match self.text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => format!("{}: {line}", self.status),
            None => self.status.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_this_runs_own_and_never_the_hubs_shape() {
        let mut ids = IdMaker::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.ends_with("-0") && b.ends_with("-1"));
        assert!(crate::event::check_id(&a).is_ok(), "{a}");
        assert_ne!(IdMaker::new().prefix, ids.prefix);
    }

    #[test]
    fn lines_lose_their_line_ends_and_keep_everything_else() {
        let (tx, mut rx) = mpsc::channel(10);
        read_lines(&b"one\r\ntwo\n\nlast \xff"[..], &tx);
        let mut got = Vec::new();
        while let Ok(line) = rx.try_recv() {
            got.push(line.unwrap());
        }
        assert_eq!(got, ["one", "two", "", "last \u{fffd}"]);
    }

    #[test]
    fn a_refusal_is_one_line() {
        let answer = Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            after: None,
            text: "\nfull\nmore\n".into(),
        };
        assert_eq!(answer.reason(), "503 Service Unavailable: full");
    }
}
