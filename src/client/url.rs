//! Hub URLs as the clients take them: `http[s]://HOST[:PORT][/PATH][?QUERY]`. A bare base URL
//! (no path) means the client's default path (`/events`, `/publish`).

use std::fmt;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a query value may keep unescaped (RFC 3986's unreserved characters).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A hub's URL, `http://` or `https://` (checked against the system's trusted roots, or
/// `SSL_CERT_FILE`).
///
/// ```
/// use ssehub::client::HubUrl;
/// let url: HubUrl = "http://hub:8080".parse().unwrap();
/// let url = url.or_path("/events").with_query("topic", "a b");
/// assert_eq!(url.to_string(), "http://hub:8080/events?topic=a%20b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// `host:port` as written (the `Host` header).
    authority: String,
    /// The host to connect to (IPv6 without its brackets), and the name TLS checks.
    host: String,
    /// `https://`.
    tls: bool,
    port: u16,
    /// Empty or `/...`.
    path: String,
    /// Without the `?`; empty for none.
    query: String,
}

impl FromStr for HubUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<HubUrl, String> {
        let uri: hyper::Uri = s
            .parse()
            .map_err(|e| format!("not a URL ({e}); expected http://HOST[:PORT][/PATH]"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("expected http://HOST[:PORT][/PATH] or https://...".into()),
        };
        let authority = uri
            .authority()
            .ok_or("expected http://HOST[:PORT][/PATH]")?;
        if authority.as_str().contains('@') {
            return Err("credentials in the URL are not sent; give --token".into());
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // `Uri` gives "/" for a URL written without a path: look at the text for that.
        let written_path = s.split_once("://").map_or("", |(_, rest)| {
            rest.find(['/', '?']).map_or("", |at| &rest[at..])
        });
        let path = if written_path.starts_with('/') {
            uri.path().to_string()
        } else {
            String::new()
        };
        Ok(HubUrl {
            authority: authority.as_str().to_string(),
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
            path,
            query: uri.query().unwrap_or("").to_string(),
        })
    }
}

impl HubUrl {
    /// The same URL with `path` if it has none, or only `/` (example in the
    /// [type's documentation](HubUrl)).
    #[must_use]
    pub fn or_path(mut self, path: &str) -> HubUrl {
        if self.path.is_empty() || self.path == "/" {
            self.path = path.to_string();
        }
        self
    }

    /// The same URL with `key=value` added to its query, the value escaped (example in the
    /// [type's documentation](HubUrl)).
    #[must_use]
    pub fn with_query(mut self, key: &str, value: &str) -> HubUrl {
        if !self.query.is_empty() {
            self.query.push('&');
        }
        self.query.push_str(key);
        self.query.push('=');
        self.query
            .extend(utf8_percent_encode(value, QUERY_VALUE).map(|s| s.to_string()));
        self
    }

    /// Whether the query names `key` already.
    ///
    /// ```
    /// let url: ssehub::client::HubUrl = "http://h/publish?id=7".parse().unwrap();
    /// assert!(url.has_query("id") && !url.has_query("topic"));
    /// ```
    pub fn has_query(&self, key: &str) -> bool {
        self.query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    }

    /// The request target: path and query (`/` for no path).
    pub(crate) fn target(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        if self.query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", self.query)
        }
    }

    /// The `Host` header.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// Where to connect.
    pub(crate) fn socket(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// Whether it is `https://`.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)?;
        if self.path.is_empty() && self.query.is_empty() {
            return Ok(());
        }
        f.write_str(&self.target())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HubUrl {
        s.parse().unwrap()
    }

    #[test]
    fn a_base_url_takes_the_default_path_and_a_full_one_keeps_its_own() {
        assert_eq!(
            url("http://hub:8080").or_path("/events").target(),
            "/events"
        );
        assert_eq!(
            url("http://hub:8080/").or_path("/events").target(),
            "/events"
        );
        assert_eq!(
            url("http://hub:8080?topic=a").or_path("/events").target(),
            "/events?topic=a"
        );
        let full = url("http://hub/event?x=1").or_path("/events");
        assert_eq!(full.target(), "/event?x=1");
        assert_eq!(full.socket(), ("hub", 80));
        assert_eq!(
            full.with_query("topic", "/a?b").to_string(),
            "http://hub/event?x=1&topic=%2Fa%3Fb"
        );
    }

    #[test]
    fn https_urls_keep_their_scheme_and_port_443() {
        let u = url("https://hub/events");
        assert!(u.is_tls());
        assert_eq!(u.socket(), ("hub", 443));
        assert_eq!(u.to_string(), "https://hub/events");
        assert!(!url("http://hub").is_tls());
    }

    #[test]
    fn ipv6_hosts_connect_without_brackets() {
        let u = url("http://[::1]:9/events");
        assert_eq!((u.socket(), u.authority()), ((("::1"), 9), "[::1]:9"));
    }

    #[test]
    fn bad_urls_say_why() {
        for (bad, why) in [
            ("hub:8080", "expected http://"),
            ("http://u:p@hub", "--token"),
            ("http://", "not a URL"),
            ("ftp://hub", "expected http://"),
        ] {
            let err = bad.parse::<HubUrl>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
