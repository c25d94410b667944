//! `POST /publish`: raw bodies and JSON, validated whole before anything is published.

mod json;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use json::parse_json;

use super::jwt::{self, PublishGrant};
use super::query::parse_query;
use super::{ApiError, AppState, HttpConfig, PublishListener};
use crate::event::{check_name, Event, Topic};
use crate::hub::PublishError;

pub(crate) async fn publish(
    State(app): State<AppState>,
    publish_listener: Option<Extension<PublishListener>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let anonymous_ok = app.config.publish_open || publish_listener.is_some();
    let query = query.as_deref().unwrap_or("");
    let grant = authorize(&app.config, anonymous_ok, &headers, query)?;
    let body = read_body(body, &headers, app.config.max_body).await?;
    let max_topics = app.hub.config().max_topics_per_event;
    let (events, batch) = request_events(query, is_json(&headers), &body, max_topics)?;
    if let Some(grant) = grant {
        check_grant(&grant, &events)?;
    }
    let receipt = app.hub.publish(events).await.map_err(|e| match e {
        PublishError::Event(e) => ApiError::bad_request(e),
        PublishError::TooManyTopics { given, max } => too_many_topics(given, max),
        PublishError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        PublishError::DuplicateId(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        PublishError::Closing | PublishError::Store(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    })?;
    let answer = if batch {
        serde_json::json!({"ids": receipt.ids, "subscribers": receipt.subscribers})
    } else {
        serde_json::json!({"id": receipt.ids.first(), "subscribers": receipt.subscribers})
    };
    Ok(axum::Json(answer).into_response())
}

/// The events a publish request asks for (all checked, none on more than `max_topics` topics),
/// and whether its body was a JSON array.
pub(crate) fn request_events(
    query: &str,
    json: bool,
    body: &[u8],
    max_topics: usize,
) -> Result<(Vec<Event>, bool), ApiError> {
    let defaults = Defaults::from_query(query, max_topics)?;
    if json {
        parse_json(body, &defaults, max_topics)
    } else {
        let data = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        Ok((vec![defaults.event(data.to_string())?], false))
    }
}

/// A request publishes with the static token (any topic), with a JWT whose `mercure.publish`
/// claim covers its topics (`Some(grant)`, checked once the events are read), or without a token
/// where anonymous publishing is allowed (`--publish-open`, or the loopback publish listener).
/// The static token is compared in constant time.
fn authorize(
    config: &HttpConfig,
    anonymous_ok: bool,
    headers: &HeaderMap,
    query: &str,
) -> Result<Option<PublishGrant>, ApiError> {
    let unauthorized = |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    let Some(given) = jwt::token(headers, query) else {
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

/// Every topic of every event is covered by the token's `mercure.publish` claim, or `403` naming
/// the first that is not (and nothing is published).
fn check_grant(grant: &PublishGrant, events: &[Event]) -> Result<(), ApiError> {
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

async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than --max-body ({max} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the body: {e}"
        ))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// What the query string says: the event's fields for a raw body, and the defaults for JSON
/// events that leave a field out.
#[derive(Debug, Default)]
struct Defaults {
    topics: Vec<Topic>,
    name: Option<String>,
    retry: Option<u64>,
}

/// The refusal of an event naming more topics than `--max-topics-per-event`.
fn too_many_topics(given: usize, max: usize) -> ApiError {
    ApiError::bad_request(format!(
        "an event may name at most {max} topics (--max-topics-per-event), this one names {given}"
    ))
}

impl Defaults {
    fn from_query(query: &str, max_topics: usize) -> Result<Defaults, ApiError> {
        let mut d = Defaults::default();
        let pairs = parse_query(query).map_err(ApiError::bad_request)?;
        // Counted before any topic is checked, so a flood of them costs nothing more.
        let topics = pairs.iter().filter(|(key, _)| key == "topic").count();
        if topics > max_topics {
            return Err(too_many_topics(topics, max_topics));
        }
        for (key, value) in pairs {
            match key.as_str() {
                "topic" => d
                    .topics
                    .push(Topic::new(&value).map_err(ApiError::bad_request)?),
                "event" => {
                    check_name(&value).map_err(ApiError::bad_request)?;
                    d.name = Some(value);
                }
                "retry" => d.retry = Some(parse_retry(&value)?),
                // The publisher's token (see `jwt::token`), not a field of the event.
                "authorization" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?} (expected topic, event, retry or authorization)"
                    )))
                }
            }
        }
        Ok(d)
    }

    fn event(&self, data: String) -> Result<Event, ApiError> {
        let mut event = Event::new(data);
        for t in &self.topics {
            event = event.with_checked_topic(t.clone());
        }
        if let Some(name) = &self.name {
            event = event.with_name(name).map_err(ApiError::bad_request)?;
        }
        if let Some(ms) = self.retry {
            event = event.with_retry(ms);
        }
        Ok(event)
    }
}

fn parse_retry(value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "retry must be a whole number of milliseconds, got {value:?}"
        )));
    }
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("retry is too large: {value}")))
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
