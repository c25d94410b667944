//! Operating a hub: the log format and filter, the start line, and `check-config`.
//!
//! ```
//! use ssehub::config::{load, Command};
//! let cli = load(["ssehub", "serve", "--log-format", "json"]).unwrap();
//! let Command::Serve(serve) = cli.command else { unreachable!() };
//! assert_eq!(serve.ops.log_format, "json");
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tracing_subscriber::filter::{Directive, EnvFilter};

use super::{load, Command, ConfigError, ServeArgs};

/// `ssehub serve`'s operational flags (flattened into [`ServeArgs`]).
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Log lines as text, or as JSON objects (one a line: timestamp, level, message, fields,
    /// target). Which lines: RUST_LOG (e.g. ssehub=debug) when set, else --log-level.
    #[arg(long, env = "SSEHUB_LOG_FORMAT", value_name = "text|json", default_value = "text",
          value_parser = ["text", "json"], help_heading = "Logs")]
    pub log_format: String,

    /// End each stream after 80 to 100% of this (drawn per stream), cleanly: its client
    /// resumes with Last-Event-ID and loses nothing, so after a deploy clients spread over the
    /// new hubs (90s, 15m, 12h; a bare number is seconds). 0 or off: streams last.
    #[arg(long, env = "SSEHUB_MAX_STREAM_AGE", value_name = "DURATION|off", default_value = "off",
          value_parser = parse_stream_age, help_heading = "Streams")]
    pub max_stream_age: StreamAge,

    /// On SIGTERM or SIGINT, first answer /readyz with 503 for this long while serving as
    /// before (streams, publishes), so a load balancer stops sending clients here; then end
    /// the streams and exit. A second signal ends the wait. (10s, 1m; a bare number is
    /// seconds; 0: at once.)
    #[arg(long, env = "SSEHUB_SHUTDOWN_DELAY", value_name = "DURATION", default_value = "0",
          value_parser = parse_delay, help_heading = "Network")]
    pub shutdown_delay: std::time::Duration,
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    match s.trim() {
        "0" | "0s" => Ok(std::time::Duration::ZERO),
        _ => super::parse_duration(s),
    }
}

/// `--max-stream-age`: a duration, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAge(pub Option<std::time::Duration>);

fn parse_stream_age(s: &str) -> Result<StreamAge, String> {
    match s.trim() {
        "0" | "0s" | "0m" | "0h" | "0d" | "off" => Ok(StreamAge(None)),
        _ => super::parse_duration(s).map(|age| StreamAge(Some(age))),
    }
}

/// `ssehub check-config FILE`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The TOML file, as `ssehub serve --config FILE` would read it.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

impl ServeArgs {
    /// Starts printing logs on standard error: filtered by `RUST_LOG` when set (its syntax:
    /// `ssehub=debug,hyper=warn`), else at `--log-level`; as text or JSON (`--log-format`).
    ///
    /// # Errors
    ///
    /// A `RUST_LOG` that does not parse, with the reason.
    pub fn init_logging(&self) -> Result<(), String> {
        let filter = log_filter(&self.log_level, std::env::var("RUST_LOG").ok().as_deref())?;
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let set = if self.ops.log_format == "json" {
            logs.json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init()
        } else {
            logs.try_init()
        };
        set.map_err(|e| format!("logs: {e}"))
    }

    /// Checks what only makes sense together (flags that exclude or need each other), as
    /// `serve` does before it starts anything. Returns the HTTP settings.
    ///
    /// # Errors
    ///
    /// One line naming the flags.
    pub fn check(&self) -> Result<crate::http::HttpConfig, String> {
        if let (Some(flag), Some(_)) = (self.cluster.flag(), &self.data_dir) {
            return Err(format!(
                "{flag} and --data-dir cannot be used together: with {flag}, Redis holds the history (docs/cluster.md)"
            ));
        }
        // Certificate files are read here too, so that check-config catches a bad one.
        self.tls.protocol().map_err(|e| e.to_string())?;
        self.http_config()
    }

    /// Logs (at info) what this hub is: where it listens, what it speaks, where its history is,
    /// its main limits. One line, for operators; the `ssehub: listening on` line stays for tools.
    pub fn log_start(
        &self,
        listen: SocketAddr,
        publish: Option<SocketAddr>,
        protocol: &crate::http::Protocol,
    ) {
        let store = match (&self.data_dir, self.cluster.flag()) {
            (Some(dir), _) => format!("disk ({})", dir.display()),
            (None, Some(flag)) => format!("redis ({flag}, {} shards)", self.cluster.redis_shards),
            (None, None) => "memory".into(),
        };
        tracing::info!(
            listen = %listen,
            publish_listen = %publish.map_or("off".into(), |a| a.to_string()),
            protocols = protocol.describe(),
            store = %store,
            max_clients = self.max_clients,
            history = self.history,
            history_bytes = self.history_bytes,
            max_body = self.max_body,
            heartbeat_secs = self.heartbeat,
            max_stream_age_secs = self.ops.max_stream_age.0.map_or(0, |a| a.as_secs()),
            version = crate::config::VERSION,
            "ssehub started"
        );
    }
}

/// The log filter: `RUST_LOG`'s directives when set and not empty, else `level` for everything.
fn log_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    let default: Directive = level
        .parse()
        .map_err(|e| format!("--log-level {level:?}: {e}"))?;
    EnvFilter::builder()
        .with_default_directive(default)
        .parse(rust_log.unwrap_or(""))
        .map_err(|e| format!("RUST_LOG {:?}: {e}", rust_log.unwrap_or("")))
}

/// `ssehub check-config FILE`: reads the file as `serve --config FILE` does (unknown keys, bad
/// values) and checks the flags that cannot go together, opening nothing.
///
/// ```
/// let file = std::env::temp_dir().join(format!("ssehub-doc-check-{}.toml", std::process::id()));
/// std::fs::write(&file, "max-clients = 0\n").unwrap();
/// let e = ssehub::config::ops::check_config(&file).unwrap_err();
/// assert!(e.contains("max-clients"), "{e}");
/// # std::fs::remove_file(&file).ok();
/// ```
///
/// # Errors
///
/// The first problem, on one line, naming the file.
pub fn check_config(file: &std::path::Path) -> Result<(), String> {
    let args = [
        "ssehub".into(),
        "serve".into(),
        "--config".into(),
        file.as_os_str().to_owned(),
    ];
    let in_file = |reason: String| format!("{}: {reason}", file.display());
    let cli = load(args).map_err(|e| match e {
        ConfigError::Cli(e) => in_file(first_line(&e.render().to_string())),
        // These name the file already, as `--config FILE: ...`.
        e => first_line(&e.to_string())
            .trim_start_matches("--config ")
            .to_string(),
    })?;
    let Command::Serve(serve) = cli.command else {
        return Err(in_file("not a serve configuration".into()));
    };
    serve.check().map(|_| ()).map_err(in_file)
}

/// clap's message without its usage and hints.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.replace("error: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_the_level_and_is_checked() {
        assert_eq!(log_filter("warn", None).unwrap().to_string(), "warn");
        assert_eq!(log_filter("warn", Some("")).unwrap().to_string(), "warn");
        let f = log_filter("warn", Some("ssehub=debug")).unwrap();
        assert_eq!(f.to_string(), "ssehub=debug");
        let e = log_filter("info", Some("ssehub=loud")).unwrap_err();
        assert!(e.starts_with("RUST_LOG"), "{e}");
    }
}
