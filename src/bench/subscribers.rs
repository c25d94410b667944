//! Subscribers: open a stream (on a fresh or a reused connection), then read, decode and check
//! every delivery.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::http1::{self, Body, Url};
use super::{lock, Shared};
use crate::parse::{FrameRef, Parser};

thread_local! {
    /// Every subscriber on a thread reads into this one buffer: idle subscribers hold none.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// One subscriber's tallies; flushed to `Shared` after every read.
pub(super) struct Tally {
    seen: Vec<u64>,
    last: Vec<u64>,
    unique: u64,
    flushed: u64,
    duplicated: u64,
    out_of_order: u64,
    malformed: u64,
    latencies: Vec<u64>,
}

impl Tally {
    pub(super) fn new(shared: &Shared) -> Tally {
        Tally {
            seen: vec![0; shared.events.div_ceil(64) as usize],
            last: vec![0; shared.publishers],
            unique: 0,
            flushed: 0,
            duplicated: 0,
            out_of_order: 0,
            malformed: 0,
            latencies: Vec::new(),
        }
    }

    pub(super) fn event(&mut self, data: &str, shared: &Shared, now_us: u64) {
        let mut fields = data.split_ascii_whitespace().map(str::parse::<u64>);
        let (Some(Ok(p)), Some(Ok(seq)), Some(Ok(sent))) =
            (fields.next(), fields.next(), fields.next())
        else {
            self.malformed += 1;
            return;
        };
        if seq >= shared.events || p as usize >= shared.publishers {
            self.malformed += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        // Each publisher sends increasing sequence numbers; `last` holds the newest + 1.
        let last = &mut self.last[p as usize];
        if seq + 1 < *last {
            self.out_of_order += 1;
        } else {
            *last = seq + 1;
        }
        self.latencies.push(now_us.saturating_sub(sent).max(1));
    }

    pub(super) fn flush(&mut self, shared: &Shared, now_us: u64) {
        shared
            .received
            .fetch_add(self.unique - self.flushed, Ordering::AcqRel);
        self.flushed = self.unique;
        for (counter, value) in [
            (&shared.duplicated, &mut self.duplicated),
            (&shared.out_of_order, &mut self.out_of_order),
            (&shared.malformed, &mut self.malformed),
        ] {
            if *value > 0 {
                counter.fetch_add(std::mem::take(value), Ordering::Relaxed);
            }
        }
        if !self.latencies.is_empty() {
            shared.last_receive_us.fetch_max(now_us, Ordering::Relaxed);
            let mut h = lock(&shared.latency);
            for l in self.latencies.drain(..) {
                let _ = h.record(l);
            }
        }
    }
}

pub(super) async fn subscriber(
    shared: Arc<Shared>,
    url: Url,
    first_request: Option<Arc<str>>,
    topic: usize,
    gate: Arc<Semaphore>,
) {
    let opened = {
        let _permit = gate.acquire().await;
        open_stream(&url, first_request.as_deref()).await
    };
    let (mut stream, mut body, rest) = match opened {
        Opened::Stream(stream, body, rest) => (stream, body, rest),
        Opened::Refused(answer) => {
            *lock(&shared.refused).entry(answer).or_default() += 1;
            shared.resolved.fetch_add(1, Ordering::AcqRel);
            return;
        }
        Opened::Failed(why) => {
            *lock(&shared.failed).entry(why).or_default() += 1;
            shared.resolved.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    shared.on_topic[topic].fetch_add(1, Ordering::AcqRel);
    shared.connected.fetch_add(1, Ordering::AcqRel);
    shared.resolved.fetch_add(1, Ordering::AcqRel);
    let mut parser = Parser::new();
    let mut tally = Tally::new(&shared);
    let feed = |bytes: &[u8], body: &mut Body, parser: &mut Parser, tally: &mut Tally| {
        let now_us = shared.start.elapsed().as_micros() as u64;
        let decoded = body.decode(bytes, &mut |payload| {
            parser.feed_ref(payload, &mut |frame| {
                if let FrameRef::Event { data, .. } = frame {
                    tally.event(data, &shared, now_us);
                }
            })
        });
        tally.flush(&shared, now_us);
        decoded.is_ok() && !body.is_done()
    };
    if !feed(&rest, &mut body, &mut parser, &mut tally) {
        shared.ended_by_server.fetch_add(1, Ordering::Relaxed);
        return;
    }
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let outcome = READ_BUF.with_borrow_mut(|buf| match stream.try_read(buf) {
            Ok(0) => Some(false),
            Ok(n) => Some(feed(&buf[..n], &mut body, &mut parser, &mut tally)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(_) => Some(false),
        });
        if outcome == Some(false) {
            break;
        }
    }
    shared.ended_by_server.fetch_add(1, Ordering::Relaxed);
    let _ = stream.shutdown().await;
}

enum Opened {
    /// A 200 `text/event-stream`: the socket, its body decoder and the bytes read past the head.
    Stream(TcpStream, Body, Vec<u8>),
    /// Any other answer, as `"<status> <media type>"`.
    Refused(String),
    /// No answer, or (with a first request) the connection was not kept: what went wrong.
    Failed(String),
}

/// Opens one stream: on a fresh connection, or after a plain GET for `first_request` on the same
/// connection.
async fn open_stream(url: &Url, first_request: Option<&str>) -> Opened {
    let mut stream = match TcpStream::connect(&url.authority).await {
        Ok(s) => s,
        Err(e) => return Opened::Failed(format!("{} on connect", e.kind())),
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    if let Some(path) = first_request {
        let why = match http1::get(&mut stream, &url.authority, path, &mut buf).await {
            Err(e) => Some(format!("GET {path}: {}", e.kind())),
            Ok((head, _)) if !(200..300).contains(&head.status) => {
                Some(format!("GET {path} answered {}", head.status))
            }
            // The scenario is one request, then the stream, on one TCP connection: a server that
            // says it will close would turn it into a fresh-connection run.
            Ok((_, false)) => Some(format!("GET {path}: the server closes the connection")),
            Ok(_) if !buf.is_empty() => Some(format!("GET {path}: bytes after the answer")),
            Ok(_) => None,
        };
        if let Some(why) = why {
            return Opened::Failed(why);
        }
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
        url.target, url.authority
    );
    let head = match stream.write_all(request.as_bytes()).await {
        Ok(()) => http1::read_head(&mut stream, &mut buf).await,
        Err(e) => Err(e),
    };
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            return Opened::Failed(match first_request {
                // Nothing came back on the kept connection: the server closed it after the first
                // answer (EOF, or a reset when our second request reached a closed socket).
                Some(path) if buf.is_empty() => format!("closed by the server after GET {path}"),
                _ => format!("{} before the stream's answer", e.kind()),
            });
        }
    };
    let media_type = head.media_type();
    if head.status != 200 || media_type.as_deref() != Some("text/event-stream") {
        return Opened::Refused(format!(
            "{} {}",
            head.status,
            media_type.as_deref().unwrap_or("(no content type)")
        ));
    }
    Opened::Stream(stream, head.body_kind(), buf)
}
