//! `ssehub serve`'s upstream relay flags: `--upstream TOPIC=URL` and its idle timeout.

use std::time::Duration;

use clap::Args;

use crate::upstream::{Upstream, UpstreamOptions};

/// The upstream relay's flags (flattened into [`ServeArgs`](super::ServeArgs)).
///
/// ```
/// use ssehub::config::{load, Command};
/// let cli = load(["ssehub", "serve", "--upstream", "device=http://10.0.0.7/event"]).unwrap();
/// let Command::Serve(serve) = cli.command else { unreachable!() };
/// assert_eq!(serve.upstream.upstream[0].topic.as_str(), "device");
/// ```
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Relay a remote event stream into a topic: TOPIC=URL (http:// or https://, checked
    /// against the system's CAs or SSL_CERT_FILE; for a device, http://DEVICE/event). Repeat for more; the env twin takes a comma-separated list and the
    /// config file an array (a comma in a URL is written %2C). The hub gives relayed events
    /// ids of its own.
    #[arg(
        long,
        env = "SSEHUB_UPSTREAM",
        value_name = "TOPIC=URL",
        value_delimiter = ',',
        help_heading = "Upstream relay"
    )]
    pub upstream: Vec<Upstream>,

    /// Reconnect to an upstream that sent nothing, not even a comment, for this many seconds
    /// (a stalled connection).
    #[arg(long, env = "SSEHUB_UPSTREAM_IDLE_TIMEOUT", value_name = "SECS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Upstream relay")]
    pub upstream_idle_timeout: u64,
}

impl UpstreamArgs {
    /// The relays' options.
    pub fn options(&self) -> UpstreamOptions {
        UpstreamOptions {
            idle_timeout: Duration::from_secs(self.upstream_idle_timeout),
        }
    }
}
