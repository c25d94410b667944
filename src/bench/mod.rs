//! `ssehub bench`: a load generator for any SSE server (ssehub, Nchan, Mercure, a hand-written
//! axum endpoint).
//!
//! It opens N subscriber connections, publishes M events through a configurable publish request,
//! and checks every delivery: each event's data carries `<publisher> <sequence> <send time>`, so a
//! subscriber can tell lost, duplicated and out-of-order deliveries apart and measure
//! publish-to-receive latency. Subscribers are raw sockets read into one buffer per thread, decoded
//! by our chunked decoder and our event-stream parser without allocating per event, so the bench
//! stays lighter than what it measures.
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] bench: ssehub::bench::BenchArgs }
//! let cli = Cli::parse_from(["bench", "--subscribers", "10", "--events", "100"]);
//! let report = ssehub::bench::run(&cli.bench).unwrap();
//! assert_eq!(report.deliveries.lost, 0);
//! ```

pub mod http1;
mod report;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::parse::{FrameRef, Parser};
use http1::{Body, Url};
pub use report::Report;

/// `ssehub bench` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Each event's data is \"<publisher> <sequence> <microseconds since start> \" padded with x \
    to --size bytes. Every flag has an environment twin: SSEHUB_BENCH_<FLAG>."
)]
pub struct BenchArgs {
    /// The event stream to subscribe to. A base URL (http://HOST:PORT, no path or just /) means
    /// that ssehub's /events?topic=bench, and its /publish?topic=bench unless --publish-url is
    /// given (topic bench{topic} with --topics above 1). A URL with a path is used as it is.
    #[arg(
        long,
        env = "SSEHUB_BENCH_URL",
        value_name = "URL",
        default_value = DEFAULT_URL,
        help_heading = "Target"
    )]
    pub url: String,

    /// Where to publish (each request is a POST). Default: the /publish of a base --url, else
    /// http://127.0.0.1:8080/publish?topic=bench. A hub that answers 401 or 403 stops the bench:
    /// it wants a token (--header) or its loopback publish listener's URL here.
    #[arg(
        long,
        env = "SSEHUB_BENCH_PUBLISH_URL",
        value_name = "URL",
        help_heading = "Target"
    )]
    pub publish_url: Option<String>,

    /// Publish body: raw (the data), json ({"data": ...}, an array with --batch), or form
    /// (<--form-field>=<data>, after --form-extra).
    #[arg(long, env = "SSEHUB_BENCH_BODY", value_name = "raw|json|form", default_value = "raw",
          value_parser = ["raw", "json", "form"], help_heading = "Target")]
    pub body: String,

    /// Form field that carries the data (Mercure: data).
    #[arg(
        long,
        env = "SSEHUB_BENCH_FORM_FIELD",
        value_name = "NAME",
        default_value = "data",
        help_heading = "Target"
    )]
    pub form_field: String,

    /// Form fields put before the data, already encoded (Mercure: topic=https%3A%2F%2Fexample.com%2Fbench).
    #[arg(
        long,
        env = "SSEHUB_BENCH_FORM_EXTRA",
        value_name = "FIELDS",
        default_value = "",
        help_heading = "Target"
    )]
    pub form_extra: String,

    /// Extra header on publish requests ("Authorization: Bearer x"); repeatable.
    #[arg(
        long = "header",
        env = "SSEHUB_BENCH_HEADER",
        value_name = "NAME: VALUE",
        help_heading = "Target"
    )]
    pub headers: Vec<String>,

    /// Topics: "{topic}" in --url and --publish-url becomes 0..N-1; subscriber i is on topic
    /// i mod N, event number s goes to topic s mod N.
    #[arg(long, env = "SSEHUB_BENCH_TOPICS", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub topics: u64,

    /// Subscriber connections.
    #[arg(
        long,
        env = "SSEHUB_BENCH_SUBSCRIBERS",
        value_name = "N",
        default_value_t = 100,
        help_heading = "Load"
    )]
    pub subscribers: usize,

    /// Events to publish (0: only connect, hold and measure).
    #[arg(
        long,
        env = "SSEHUB_BENCH_EVENTS",
        value_name = "M",
        default_value_t = 1000,
        help_heading = "Load"
    )]
    pub events: u64,

    /// Bytes of data per event (at least 40).
    #[arg(long, env = "SSEHUB_BENCH_SIZE", value_name = "BYTES", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(40..), help_heading = "Load")]
    pub size: u64,

    /// Events per second, all publishers together; 0 publishes flat out.
    #[arg(
        long,
        env = "SSEHUB_BENCH_RATE",
        value_name = "N",
        default_value_t = 0.0,
        help_heading = "Load"
    )]
    pub rate: f64,

    /// Publisher connections, each sending one request at a time.
    #[arg(long, env = "SSEHUB_BENCH_PUBLISHERS", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub publishers: u64,

    /// Events per publish request (more than 1 needs --body json).
    #[arg(long, env = "SSEHUB_BENCH_BATCH", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub batch: u64,

    /// Open each stream on a connection that already served a request, as browsers do (Chromium
    /// loads the page, then reuses its connection for the EventSource): a plain GET for PATH
    /// (default /healthz), its whole answer read, then the stream's GET on the same TCP
    /// connection. A subscriber whose server does not keep that connection open counts as
    /// failed. Without this flag every stream is the first request on a fresh connection.
    #[arg(
        long,
        env = "SSEHUB_BENCH_REUSE_CONNECTION",
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = "/healthz",
        help_heading = "Load"
    )]
    pub reuse_connection: Option<String>,

    /// Subscriber connects in flight at once.
    #[arg(
        long,
        env = "SSEHUB_BENCH_CONNECT_CONCURRENCY",
        value_name = "N",
        default_value_t = 256,
        help_heading = "Load"
    )]
    pub connect_concurrency: usize,

    /// Seconds to hold the connections idle before publishing (RSS is measured at the end of it).
    #[arg(
        long,
        env = "SSEHUB_BENCH_HOLD",
        value_name = "SECS",
        default_value_t = 1.0,
        help_heading = "Load"
    )]
    pub hold: f64,

    /// Seconds to wait for deliveries after the last publish.
    #[arg(
        long,
        env = "SSEHUB_BENCH_DRAIN_TIMEOUT",
        value_name = "SECS",
        default_value_t = 10.0,
        help_heading = "Load"
    )]
    pub drain_timeout: f64,

    /// Worker threads of the load generator.
    #[arg(long, env = "SSEHUB_BENCH_THREADS", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub threads: u64,

    /// The server's process id: report its memory per connection and its CPU time.
    #[arg(
        long,
        env = "SSEHUB_BENCH_PID",
        value_name = "PID",
        help_heading = "Report"
    )]
    pub pid: Option<u32>,

    /// Print the report as JSON.
    #[arg(long, env = "SSEHUB_BENCH_JSON", help_heading = "Report")]
    pub json: bool,

    /// Show progress on stderr (default: when stderr is a terminal).
    #[arg(long, env = "SSEHUB_BENCH_PROGRESS", help_heading = "Report")]
    pub progress: bool,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080/events?topic=bench";
/// Where to publish when --publish-url is not given and --url has a path (as before base URLs).
const DEFAULT_PUBLISH_URL: &str = "http://127.0.0.1:8080/publish?topic=bench";

/// The bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag is wrong.
    #[error("{0}")]
    Flag(String),
    /// The publish URL refused the bench's requests as unauthorized (401 or 403).
    #[error(
        "{url} answered {status} to a publish: the hub wants a publish token (pass --header \
         'Authorization: Bearer TOKEN') or, for anonymous publishes, a --publish-url on its \
         loopback publish listener (by default http://127.0.0.1:8081/publish)"
    )]
    PublishDenied {
        /// The publish URL, its `{topic}` filled in.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What the publishers and subscribers share.
struct Shared {
    start: Instant,
    events: u64,
    publishers: usize,
    connected: AtomicUsize,
    /// Connected subscribers per topic.
    on_topic: Vec<AtomicUsize>,
    /// Subscribers answered with anything but a 200 event stream, by "<status> <media type>".
    refused: Mutex<BTreeMap<String, usize>>,
    /// Subscribers that got no answer (or, with --reuse-connection, lost their connection), by
    /// what went wrong.
    failed: Mutex<BTreeMap<String, usize>>,
    resolved: AtomicUsize,
    received: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    malformed: AtomicU64,
    ended_by_server: AtomicUsize,
    latency: Mutex<Histogram<u64>>,
    last_receive_us: AtomicU64,
    next_seq: AtomicU64,
    published: AtomicU64,
    publish_failed: Mutex<BTreeMap<String, u64>>,
    publish_latency: Mutex<Histogram<u64>>,
    /// The first 401 or 403 a publish got, and where: publishing stops at it.
    publish_denied: Mutex<Option<(String, u16)>>,
    /// Set with `publish_denied`, read before every publish.
    stop_publishing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to an hour, 3 significant digits: constant bounds that are valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Where the bench subscribes and publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Targets {
    url: Url,
    publish_url: Url,
}

/// Resolves --url and --publish-url: a base URL (no path, or just `/`) stands for an ssehub's
/// `/events` and `/publish` on topic `bench` (`bench{topic}` with several topics).
fn targets(url: &str, publish_url: Option<&str>, topics: u64) -> Result<Targets, BenchError> {
    let mut url = Url::parse(url).map_err(|e| BenchError::Flag(format!("--url {e}")))?;
    let topic = if topics > 1 { "bench{topic}" } else { "bench" };
    let base = url.target == "/";
    let publish_url = match publish_url {
        Some(p) => Url::parse(p).map_err(|e| BenchError::Flag(format!("--publish-url {e}")))?,
        None if base => Url {
            authority: url.authority.clone(),
            target: format!("/publish?topic={topic}"),
        },
        None => Url::parse(DEFAULT_PUBLISH_URL).map_err(BenchError::Flag)?,
    };
    if base {
        url.target = format!("/events?topic={topic}");
    }
    Ok(Targets { url, publish_url })
}

/// Runs the bench and returns its report.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let targets = targets(&args.url, args.publish_url.as_deref(), args.topics)?;
    if args.batch > 1 && args.body != "json" {
        return Err(BenchError::Flag("--batch above 1 needs --body json".into()));
    }
    if args.batch > 1 && args.topics > 1 {
        return Err(BenchError::Flag(
            "--batch above 1 needs --topics 1 (a batch goes to one URL)".into(),
        ));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(BenchError::Flag(
            "--rate must be 0 or a positive number".into(),
        ));
    }
    if let Some(path) = &args.reuse_connection {
        if !path.starts_with('/') || path.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(BenchError::Flag(format!(
                "--reuse-connection {path:?}: expected a path such as /healthz"
            )));
        }
    }
    let mut extra_headers = String::new();
    for h in &args.headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            return Err(BenchError::Flag(format!(
                "--header {h:?}: expected \"Name: value\""
            )));
        }
        extra_headers.push_str(h);
        extra_headers.push_str("\r\n");
    }
    crate::http::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()?;
    let args = args.clone();
    runtime.block_on(async move { bench(args, targets, extra_headers).await })
}

async fn bench(
    args: BenchArgs,
    targets: Targets,
    extra_headers: String,
) -> Result<Report, BenchError> {
    let Targets { url, publish_url } = targets;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        events: args.events,
        publishers: args.publishers as usize,
        connected: AtomicUsize::new(0),
        on_topic: (0..args.topics).map(|_| AtomicUsize::new(0)).collect(),
        refused: Mutex::new(BTreeMap::new()),
        failed: Mutex::new(BTreeMap::new()),
        resolved: AtomicUsize::new(0),
        received: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        ended_by_server: AtomicUsize::new(0),
        latency: Mutex::new(histogram()),
        last_receive_us: AtomicU64::new(0),
        next_seq: AtomicU64::new(0),
        published: AtomicU64::new(0),
        publish_failed: Mutex::new(BTreeMap::new()),
        publish_latency: Mutex::new(histogram()),
        publish_denied: Mutex::new(None),
        stop_publishing: AtomicBool::new(false),
    });
    let progress = args.progress || std::io::stderr().is_terminal();
    let hub_before = args.pid.map(report::ProcessSample::of);
    let bench_cpu_before = report::self_cpu_seconds();

    // Connect everyone, a bounded number at a time.
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let first_request: Option<Arc<str>> = args.reuse_connection.as_deref().map(Arc::from);
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let topic = i % args.topics as usize;
        let url = url.with_topic(topic);
        let (shared, gate, first) = (shared.clone(), gate.clone(), first_request.clone());
        subscribers.push(tokio::spawn(subscriber(shared, url, first, topic, gate)));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.resolved.load(Ordering::Acquire) < args.subscribers && Instant::now() < deadline {
        if progress {
            eprint!(
                "\rconnecting {}/{}   ",
                shared.connected.load(Ordering::Relaxed),
                args.subscribers
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let hub_connected = args.pid.map(report::ProcessSample::of);

    // Publish.
    let publish_start = shared.start.elapsed();
    let mut publishers = Vec::new();
    for index in 0..args.publishers {
        let job = PublishJob {
            index,
            url: publish_url.clone(),
            body: args.body.clone(),
            form_field: args.form_field.clone(),
            form_extra: args.form_extra.clone(),
            headers: extra_headers.clone(),
            batch: args.batch,
            topics: args.topics,
            size: args.size as usize,
            rate: args.rate,
            offset: publish_start,
        };
        publishers.push(tokio::spawn(publisher(shared.clone(), job)));
    }
    let connected = shared.connected.load(Ordering::Acquire);
    // Every event reaches the subscribers of its topic.
    let topics = args.topics;
    let all_events: u64 = (0..topics)
        .map(|t| {
            let events_on_t = args.events / topics + u64::from(t < args.events % topics);
            events_on_t * shared.on_topic[t as usize].load(Ordering::Acquire) as u64
        })
        .sum();
    while publishers.iter().any(|p| !p.is_finished()) {
        if progress {
            show_progress(&shared, connected);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let publish_end = shared.start.elapsed();
    if let Some((url, status)) = lock(&shared.publish_denied).take() {
        if progress {
            eprintln!();
        }
        for s in &subscribers {
            s.abort();
        }
        return Err(BenchError::PublishDenied { url, status });
    }

    // Let deliveries finish.
    // If some publishes failed, expect that share less (exact when none failed).
    let published = shared.published.load(Ordering::Acquire);
    let expected = if args.events == 0 {
        0
    } else {
        (all_events as u128 * published as u128 / args.events as u128) as u64
    };
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout.max(0.0));
    while shared.received.load(Ordering::Acquire) < expected && Instant::now() < drain_deadline {
        if progress {
            show_progress(&shared, connected);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if progress {
        show_progress(&shared, connected);
        eprintln!();
    }
    let hub_after = args.pid.map(report::ProcessSample::of);
    for s in &subscribers {
        s.abort();
    }
    Ok(Report::new(report::Inputs {
        args: &args,
        url: &url,
        publish_url: &publish_url,
        shared: &shared,
        expected,
        publish_start,
        publish_end,
        hub: (hub_before, hub_connected, hub_after),
        bench_cpu: report::self_cpu_seconds() - bench_cpu_before,
    }))
}

fn show_progress(shared: &Shared, connected: usize) {
    eprint!(
        "\rconnected {connected}  published {}/{}  received {}   ",
        shared.published.load(Ordering::Relaxed),
        shared.events,
        shared.received.load(Ordering::Relaxed),
    );
}

thread_local! {
    /// Every subscriber on a thread reads into this one buffer: idle subscribers hold none.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// One subscriber's tallies; flushed to `Shared` after every read.
struct Tally {
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
    fn event(&mut self, data: &str, shared: &Shared, now_us: u64) {
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

    fn flush(&mut self, shared: &Shared, now_us: u64) {
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

async fn subscriber(
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
    let mut tally = Tally {
        seen: vec![0; shared.events.div_ceil(64) as usize],
        last: vec![0; shared.publishers],
        unique: 0,
        flushed: 0,
        duplicated: 0,
        out_of_order: 0,
        malformed: 0,
        latencies: Vec::new(),
    };
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
    /// Any other answer, as "<status> <media type>".
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

struct PublishJob {
    index: u64,
    url: Url,
    body: String,
    form_field: String,
    form_extra: String,
    headers: String,
    batch: u64,
    topics: u64,
    size: usize,
    rate: f64,
    offset: Duration,
}

impl PublishJob {
    /// The data of event `seq`: "<publisher> <seq> <micros> " padded to the size.
    fn data(&self, seq: u64, now_us: u64, out: &mut String) {
        use std::fmt::Write;
        let start = out.len();
        let _ = write!(out, "{} {seq} {now_us} ", self.index);
        while out.len() - start < self.size {
            out.push('x');
        }
    }

    fn request(&self, first: u64, n: u64, now_us: u64) -> (&'static str, Vec<u8>) {
        let mut body = String::with_capacity((self.size + 16) * n as usize);
        match self.body.as_str() {
            "json" => {
                body.push_str(if self.batch > 1 { "[" } else { "" });
                for seq in first..first + n {
                    if seq > first {
                        body.push(',');
                    }
                    body.push_str("{\"data\":\"");
                    self.data(seq, now_us, &mut body);
                    body.push_str("\"}");
                }
                body.push_str(if self.batch > 1 { "]" } else { "" });
                ("application/json", body.into_bytes())
            }
            "form" => {
                body.push_str(&self.form_extra);
                if !self.form_extra.is_empty() && !self.form_extra.ends_with('&') {
                    body.push('&');
                }
                body.push_str(&self.form_field);
                body.push('=');
                let at = body.len();
                self.data(first, now_us, &mut body);
                // Spaces are the only characters that need encoding in our data.
                let encoded = body[at..].replace(' ', "+");
                body.truncate(at);
                body.push_str(&encoded);
                ("application/x-www-form-urlencoded", body.into_bytes())
            }
            _ => {
                self.data(first, now_us, &mut body);
                ("text/plain", body.into_bytes())
            }
        }
    }
}

async fn publisher(shared: Arc<Shared>, job: PublishJob) {
    let mut connection: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if shared.stop_publishing.load(Ordering::Acquire) {
            return;
        }
        let first = shared.next_seq.fetch_add(job.batch, Ordering::AcqRel);
        if first >= shared.events {
            return;
        }
        let n = job.batch.min(shared.events - first);
        if job.rate > 0.0 {
            let due = job.offset + Duration::from_secs_f64(first as f64 / job.rate);
            let now = shared.start.elapsed();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let url = job.url.with_topic((first % job.topics) as usize);
        let sent = shared.start.elapsed();
        let (content_type, body) = job.request(first, n, sent.as_micros() as u64);
        let outcome = async {
            let stream = match connection.as_mut() {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(&url.authority).await?;
                    let _ = s.set_nodelay(true);
                    connection.insert(s)
                }
            };
            http1::post(stream, &url, content_type, &job.headers, &body, &mut buf).await
        }
        .await;
        let took = (shared.start.elapsed() - sent).as_micros() as u64;
        let _ = lock(&shared.publish_latency).record(took.max(1));
        match outcome {
            Ok((status, reusable)) => {
                if !reusable {
                    connection = None;
                }
                if (200..300).contains(&status) {
                    shared.published.fetch_add(n, Ordering::AcqRel);
                } else if status == 401 || status == 403 {
                    // Every later publish would be refused too: stop, and say why.
                    lock(&shared.publish_denied).get_or_insert_with(|| {
                        (format!("http://{}{}", url.authority, url.target), status)
                    });
                    shared.stop_publishing.store(true, Ordering::Release);
                    return;
                } else {
                    *lock(&shared.publish_failed)
                        .entry(status.to_string())
                        .or_default() += n;
                }
            }
            Err(e) => {
                connection = None;
                *lock(&shared.publish_failed)
                    .entry(format!("error: {}", e.kind()))
                    .or_default() += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str, publish: Option<&str>, topics: u64) -> (String, String) {
        let t = targets(url, publish, topics).unwrap();
        (
            format!("{}{}", t.url.authority, t.url.target),
            format!("{}{}", t.publish_url.authority, t.publish_url.target),
        )
    }

    #[test]
    fn a_base_url_means_the_hubs_events_and_publish() {
        for base in ["http://127.0.0.1:9000", "http://127.0.0.1:9000/"] {
            assert_eq!(
                resolve(base, None, 1),
                (
                    "127.0.0.1:9000/events?topic=bench".into(),
                    "127.0.0.1:9000/publish?topic=bench".into()
                )
            );
        }
        assert_eq!(
            resolve("http://h:1", None, 3),
            (
                "h:1/events?topic=bench{topic}".into(),
                "h:1/publish?topic=bench{topic}".into()
            )
        );
        // --publish-url wins over the base URL's /publish.
        assert_eq!(
            resolve("http://h:1/", Some("http://h:2/pub"), 1).1,
            "h:2/pub"
        );
    }

    #[test]
    fn a_url_with_a_path_is_used_as_it_is() {
        assert_eq!(
            resolve("http://h:1/sub?id=x", None, 1),
            (
                "h:1/sub?id=x".into(),
                "127.0.0.1:8080/publish?topic=bench".into()
            )
        );
        // A query on the root is a path too: only a bare base URL is rewritten.
        assert_eq!(resolve("http://h:1/?topic=a", None, 1).0, "h:1/?topic=a");
        assert_eq!(
            resolve(DEFAULT_URL, None, 1),
            (
                "127.0.0.1:8080/events?topic=bench".into(),
                "127.0.0.1:8080/publish?topic=bench".into()
            )
        );
    }
}
