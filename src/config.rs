//! Settings: every flag, its `SSEHUB_*` environment twin, and `--config FILE` (TOML, keys named
//! like the long flags). Flags beat the environment, the environment beats the file, the file
//! beats the defaults.
//!
//! ```
//! use ssehub::config::{load, Command};
//! let cli = load(["ssehub", "serve", "--max-clients", "50"]).unwrap();
//! let Command::Serve(serve) = cli.command else { unreachable!() };
//! assert_eq!(serve.hub_config().max_clients, 50);
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::event::Topic;

/// `ssehub --version`: the package version and the git commit it was built from (`unknown`
/// when built outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SSEHUB_GIT_COMMIT"),
    ")"
);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "ssehub",
    version = VERSION,
    about = "A Server-Sent Events hub: publish over HTTP, every listener gets every event.",
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Built once, at start: boxing `serve`'s flags would save nothing worth the noise.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a hub.
    Serve(ServeArgs),
    /// Load-test an SSE server (this one or any other) and report what it delivered.
    #[cfg(feature = "bench")]
    Bench(crate::bench::BenchArgs),
    /// Print the events of a stream as they come, reconnecting by itself.
    Listen(crate::client::ListenArgs),
    /// Publish one event, or every line read on standard input.
    Publish(crate::client::PublishArgs),
    /// Check a config file as `serve --config FILE` reads it: prints "ok" (exit 0) or the reason (exit 1).
    CheckConfig(ops::CheckConfigArgs),
}

/// `ssehub serve`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Every flag has an environment twin (SSEHUB_MAX_CLIENTS for --max-clients) and a key in \
    the --config file (max-clients = 500). Flags beat the environment, which beats the file."
)]
pub struct ServeArgs {
    /// TLS and HTTP/2 (`config/tls.rs`).
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Read settings from this TOML file; keys are the long flag names (max-clients = 500).
    #[arg(
        long,
        env = "SSEHUB_CONFIG",
        value_name = "FILE",
        help_heading = "Config"
    )]
    pub config: Option<PathBuf>,

    /// Address and port to listen on, for everything: streams, the viewer page, health,
    /// metrics, and publishing with --publish-token (or by anyone with --publish-open).
    #[arg(
        long,
        env = "SSEHUB_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        help_heading = "Network"
    )]
    pub listen: SocketAddr,

    /// A second listener, on loopback only, where publishing needs no token: for publishers on
    /// this host. Never point a reverse proxy at it. "off" for none.
    #[arg(long, env = "SSEHUB_PUBLISH_LISTEN", value_name = "ADDR|off", default_value = "127.0.0.1:8081",
          value_parser = parse_publish_listen, help_heading = "Network")]
    pub publish_listen: PublishListen,

    /// Streams open at once, at most. Past it, new subscribers get --when-full.
    #[arg(long, env = "SSEHUB_MAX_CLIENTS", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Network")]
    pub max_clients: u64,

    /// What a full hub answers: 503 (with Retry-After) or retry (a stream that only says
    /// `retry:` and ends, so an EventSource comes back by itself).
    #[arg(long, env = "SSEHUB_WHEN_FULL", value_name = "503|retry", default_value = "503",
          value_parser = ["503", "retry"], help_heading = "Network")]
    pub when_full: String,

    /// Topics one subscription may name; more gets 400.
    #[arg(long, env = "SSEHUB_MAX_TOPICS_PER_CLIENT", value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Network")]
    pub max_topics_per_client: u64,

    /// Connections waiting for a request head (new ones, and kept-alive ones between
    /// requests), at most; past it, the one that has waited longest is closed.
    #[arg(long, env = "SSEHUB_MAX_PENDING_CONNECTIONS", value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Network")]
    pub max_pending_connections: u64,

    /// Connections from one address waiting for a request head, at most; past it, its new
    /// connections get 429. 0: no limit.
    #[arg(
        long,
        env = "SSEHUB_MAX_PENDING_PER_IP",
        value_name = "N",
        default_value_t = 1024,
        help_heading = "Network"
    )]
    pub max_pending_per_ip: u64,

    /// Streams one client address may hold open; past it, 429 with Retry-After. 0: no limit.
    #[arg(
        long,
        env = "SSEHUB_MAX_CLIENTS_PER_IP",
        value_name = "N",
        default_value_t = 0,
        help_heading = "Network"
    )]
    pub max_clients_per_ip: u64,

    /// A web origin allowed cross-origin access (scheme://host, or scheme://host:port, exactly; repeat the flag
    /// for more; the env twin takes a comma-separated list). None by default; "*" is refused.
    #[arg(long = "cors-origin", env = "SSEHUB_CORS_ORIGIN", value_name = "ORIGIN", value_delimiter = ',',
          value_parser = crate::http::check_origin, help_heading = "Network")]
    pub cors_origins: Vec<String>,

    /// Events kept for replay with Last-Event-ID, all topics together (the newest ones).
    #[arg(long, env = "SSEHUB_HISTORY", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "History")]
    pub history: u64,

    /// Bytes of events kept in memory for replay, all topics together: each event's encoded
    /// size, counted once however many topics it is on. Past it the oldest leave, as past
    /// --history; a publish larger than this is refused (413). With --data-dir it bounds the
    /// memory window, like --memory-history; the file is bounded by --history and --history-age.
    #[arg(long, env = "SSEHUB_HISTORY_BYTES", value_name = "BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "History")]
    pub history_bytes: u64,

    /// Keep the history on disk in this directory (a redb file, history.redb): publishes are
    /// answered once on disk, and after a restart, even a crash, ids continue and clients resume
    /// without a gap. Without it, history lives in memory and a restart starts a new one.
    #[arg(
        long,
        env = "SSEHUB_DATA_DIR",
        value_name = "PATH",
        help_heading = "History"
    )]
    pub data_dir: Option<PathBuf>,

    /// Cluster mode: --redis, --redis-cluster, --redis-shards (src/config/cluster.rs).
    #[command(flatten)]
    pub cluster: cluster::ClusterArgs,

    /// Also drop events older than this from the history (90s, 15m, 12h, 7d; a bare number is
    /// seconds), in the background. Without it, only --history bounds the history.
    #[arg(long, env = "SSEHUB_HISTORY_AGE", value_name = "DURATION", value_parser = parse_duration,
          help_heading = "History")]
    pub history_age: Option<Duration>,

    /// With --data-dir (or --redis, --redis-cluster), the newest this many events also stay in
    /// memory, where live delivery and recent replays read; older replays read the disk (or
    /// Redis). (At most --history.)
    #[arg(long, env = "SSEHUB_MEMORY_HISTORY", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "History")]
    pub memory_history: u64,

    /// Seconds between heartbeat comments on an idle stream; 0 for none. A client that vanishes
    /// without closing loses its stream once data to it goes unacknowledged twice this long.
    #[arg(
        long,
        env = "SSEHUB_HEARTBEAT",
        value_name = "SECS",
        default_value_t = 15,
        help_heading = "Streams"
    )]
    pub heartbeat: u64,

    /// Reconnection time sent as `retry:` when a stream opens, in milliseconds.
    #[arg(
        long,
        env = "SSEHUB_RETRY",
        value_name = "MS",
        default_value_t = 3000,
        help_heading = "Streams"
    )]
    pub retry: u64,

    /// Unsent bytes a subscriber may fall behind by before its stream is ended (it resumes with
    /// Last-Event-ID). It is also ended when owed more than half of the events kept in memory
    /// (--history, or --memory-history with --data-dir).
    #[arg(long, env = "SSEHUB_MAX_BACKLOG", value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Streams")]
    pub max_backlog: u64,

    /// Milliseconds a busy stream waits after a write before the next one, so that under load
    /// events leave in big writes; an idle stream sends at once. 0 writes every wake-up.
    #[arg(
        long,
        env = "SSEHUB_BATCH_WINDOW",
        value_name = "MS",
        default_value_t = 10,
        help_heading = "Streams"
    )]
    pub batch_window: u64,

    /// Largest publish body, in bytes; larger gets 413.
    #[arg(long, env = "SSEHUB_MAX_BODY", value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Publishing")]
    pub max_body: u64,

    /// A publish body must arrive within this, counted from when the hub starts reading it (after
    /// the head and the token check); slower gets 408 and nothing is published, so a publisher
    /// that stalls mid-body does not hold its connection and buffer. (30s, 2m; a bare number is
    /// seconds.)
    #[arg(long, env = "SSEHUB_PUBLISH_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration, help_heading = "Publishing")]
    pub publish_body_timeout: Duration,

    /// Publishers on --listen must send `Authorization: Bearer TOKEN`. (Without it, only the
    /// loopback --publish-listen takes publishes, unless --publish-open.)
    #[arg(
        long,
        env = "SSEHUB_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Publishing"
    )]
    pub publish_token: Option<String>,

    /// Anyone who can reach --listen may publish, without a token. Only for a hub that no
    /// untrusted client can reach: behind a reverse proxy, everyone could publish.
    #[arg(long, env = "SSEHUB_PUBLISH_OPEN", help_heading = "Publishing")]
    pub publish_open: bool,

    /// Key for JWTs (Mercure's claims), publishers' and subscribers': a publisher's token
    /// publishes to the topics its mercure.publish claim lists ("*": all); a subscriber's token
    /// receives the private events its mercure.subscribe claim covers. The secret itself for
    /// HS256, or @FILE (a PEM public key for RS256/ES256).
    #[arg(
        long,
        env = "SSEHUB_JWT_KEY",
        value_name = "SECRET|@FILE",
        hide_env_values = true,
        help_heading = "Publishing"
    )]
    pub jwt_key: Option<String>,

    /// Key for publishers' JWTs only (beats --jwt-key for them).
    #[arg(
        long,
        env = "SSEHUB_PUBLISHER_JWT_KEY",
        value_name = "SECRET|@FILE",
        hide_env_values = true,
        help_heading = "Publishing"
    )]
    pub publisher_jwt_key: Option<String>,

    /// Key for subscribers' JWTs only (beats --jwt-key for them). Without either, subscribers'
    /// tokens are not looked at: every subscriber gets public events only.
    #[arg(
        long,
        env = "SSEHUB_SUBSCRIBER_JWT_KEY",
        value_name = "SECRET|@FILE",
        hide_env_values = true,
        help_heading = "Publishing"
    )]
    pub subscriber_jwt_key: Option<String>,

    /// Refuse subscriptions without a valid subscriber token (401). Needs --jwt-key or
    /// --subscriber-jwt-key. Without it, anonymous subscribers get public events only.
    #[arg(
        long,
        env = "SSEHUB_SUBSCRIBERS_NEED_TOKEN",
        help_heading = "Publishing"
    )]
    pub subscribers_need_token: bool,

    /// The topic GET /event streams: the path a device's page opens with
    /// `new EventSource('event')`, so that page works on the hub unchanged.
    #[arg(long, env = "SSEHUB_EVENT_TOPIC", value_name = "TOPIC", default_value = "default",
          value_parser = parse_topic, help_heading = "Streams")]
    pub event_topic: Topic,

    /// Announce each subscription to /.well-known/mercure as a private update on
    /// /.well-known/mercure/subscriptions/{topic}/{subscriber} when it opens and closes, and
    /// list them at GET /.well-known/mercure/subscriptions (Mercure's active subscriptions:
    /// presence). Costs two publishes per subscription and topic selector.
    #[arg(long, env = "SSEHUB_MERCURE_SUBSCRIPTIONS", help_heading = "Streams")]
    pub mercure_subscriptions: bool,

    /// Most distinct URI templates (subscription selectors such as /books/{id}) in use at
    /// once; a new one past it is refused (503). Each compiled template takes up to about
    /// 200 KiB. Templates in tokens' claims do not count.
    #[arg(
        long,
        env = "SSEHUB_MAX_TEMPLATES",
        value_name = "N",
        default_value_t = crate::selector::MAX_TEMPLATES as u64,
        value_parser = clap::value_parser!(u64).range(1..),
        help_heading = "Streams"
    )]
    pub max_templates: u64,

    /// The one algorithm JWTs must be signed with: HS256, RS256 or ES256 (both sides).
    #[arg(long, env = "SSEHUB_JWT_ALG", value_name = "ALG", default_value = "HS256",
          value_parser = ["HS256", "RS256", "ES256"], help_heading = "Publishing")]
    pub jwt_alg: String,

    /// Topics one published event may name; an event naming more gets 400 and nothing of
    /// its request is published.
    #[arg(long, env = "SSEHUB_MAX_TOPICS_PER_EVENT", value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Publishing")]
    pub max_topics_per_event: u64,

    /// Publish every line read on standard input as one event.
    #[arg(long, env = "SSEHUB_STDIN", help_heading = "Stdin feed")]
    pub stdin: bool,

    /// Topic of the events read from standard input.
    #[arg(long, env = "SSEHUB_STDIN_TOPIC", value_name = "TOPIC", default_value = "default",
          value_parser = parse_topic, help_heading = "Stdin feed")]
    pub stdin_topic: Topic,

    /// Event name of the events read from standard input (none: plain messages).
    #[arg(long, env = "SSEHUB_STDIN_EVENT", value_name = "NAME", value_parser = parse_name,
          help_heading = "Stdin feed")]
    pub stdin_event: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "SSEHUB_LOG_LEVEL", value_name = "LEVEL", default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"], help_heading = "Logs")]
    pub log_level: String,

    /// Operations: log format, stream lifetime (src/config/ops.rs).
    #[command(flatten)]
    pub ops: ops::OpsArgs,

    /// The upstream relay (`--upstream`).
    #[command(flatten)]
    pub upstream: upstream::UpstreamArgs,
}

/// Settings that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or environment value is wrong (clap prints it, with usage).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The config file could not be read.
    #[error("--config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The config file is not valid TOML, or a key or value is wrong.
    #[error("--config {0}: {1}")]
    File(PathBuf, String),
}

/// Parses the command line, the environment and the config file.
pub fn load<I, T>(args: I) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = Cli::command().try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let Command::Serve(serve) = &cli.command else {
        return Ok(cli);
    };
    let (Some(path), Some(sub)) = (&serve.config, matches.subcommand_matches("serve")) else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File(path.clone(), e.message().to_string()))?;
    let command = Cli::command();
    let serve_command = command
        .find_subcommand("serve")
        .ok_or_else(|| ConfigError::File(path.clone(), "no serve command".into()))?;
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in table {
        let bad = |why: &str| ConfigError::File(path.clone(), format!("key {key:?}: {why}"));
        let id = key.replace('-', "_");
        let arg = serve_command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && id != "config")
            .ok_or_else(|| bad("unknown key (keys are the long flag names, like max-clients)"))?;
        let long = arg.get_long().unwrap_or(&id).to_string();
        // Flags and the environment beat the file.
        if matches!(
            sub.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let is_flag = !arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(true) if is_flag => extra.push(format!("--{long}").into()),
            toml::Value::Boolean(false) if is_flag => {}
            toml::Value::String(s) if !is_flag => extra.push(format!("--{long}={s}").into()),
            toml::Value::Integer(i) if !is_flag => extra.push(format!("--{long}={i}").into()),
            toml::Value::Array(items) if !is_flag => {
                for item in items {
                    let toml::Value::String(s) = item else {
                        return Err(bad("expected an array of strings"));
                    };
                    extra.push(format!("--{long}={s}").into());
                }
            }
            _ if is_flag => return Err(bad("expected true or false")),
            _ => return Err(bad("expected a string or a whole number")),
        }
    }
    let mut all = args;
    all.extend(extra);
    let matches = Cli::command()
        .try_get_matches_from(all)
        .map_err(|e| ConfigError::File(path.clone(), e.render().to_string()))?;
    Ok(Cli::from_arg_matches(&matches)?)
}

mod cluster;
pub mod ops;
mod settings;
mod values;
pub use values::PublishListen;
use values::{parse_duration, parse_name, parse_publish_listen, parse_topic};
mod upstream;
pub use upstream::UpstreamArgs;
mod tls;
pub use tls::TlsArgs;

pub use cluster::ClusterArgs;

#[cfg(test)]
mod tests;
