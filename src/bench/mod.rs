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
//! The report also keeps the latency distributions and a timeline (counters read every 100 ms),
//! which [`plot`] draws as SVG (`--plot`); [`compare`] sets recorded reports side by side.
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] bench: ssehub::bench::BenchArgs }
//! let cli = Cli::parse_from(["bench", "--subscribers", "10", "--events", "100"]);
//! let report = ssehub::bench::run(&cli.bench).unwrap();
//! assert_eq!(report.deliveries.lost, 0);
//! ```

mod args;
pub mod compare;
pub mod http1;
mod mercure;
pub mod plot;
mod publishers;
mod report;
mod subscribers;
mod timeline;
mod tls;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

pub use args::BenchArgs;
use args::Targets;
pub use compare::{BenchMode, CompareArgs, PlotArgs};
use mercure::{plan, Plan};
use publishers::{publisher, PublishJob};
pub use report::{Percentiles, Report};
use subscribers::subscriber;
pub use timeline::Timeline;

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
    /// Subscribers answered with anything but a 200 event stream, by `"<status> <media type>"`.
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

/// Runs the bench and returns its report.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let plan = plan(args)?;
    if args.batch > 1 && plan.body != "json" {
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
    if let Some(path) = &args.plot {
        // Found out now, not after a long run.
        plot::check_writable(path).map_err(BenchError::Flag)?;
    }
    let mut extra_headers = plan.auth_header.clone();
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
    runtime.block_on(async move { bench(args, plan, extra_headers).await })
}

async fn bench(args: BenchArgs, plan: Plan, extra_headers: String) -> Result<Report, BenchError> {
    let Targets { url, publish_url } = plan.targets;
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
    let timeline = timeline::Recorder::start(shared.clone());
    let progress = args.progress || std::io::stderr().is_terminal();
    let hub_before = args.pid.map(report::ProcessSample::of);
    let bench_cpu_before = report::self_cpu_seconds();

    // Connect everyone, a bounded number at a time.
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let first_request: Option<Arc<str>> = args.reuse_connection.as_deref().map(Arc::from);
    let pool = args.tls.pool(first_request.is_some())?;
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let topic = i % args.topics as usize;
        let url = url.with_topic(topic);
        let (shared, gate, first) = (shared.clone(), gate.clone(), first_request.clone());
        subscribers.push(match &pool {
            Some(pool) => tokio::spawn(tls::subscriber(shared, url, topic, gate, pool.clone())),
            None => tokio::spawn(subscriber(shared, url, first, topic, gate)),
        });
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
            body: plan.body.clone(),
            form_field: plan.form_field.clone(),
            form_extra: plan.form_extra.clone(),
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
    // Every event reaches the subscribers whose topic (or Mercure selector) matches its topic.
    let all_events: u64 = (plan.expected_per_stream.iter().zip(&shared.on_topic))
        .map(|(events, on)| events * on.load(Ordering::Acquire) as u64)
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
        url: &plan.shown_url,
        publish_url: &publish_url,
        scenario: plan.scenario,
        shared: &shared,
        expected,
        publish_start,
        publish_end,
        hub: (hub_before, hub_connected, hub_after),
        bench_cpu: report::self_cpu_seconds() - bench_cpu_before,
        timeline: timeline.finish(),
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
