//! Shared test helpers: the real `ssehub` binary on an ephemeral port, a real HTTP client
//! (reqwest) reading streams through our parser, and raw sockets where a test needs control.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssehub::parse::{Frame, ParsedEvent, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(10);

/// An HS256 JWT with these claims, signed with `secret`.
pub fn hs256(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Runs this binary's test `test` again inside a network namespace of its own (made here and
/// deleted after, with its loopback up), with `inside` set in its environment so that the run
/// does the work there; fails with that run's output unless it passed. A test that drops packets
/// (iptables on the namespace's loopback) touches nothing else this way. Needs root.
pub fn run_in_network_namespace(name: &str, test: &str, inside: &str) {
    let ns = format!("{name}-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &ns]);
    let outcome = std::panic::catch_unwind(|| {
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture"])
            .env(inside, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "inside the namespace:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    ip(&["netns", "del", &ns]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A running hub process, killed when dropped.
pub struct HubProcess {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The loopback publish listener (`--publish-listen`), where publishing needs no token.
    pub publish_addr: Option<String>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl HubProcess {
    /// `ssehub serve --listen 127.0.0.1:0 <args>`, with no SSEHUB_* from the environment.
    pub fn start(args: &[&str]) -> HubProcess {
        let mut cmd = Self::command(args);
        cmd.args(["--listen", "127.0.0.1:0"]);
        Self::spawn(cmd)
    }

    /// The command, for tests that set env or stdin themselves.
    pub fn command(args: &[&str]) -> Command {
        let mut cmd = bare_command();
        cmd.arg("serve").args(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// Spawns and waits for the "listening on" line.
    pub fn spawn(mut cmd: Command) -> HubProcess {
        let mut child = cmd.spawn().expect("start ssehub");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            // The hub prints its publish listener (if any) before the listening line.
            let mut publish_addr = None;
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("publish without a token on http://").nth(1) {
                    publish_addr = rest.split('/').next().map(str::to_string);
                }
                // `http://` or, with TLS, `https://`: the port is what follows the last colon.
                let listening = line
                    .split("listening on http")
                    .nth(1)
                    .map(|rest| rest.rsplit(':').next().unwrap_or("").to_string());
                // Keep the line before saying the hub is up: a test may read stderr_text() at once.
                lines.lock().unwrap().push(line);
                if let Some(port) = listening {
                    let _ = tx.send((format!("127.0.0.1:{port}"), publish_addr.clone()));
                }
            }
        });
        let (addr, publish_addr) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("ssehub did not start: {:?}", stderr.lock().unwrap())
        });
        HubProcess {
            child,
            addr,
            publish_addr,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the publish listener (anonymous publishing), or on the main one without it.
    pub fn publish_url(&self, path: &str) -> String {
        let addr = self.publish_addr.as_deref().unwrap_or(&self.addr);
        format!("http://{addr}{path}")
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// POST /publish with a raw body. Returns status and body text.
    pub async fn publish_raw(&self, query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let resp = client()
            .post(self.publish_url(&format!("/publish{query}")))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .expect("publish");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// POST /publish with a JSON body. Returns status and body text.
    pub async fn publish_json(&self, json: &str) -> (u16, String) {
        let resp = client()
            .post(self.publish_url("/publish"))
            .header("content-type", "application/json")
            .body(json.to_string())
            .send()
            .await
            .expect("publish");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// Publishes, expecting 200; returns the answer as JSON.
    pub async fn publish_ok(&self, query: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.publish_raw(query, body.to_string()).await;
        assert_eq!(status, 200, "publish failed: {text}");
        serde_json::from_str(&text).expect("publish answer is JSON")
    }

    /// The whole /metrics page.
    pub async fn metrics_text(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// A value from /metrics.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .expect("metric value")
    }

    /// Polls a metric until `ok` holds or WAIT passes; returns the last value.
    pub async fn wait_metric(&self, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.metric(name).await;
            if ok(v) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens a stream with a fresh client (its own connection).
    pub async fn subscribe(&self, query: &str) -> EventStream {
        EventStream::open(&self.url(&format!("/events{query}")), &[]).await
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The hub process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Sends a signal; returns how long the process took to exit and its exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> (Duration, Option<i32>) {
        let start = Instant::now();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (start.elapsed(), status.code());
            }
            if start.elapsed() > Duration::from_secs(20) {
                return (start.elapsed(), None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ssehub binary with no SSEHUB_* variables from the test's environment, but for its publish
/// listener on an ephemeral port (tests run side by side; a flag still wins).
pub fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SSEHUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SSEHUB_PUBLISH_LISTEN", "127.0.0.1:0");
    cmd
}

/// A client that does not share connections between tests' calls.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Why a stream read stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    Closed,
    Timeout,
}

/// An open event stream read through our parser.
pub struct EventStream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    parser: Parser,
    frames: VecDeque<Frame>,
}

impl EventStream {
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut req = client().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("subscribe timed out")
            .expect("subscribe");
        EventStream {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            response,
            parser: Parser::new(),
            frames: VecDeque::new(),
        }
    }

    pub async fn next_frame(&mut self, within: Duration) -> Result<Frame, Stop> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(f);
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    let frames = &mut self.frames;
                    self.parser.feed(&bytes, &mut |f| frames.push_back(f));
                }
                Ok(Ok(None)) | Ok(Err(_)) => return Err(Stop::Closed),
                Err(_) => return Err(Stop::Timeout),
            }
        }
    }

    /// The next dispatched event (comments and retry skipped).
    pub async fn next_event(&mut self) -> ParsedEvent {
        self.try_next_event(WAIT).await.expect("expected an event")
    }

    pub async fn try_next_event(&mut self, within: Duration) -> Result<ParsedEvent, Stop> {
        loop {
            if let Frame::Event(e) = self.next_frame(within).await? {
                return Ok(e);
            }
        }
    }

    /// Reads `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<ParsedEvent> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_event().await);
        }
        v
    }

    /// Reads to the opening (comment and retry), so the subscription is surely registered.
    pub async fn opened(mut self) -> EventStream {
        assert_eq!(self.status, 200);
        match self.next_frame(WAIT).await {
            Ok(Frame::Comment(_)) => {}
            other => panic!("expected the opening comment, got {other:?}"),
        }
        match self.next_frame(WAIT).await {
            Ok(Frame::Retry(_)) => {}
            other => panic!("expected retry:, got {other:?}"),
        }
        self
    }
}

/// A raw HTTP/1.1 GET: returns the socket and the response head (status line and headers).
pub async fn raw_get(
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (TcpStream, u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (stream, status, head)
}

/// A raw stream request from a chosen loopback source address (to `addr`, 127.0.0.1 as always).
pub async fn get_from(source: &str, addr: &str, target: &str) -> (TcpStream, u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (stream, status, head)
}

/// Reads a chunked event stream from a raw socket until `n` events came (or WAIT passes).
pub async fn raw_events(stream: &mut TcpStream, n: usize) -> Vec<ParsedEvent> {
    let mut body = ssehub::bench::http1::Body::chunked();
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.len() < n {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        let Ok(Ok(len)) = read else { break };
        if len == 0 {
            break;
        }
        body.decode(&buf[..len], &mut |payload| {
            parser.feed(payload, &mut |f| {
                if let Frame::Event(e) = f {
                    events.push(e)
                }
            })
        })
        .expect("chunked framing");
    }
    events
}

/// Reads byte by byte up to the blank line after the response head.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("head timed out")
            .expect("read head");
        assert!(
            n > 0,
            "closed before the head ended: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `GET path` on `stream` and reads its whole response (it must have a content-length and
/// keep the connection open): what a browser does before it opens an `EventSource` on the same
/// connection. Returns the response head.
pub async fn plain_request_first(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .expect("send the first request");
    let head = read_head(stream).await;
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("connection: close"), "{head}");
    let len: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .expect("a length");
    let mut body = vec![0u8; len];
    tokio::time::timeout(WAIT, stream.read_exact(&mut body))
        .await
        .expect("body timed out")
        .expect("read body");
    head
}

/// Reads until the peer closes (or `within` passes); returns what came and whether it closed.
pub async fn read_to_close(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (all, false),
        }
    }
}

/// The data of each event.
pub fn data(events: &[ParsedEvent]) -> Vec<String> {
    events.iter().map(|e| e.data.clone()).collect()
}
