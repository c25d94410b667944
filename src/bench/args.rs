//! The `ssehub bench` flags, and where they say to subscribe and publish.

use super::http1::Url;
use super::BenchError;

/// `ssehub bench` flags.
// The field docs are `--help` text, read in a terminal: URLs stay bare, not <linked>.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
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
    /// (FIELD=DATA, FIELD from --form-field, after --form-extra).
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

    /// Form fields put before the data, already encoded ("{topic}" becomes the event's topic
    /// number), e.g. type=bench.
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

    /// Speak Mercure: streams GET /.well-known/mercure?topic=SELECTOR and publishes POST form
    /// bodies (topic=TOPIC&data=...) to /.well-known/mercure. Needs a base --url (http://HOST:PORT;
    /// a URL with a path is refused); a --publish-url is used as it is. Topic i of --topics N is
    /// https://example.com/bench/i (https://example.com/bench/1 with one topic). Sets --body form
    /// and --form-field data; --form-extra adds fields after topic (and private).
    #[arg(long, env = "SSEHUB_BENCH_MERCURE", help_heading = "Mercure")]
    pub mercure: bool,

    /// What each Mercure stream subscribes to: an exact topic, *, or a URI template. Default:
    /// https://example.com/bench/{id}, a template matching every topic published to. "{topic}"
    /// is the bench's placeholder, the stream's topic number (1 with one topic):
    /// https://example.com/bench/{topic} is one exact topic per stream.
    #[arg(
        long,
        env = "SSEHUB_BENCH_MERCURE_SELECTOR",
        value_name = "SELECTOR",
        help_heading = "Mercure"
    )]
    pub mercure_selector: Option<String>,

    /// Publish private updates (private=on): only streams whose token allows their topic get
    /// them, so it needs --jwt-key (anonymous streams would receive nothing).
    #[arg(long, env = "SSEHUB_BENCH_PRIVATE", help_heading = "Mercure")]
    pub private: bool,

    /// The hub's HS256 secret (as given to ssehub serve --jwt-key; @FILE reads it from a file).
    /// The bench signs a publisher token ({"mercure":{"publish":["*"]}}), sent as
    /// Authorization: Bearer on every publish, and with --mercure a subscriber token
    /// ({"mercure":{"subscribe":["*"]}}), sent as each stream's authorization query parameter.
    /// Without it, Mercure streams are anonymous and receive public updates only.
    #[arg(
        long,
        env = "SSEHUB_BENCH_JWT_KEY",
        value_name = "SECRET|@FILE",
        hide_env_values = true,
        help_heading = "Mercure"
    )]
    pub jwt_key: Option<String>,

    /// Topics: "{topic}" in --url, --publish-url, --form-extra and --mercure-selector becomes
    /// 0..N-1; subscriber i is on topic i mod N, event number s goes to topic s mod N.
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

    /// Subscribers over TLS or HTTP/2 (`bench/tls.rs`).
    #[command(flatten)]
    pub tls: super::tls::TlsBenchArgs,

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

    /// Also draw the run as an SVG chart in FILE: the latency distribution and the timeline.
    #[arg(
        long,
        env = "SSEHUB_BENCH_PLOT",
        value_name = "FILE.svg",
        help_heading = "Report"
    )]
    pub plot: Option<std::path::PathBuf>,

    /// The run's name in its report, its chart and `ssehub bench compare`.
    #[arg(
        long,
        env = "SSEHUB_BENCH_LABEL",
        value_name = "TEXT",
        help_heading = "Report"
    )]
    pub label: Option<String>,

    /// `ssehub bench compare A.json B.json ...` or `ssehub bench plot RUN.json FILE.svg`: recorded
    /// runs instead of a new one.
    #[command(subcommand)]
    pub mode: Option<super::BenchMode>,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080/events?topic=bench";
/// Where to publish when --publish-url is not given and --url has a path (as before base URLs).
const DEFAULT_PUBLISH_URL: &str = "http://127.0.0.1:8080/publish?topic=bench";

/// Where the bench subscribes and publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Targets {
    pub(super) url: Url,
    pub(super) publish_url: Url,
}

/// Resolves --url and --publish-url: a base URL (no path, or just `/`) stands for an ssehub's
/// `/events` and `/publish` on topic `bench` (`bench{topic}` with several topics).
pub(super) fn targets(
    url: &str,
    publish_url: Option<&str>,
    topics: u64,
) -> Result<Targets, BenchError> {
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
