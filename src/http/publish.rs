//! `POST /publish`: raw bodies and JSON, validated whole before anything is published.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::Value;

use super::query::parse_query;
use super::{ApiError, AppState, HttpConfig};
use crate::event::{check_name, Event, Topic};
use crate::hub::PublishError;

pub(crate) async fn publish(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&app.config, &headers)?;
    let body = read_body(body, &headers, app.config.max_body).await?;
    let (events, batch) = request_events(query.as_deref().unwrap_or(""), is_json(&headers), &body)?;
    let receipt = app.hub.publish(events).await.map_err(|e| match e {
        PublishError::Closing => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        PublishError::Event(e) => ApiError::bad_request(e),
        PublishError::Store(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        PublishError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
    })?;
    let answer = if batch {
        serde_json::json!({"ids": receipt.ids, "subscribers": receipt.subscribers})
    } else {
        serde_json::json!({"id": receipt.ids.first(), "subscribers": receipt.subscribers})
    };
    Ok(axum::Json(answer).into_response())
}

/// The events a publish request asks for (all checked), and whether its body was a JSON array.
pub(crate) fn request_events(
    query: &str,
    json: bool,
    body: &[u8],
) -> Result<(Vec<Event>, bool), ApiError> {
    let defaults = Defaults::from_query(query)?;
    if json {
        parse_json(body, &defaults)
    } else {
        let data = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        Ok((vec![defaults.event(data.to_string())?], false))
    }
}

/// With a token set, the request must carry `Authorization: Bearer <token>`. Compared in
/// constant time.
fn authorize(config: &HttpConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &config.publish_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "publishing needs an Authorization: Bearer token",
            )
        })?;
    if !constant_time_eq(given, token.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is wrong",
        ));
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

impl Defaults {
    fn from_query(query: &str) -> Result<Defaults, ApiError> {
        let mut d = Defaults::default();
        for (key, value) in parse_query(query).map_err(ApiError::bad_request)? {
            match key.as_str() {
                "topic" => d
                    .topics
                    .push(Topic::new(&value).map_err(ApiError::bad_request)?),
                "event" => {
                    check_name(&value).map_err(ApiError::bad_request)?;
                    d.name = Some(value);
                }
                "retry" => d.retry = Some(parse_retry(&value)?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?} (expected topic, event or retry)"
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    #[serde(default)]
    topic: Option<Value>,
    #[serde(default)]
    event: Option<String>,
    data: Value,
    #[serde(default)]
    retry: Option<Value>,
}

/// Parses a JSON body: one object, or an array of objects. Returns the events and whether the
/// body was an array.
fn parse_json(body: &[u8], defaults: &Defaults) -> Result<(Vec<Event>, bool), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    match value {
        Value::Array(items) => {
            let events = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    json_event(item, defaults).map_err(|mut e| {
                        e.reason = format!("element {i}: {}", e.reason);
                        e
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((events, true))
        }
        item @ Value::Object(_) => Ok((vec![json_event(item, defaults)?], false)),
        _ => Err(ApiError::bad_request(
            "expected a JSON object or an array of objects",
        )),
    }
}

fn json_event(item: Value, defaults: &Defaults) -> Result<Event, ApiError> {
    if !item.is_object() {
        return Err(ApiError::bad_request("expected an object"));
    }
    let parsed: JsonEvent = serde_json::from_value(item).map_err(ApiError::bad_request)?;
    let data = match parsed.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let mut event = Event::new(data);
    match parsed.topic {
        None => {
            for t in &defaults.topics {
                event = event.with_checked_topic(t.clone());
            }
        }
        Some(Value::String(t)) => event = event.with_topic(&t).map_err(ApiError::bad_request)?,
        Some(Value::Array(ts)) if !ts.is_empty() => {
            for t in ts {
                let Value::String(t) = t else {
                    return Err(ApiError::bad_request(
                        "topic must be a string or an array of strings",
                    ));
                };
                event = event.with_topic(&t).map_err(ApiError::bad_request)?;
            }
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "topic must be a string or a non-empty array of strings",
            ))
        }
    }
    if let Some(name) = parsed.event.as_deref().or(defaults.name.as_deref()) {
        event = event.with_name(name).map_err(ApiError::bad_request)?;
    }
    let retry = match parsed.retry {
        None | Some(Value::Null) => defaults.retry,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "retry must be a whole number of milliseconds, got {n}"
            ))
        })?),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "retry must be a whole number of milliseconds, got {other}"
            )))
        }
    };
    if let Some(ms) = retry {
        event = event.with_retry(ms);
    }
    Ok(event)
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

    #[test]
    fn json_shapes() {
        let d = Defaults::default();
        let (events, batch) =
            parse_json(br#"{"data": {"a": [1, 2]}, "topic": ["x", "y"]}"#, &d).unwrap();
        assert!(!batch);
        assert_eq!(events[0].data(), r#"{"a":[1,2]}"#);
        assert_eq!(events[0].topics().len(), 2);
        assert!(
            parse_json(br#"[{"data": "a"}, {"data": "b", "event": "x\ny"}]"#, &d)
                .unwrap_err()
                .reason
                .starts_with("element 1:")
        );
        assert!(parse_json(br#"{"data": "a", "retry": "5"}"#, &d).is_err());
        assert!(parse_json(br#"{"data": "a", "retry": -1}"#, &d).is_err());
        assert!(parse_json(br#"{"dta": "a"}"#, &d).is_err());
        assert!(parse_json(br#"{"data": "a", "topic": []}"#, &d).is_err());
        assert!(parse_json(b"[1]", &d).is_err());
        assert!(parse_json(b"\"x\"", &d).is_err());
    }
}
