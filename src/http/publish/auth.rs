//! Who may publish: the static token, a publisher JWT (checked against every topic once the
//! events are read), or nobody's token where anonymous publishing is allowed. Shared by both
//! publish endpoints, so their rules cannot drift apart.

use axum::http::{HeaderMap, StatusCode};

use crate::event::{Event, Topic};
use crate::http::jwt::{self, PublishGrant};
use crate::http::{ApiError, HttpConfig};

/// A request publishes with the static token (any topic), with a JWT whose `mercure.publish`
/// claim covers its topics (`Some(grant)`, checked once the events are read), or without a token
/// where anonymous publishing is allowed (`--publish-open`, or the loopback publish listener).
/// The static token is compared in constant time.
pub(super) fn authorize(
    config: &HttpConfig,
    anonymous_ok: bool,
    headers: &HeaderMap,
    query: &str,
) -> Result<Option<PublishGrant>, ApiError> {
    let unauthorized = |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    let Some((given, from_cookie)) = jwt::token_and_source(headers, query) else {
        if anonymous_ok {
            return Ok(None);
        }
        return Err(unauthorized(
            if config.publish_token.is_some() || config.publisher_jwt_key.is_some() {
                "publishing needs a token (Authorization: Bearer, the authorization query parameter or the mercureAuthorization cookie), or the hub's loopback publish listener (--publish-listen)"
            } else {
                "anonymous publishing is off on this listener: publish on the hub's loopback publish listener (--publish-listen), or start the hub with --publish-token, --jwt-key or --publish-open"
            },
        ));
    };
    if from_cookie {
        same_site_or_listed(config, headers)?;
    }
    if let Some(token) = &config.publish_token {
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Ok(None);
        }
    }
    if let Some(key) = &config.publisher_jwt_key {
        return PublishGrant::from_token(key, &given)
            .map(Some)
            .map_err(|(forbidden, reason)| match forbidden {
                true => ApiError::new(StatusCode::FORBIDDEN, reason),
                false => unauthorized(&reason),
            });
    }
    match config.publish_token {
        Some(_) => Err(unauthorized("the bearer token is wrong")),
        None if anonymous_ok => Ok(None),
        None => Err(unauthorized(
            "this hub has no publish token (--publish-token, --jwt-key); publish on its loopback publish listener (--publish-listen)",
        )),
    }
}

/// A token in the cookie publishes only from a page of the hub's own origin or of a
/// `--cors-origin`: a browser sends the cookie by itself, so a page of any other site could
/// otherwise publish as its visitor (cross-site request forgery). The page's origin is the
/// `Origin` header, else the `Referer`'s; a request with neither is refused.
fn same_site_or_listed(config: &HttpConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = header("origin").map(str::to_string).or_else(|| {
        let referer = header("referer")?;
        let (scheme, rest) = referer.split_once("://")?;
        let authority = rest.split('/').next()?;
        Some(format!("{scheme}://{authority}"))
    });
    let allowed = origin.as_deref().is_some_and(|origin| {
        let own = origin
            .split_once("://")
            .map(|(_, authority)| authority)
            .zip(header("host"))
            .is_some_and(|(authority, host)| authority.eq_ignore_ascii_case(host));
        own || config.cors_origins.iter().any(|o| o == origin)
    });
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "a token in the mercureAuthorization cookie publishes only from the hub's own origin or a --cors-origin, and this request comes from {}: send the token as Authorization: Bearer instead",
            origin.as_deref().unwrap_or("no origin (no Origin or Referer header)")
        ),
    ))
}

/// Every topic of every event is covered by the token's `mercure.publish` claim, or `403` naming
/// the first that is not (and nothing is published).
pub(super) fn check_grant(grant: &PublishGrant, events: &[Event]) -> Result<(), ApiError> {
    let default = Topic::default_topic();
    for event in events {
        let topics = match event.topics() {
            [] => std::slice::from_ref(&default),
            topics => topics,
        };
        if let Some(topic) = topics.iter().find(|t| !grant.covers(t.as_str())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the token's mercure.publish claim does not cover topic {topic:?}"),
            ));
        }
    }
    Ok(())
}

/// Equal, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\xff", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
