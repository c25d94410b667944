//! Value parsers for the flags: durations, topics, event names, the publish listener.

use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{check_name, Topic};

/// A duration: a whole number with an optional unit (s, m, h, d); bare numbers are seconds.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 90s, 15m, 12h, 7d)"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    if n == 0 {
        return Err("a duration here must be above zero".into());
    }
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

pub(super) fn parse_topic(s: &str) -> Result<Topic, String> {
    Topic::new(s).map_err(|e| e.to_string())
}

pub(super) fn parse_name(s: &str) -> Result<String, String> {
    check_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--publish-listen`: a loopback address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishListen(pub Option<SocketAddr>);

pub(super) fn parse_publish_listen(s: &str) -> Result<PublishListen, String> {
    if s == "off" {
        return Ok(PublishListen(None));
    }
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an address and port (like 127.0.0.1:8081) or off"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: publishing there needs no token, so it must only be reachable from this host"
        ));
    }
    Ok(PublishListen(Some(addr)))
}
