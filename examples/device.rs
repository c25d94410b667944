//! A device's event server, built the way a small device's web server (an ESP32 running
//! esp_http_server) builds it: a fixed table of client slots (`503 Server Busy` when full), a
//! queue of log lines sent to every open socket, `status` events with JSON, and a socket dropped
//! as soon as a send to it fails. It keeps no history: a client gets what is sent while it is
//! connected, nothing else. That is why one puts a hub in front of it.
//!
//! It serves its page at `/` (`examples/device/index.html`, which opens
//! `new EventSource('event')`) and the stream at `/event`. Every 200 ms it logs a line (a `data:`
//! frame with an `id:`, a counter that starts again at 1 when the device restarts); every second
//! it sends an `event: status` frame (no id) with JSON.
//!
//! ```text
//! cargo run --example device -- --port 8000 --slots 4
//! ```
//!
//! `--port 0` picks a free port; the port is printed on stderr as
//! `device: listening on http://127.0.0.1:PORT`. Each stream opened or dropped is logged as
//! `device: stream opened (N of SLOTS slots in use)` (or `dropped`): how a test sees that a hub
//! in front holds one connection, never more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ssehub::event::{encode, encode_without_id};
use ssehub::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::time::timeout;

/// The device's page, served at `/`.
const PAGE: &str = include_str!("device/index.html");
const LOG_EVERY: Duration = Duration::from_millis(200);
/// A status event every this many log lines (every second).
const STATUS_EVERY: u64 = 5;
/// A send that takes longer than this counts as failed: the socket is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a client has to send its request head, and the most bytes it may have.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 4096;
/// Frames waiting to be sent; a line that finds the queue full is lost, as on the device.
const QUEUE: usize = 64;

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nConnection: close\r\n\r\n";

/// The device's state: its client table and counters.
struct Device {
    /// The fixed table of client slots: each is empty or holds one open stream.
    slots: Mutex<Vec<Option<TcpStream>>>,
    started: Instant,
    lines: AtomicU64,
}

impl Device {
    /// The JSON of a `status` event; `clients` is given by callers that hold the table.
    fn status(&self, clients: usize, slots: usize) -> String {
        serde_json::json!({
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "clients": clients,
            "slots": slots,
            "log_lines": self.lines.load(Ordering::Relaxed),
        })
        .to_string()
    }
}

#[tokio::main]
async fn main() {
    let (port, slots) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("device: {why}\nusage: device [--port PORT] [--slots N]");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("device: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    let port = listener.local_addr().map_or(port, |a| a.port());
    eprintln!("device: listening on http://127.0.0.1:{port}");

    let device = Arc::new(Device {
        slots: Mutex::new((0..slots).map(|_| None).collect()),
        started: Instant::now(),
        lines: AtomicU64::new(0),
    });
    let (queue, frames) = mpsc::channel(QUEUE);
    tokio::spawn(fan_out(device.clone(), frames));
    tokio::spawn(produce(device.clone(), queue));
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(handle(device.clone(), socket));
            }
            // Out of file descriptors and the like: wait a little, as the device's server does.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `--port PORT` (default 8000, 0: any free port) and `--slots N` (default 4).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(u16, usize), String> {
    let (mut port, mut slots) = (8000, 4);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value:?}"))?,
            "--slots" => {
                slots = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad slot count {value:?}"))?
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok((port, slots))
}

/// The device's work: a log line every 200 ms, a status event every second, into the queue.
async fn produce(device: Arc<Device>, queue: mpsc::Sender<Bytes>) {
    let mut tick = tokio::time::interval(LOG_EVERY);
    for n in 1u64.. {
        tick.tick().await;
        let ms = device.started.elapsed().as_millis();
        let line = Event::new(format!("I ({ms}) device: log line {n}"));
        device.lines.store(n, Ordering::Relaxed);
        // `try_send`: the device never waits for its clients; a line the queue has no room
        // for is lost.
        let _ = queue.try_send(encode(&n.to_string(), &line));
        if n % STATUS_EVERY == 0 {
            let status = {
                let table = device.slots.lock().await;
                device.status(table.iter().flatten().count(), table.len())
            };
            let _ = queue.try_send(encode_without_id("status", &status));
        }
    }
}

/// Sends each queued frame to every open socket, one after the other; a socket whose send fails
/// (or stalls) is dropped, which closes it and frees its slot.
async fn fan_out(device: Arc<Device>, mut frames: mpsc::Receiver<Bytes>) {
    let mut dropped = 0;
    while let Some(frame) = frames.recv().await {
        let mut table = device.slots.lock().await;
        for slot in table.iter_mut() {
            let Some(socket) = slot else { continue };
            let sent = timeout(SEND_TIMEOUT, socket.write_all(&frame)).await;
            if !matches!(sent, Ok(Ok(()))) {
                *slot = None;
                dropped += 1;
            }
        }
        if dropped > 0 {
            let in_use = table.iter().flatten().count();
            log(format_args!(
                "stream dropped ({in_use} of {} slots in use)",
                table.len()
            ));
            dropped = 0;
        }
    }
}

/// One connection: one request, answered, then the connection is closed (or kept as a stream).
async fn handle(device: Arc<Device>, mut socket: TcpStream) {
    let Ok(Some(head)) = timeout(HEAD_TIMEOUT, read_head(&mut socket)).await else {
        return respond(socket, "400 Bad Request", "text/plain", "bad request\n").await;
    };
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("");
    let target = request_line.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/") => respond(socket, "200 OK", "text/html; charset=utf-8", PAGE).await,
        ("GET", "/event") => open_stream(&device, socket).await,
        (_, "/" | "/event") => {
            respond(socket, "405 Method Not Allowed", "text/plain", "GET only\n").await
        }
        _ => respond(socket, "404 Not Found", "text/plain", "not found\n").await,
    }
}

/// Takes a free slot for the stream, or answers `503 Server Busy`.
async fn open_stream(device: &Device, mut socket: TcpStream) {
    let mut table = device.slots.lock().await;
    let Some(free) = table.iter().position(Option::is_none) else {
        drop(table);
        return respond(socket, "503 Server Busy", "text/plain", "Server Busy\n").await;
    };
    // The head and the current status, so that a new client has something to show at once.
    let clients = table.iter().flatten().count() + 1;
    let status = encode_without_id("status", &device.status(clients, table.len()));
    let opened = timeout(SEND_TIMEOUT, async {
        socket.write_all(STREAM_HEAD).await?;
        socket.write_all(&status).await
    })
    .await;
    if matches!(opened, Ok(Ok(()))) {
        table[free] = Some(socket);
        log(format_args!(
            "stream opened ({clients} of {} slots in use)",
            table.len()
        ));
    }
}

/// Reads up to the blank line that ends a request head; `None` if the client closes first, or
/// sends more than [`MAX_HEAD`] bytes or something that is not text.
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return None;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// A whole answer, then the connection is closed (the device serves one request per connection).
async fn respond(mut socket: TcpStream, status: &str, content_type: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = timeout(SEND_TIMEOUT, async {
        socket.write_all(answer.as_bytes()).await?;
        socket.shutdown().await
    })
    .await;
}

/// A line on stderr; one nobody reads any more is left out (`eprintln!` would panic).
fn log(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "device: {line}");
}
