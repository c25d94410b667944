//! The clients' command lines: `ssehub listen` and `ssehub publish`.

use clap::Args;
use hyper::header::HeaderValue;

use super::{bearer, HubUrl};
use crate::event::{check_name, Topic};

/// `ssehub listen`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Reconnects by itself with Last-Event-ID (every event once, none lost while \
    the hub keeps it), honouring retry: and Retry-After, backing off on errors. Exits 0 on \
    SIGINT or SIGTERM, 1 with a one-line reason on a refusal (401, 403, 404, ...)."
)]
pub struct ListenArgs {
    /// The stream: a full URL (http://hub:8080/events?topic=a), or the hub's base URL
    /// (http://hub:8080), which means /events. https:// is checked against the system's CAs
    /// (or the PEM file SSL_CERT_FILE names).
    #[arg(value_name = "URL", value_parser = parse_url)]
    pub url: HubUrl,

    /// Subscribe to this topic (repeat for more); added to the URL's query as topic=.
    #[arg(long = "topic", value_name = "TOPIC", value_parser = parse_topic)]
    pub topics: Vec<Topic>,

    /// One JSON object per event and line: {"id":..,"event":..,"data":..}. Without it, the
    /// data alone, one line per data line.
    #[arg(long)]
    pub json: bool,

    /// Send `Authorization: Bearer TOKEN` (a subscriber's JWT).
    #[arg(long, env = "SSEHUB_TOKEN", value_name = "TOKEN", hide_env_values = true, value_parser = bearer)]
    pub token: Option<HeaderValue>,

    /// Start after this event id (as `Last-Event-ID`), as if it had been the last one seen.
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,

    /// Reconnect when nothing, not even a heartbeat, came for this many seconds (a connection
    /// that died without closing); 0: never. The hub's heartbeat is every 15 s by default.
    #[arg(long, value_name = "SECS", default_value_t = 45)]
    pub idle_timeout: u64,
}

impl ListenArgs {
    /// The stream's URL: `/events` for a base URL, with the `--topic`s.
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct Cli { #[command(flatten)] listen: ssehub::client::ListenArgs }
    /// let cli = Cli::parse_from(["listen", "http://hub:8080", "--topic", "a", "--topic", "b"]);
    /// assert_eq!(cli.listen.stream_url().to_string(), "http://hub:8080/events?topic=a&topic=b");
    /// ```
    pub fn stream_url(&self) -> HubUrl {
        let url = self.url.clone().or_path("/events");
        self.topics
            .iter()
            .fold(url, |url, t| url.with_query("topic", t.as_str()))
    }
}

/// `ssehub publish`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "With --stdin, lines that have already arrived go together as one request \
    (up to 1000 lines), each with an id of this run's own (16 hex digits, '-', a counter), so a \
    batch retried after a 503, a 429 or a lost connection is never published twice: a 409 on a \
    retry means the hub had it already. Exits 0 once everything read is acknowledged, 1 with a \
    one-line reason on a refusal (400, 401, 403, 413)."
)]
pub struct PublishArgs {
    /// Where: a full URL (http://hub:8080/publish), or the hub's base URL (http://hub:8080),
    /// which means /publish. https:// is checked as for `listen`.
    #[arg(value_name = "URL", value_parser = parse_url)]
    pub url: HubUrl,

    /// The event's data (or give --stdin).
    #[arg(
        value_name = "DATA",
        required_unless_present = "stdin",
        conflicts_with = "stdin"
    )]
    pub data: Option<String>,

    /// Publish every line read on standard input as one event, until end of input.
    #[arg(long)]
    pub stdin: bool,

    /// The events' topic (repeat for an event on several); the hub's default without it.
    #[arg(long = "topic", value_name = "TOPIC", value_parser = parse_topic)]
    pub topics: Vec<Topic>,

    /// The events' name (`event:`); none for plain messages.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub event: Option<String>,

    /// Send `Authorization: Bearer TOKEN` (the hub's --publish-token, or a publisher's JWT).
    #[arg(long, env = "SSEHUB_TOKEN", value_name = "TOKEN", hide_env_values = true, value_parser = bearer)]
    pub token: Option<HeaderValue>,
}

impl PublishArgs {
    /// The publish URL: `/publish` for a base URL, with `topic=` and `event=`.
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct Cli { #[command(flatten)] publish: ssehub::client::PublishArgs }
    /// let cli = Cli::parse_from(["publish", "http://hub:8080", "--stdin", "--topic", "app"]);
    /// assert_eq!(cli.publish.publish_url().to_string(), "http://hub:8080/publish?topic=app");
    /// ```
    pub fn publish_url(&self) -> HubUrl {
        let url = self.url.clone().or_path("/publish");
        let url = self
            .topics
            .iter()
            .fold(url, |url, t| url.with_query("topic", t.as_str()));
        match &self.event {
            Some(name) => url.with_query("event", name),
            None => url,
        }
    }
}

fn parse_url(s: &str) -> Result<HubUrl, String> {
    s.parse()
}

fn parse_topic(s: &str) -> Result<Topic, String> {
    Topic::new(s).map_err(|e| e.to_string())
}

fn parse_name(s: &str) -> Result<String, String> {
    check_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
