//! `POST /publish`: raw bodies and JSON, validated whole before anything is published.

use std::fmt;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

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
    authorize(&app.config, anonymous_ok, &headers)?;
    let body = read_body(body, &headers, app.config.max_body).await?;
    let max_topics = app.hub.config().max_topics_per_event;
    let (events, batch) = request_events(
        query.as_deref().unwrap_or(""),
        is_json(&headers),
        &body,
        max_topics,
    )?;
    let receipt = app.hub.publish(events).await.map_err(|e| match e {
        PublishError::Event(e) => ApiError::bad_request(e),
        PublishError::TooManyTopics { given, max } => too_many_topics(given, max),
        PublishError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
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

/// A request publishes with the bearer token, or without one where anonymous publishing is
/// allowed (`--publish-open`, or the loopback publish listener). Compared in constant time.
fn authorize(config: &HttpConfig, anonymous_ok: bool, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b""));
    match (given, &config.publish_token) {
        (None, _) if anonymous_ok => Ok(()),
        (None, Some(_)) => Err(unauthorized(
            "publishing needs an Authorization: Bearer token (--publish-token), or the hub's loopback publish listener (--publish-listen)",
        )),
        (None, None) => Err(unauthorized(
            "anonymous publishing is off on this listener: publish on the hub's loopback publish listener (--publish-listen), or start the hub with --publish-token or --publish-open",
        )),
        (Some(_), None) if anonymous_ok => Ok(()),
        (Some(_), None) => Err(unauthorized(
            "this hub has no publish token (--publish-token); publish on its loopback publish listener (--publish-listen)",
        )),
        (Some(given), Some(token)) if constant_time_eq(given, token.as_bytes()) => Ok(()),
        (Some(_), Some(_)) => Err(unauthorized("the bearer token is wrong")),
    }
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

/// One JSON event as sent. `data` and `topic` stay raw text: data is passed on as written,
/// and a topic list is counted before any topic in it is looked at.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent<'a> {
    #[serde(default, borrow)]
    topic: Option<&'a RawValue>,
    #[serde(default)]
    event: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    retry: Option<Value>,
}

/// Parses a JSON body: one object, or an array of objects. Returns the events and whether the
/// body was an array.
fn parse_json(
    body: &[u8],
    defaults: &Defaults,
    max_topics: usize,
) -> Result<(Vec<Event>, bool), ApiError> {
    // Raw values are skipped over with serde_json's syntax checks only: each part is checked
    // further (escapes, numbers, nesting depth) where it is read, in `json_event`.
    let malformed = |e: serde_json::Error| ApiError::bad_request(format!("malformed JSON: {e}"));
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
            let events = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    json_event(item.get(), defaults, max_topics).map_err(|mut e| {
                        e.reason = format!("element {i}: {}", e.reason);
                        e
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((events, true))
        }
        Some(b'{') => {
            let item: &RawValue = serde_json::from_slice(body).map_err(malformed)?;
            Ok((vec![json_event(item.get(), defaults, max_topics)?], false))
        }
        _ => {
            // Malformed, or well formed but not an object or array: say which.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(malformed)?;
            Err(ApiError::bad_request(
                "expected a JSON object or an array of objects",
            ))
        }
    }
}

/// One event from the JSON text of one object (already checked to be valid JSON).
fn json_event(item: &str, defaults: &Defaults, max_topics: usize) -> Result<Event, ApiError> {
    if !item.starts_with('{') {
        return Err(ApiError::bad_request("expected an object"));
    }
    let parsed: JsonEvent = serde_json::from_str(item).map_err(ApiError::bad_request)?;
    let data = parsed.data.get();
    let data = if data.starts_with('"') {
        serde_json::from_str::<String>(data).map_err(ApiError::bad_request)?
    } else {
        // Taken as strictly as a `Value` would be (serde_json's nesting limit included), which
        // skipping it over as a RawValue did not do.
        serde_json::from_str::<Checked>(data)
            .map_err(|e| ApiError::bad_request(format!("data: {e}")))?;
        strip_json_whitespace(data)
    };
    let mut event = Event::new(data);
    match parsed.topic.map(RawValue::get) {
        None => {
            for t in &defaults.topics {
                event = event.with_checked_topic(t.clone());
            }
        }
        Some(t) if t.starts_with('"') => {
            let t: String = serde_json::from_str(t).map_err(ApiError::bad_request)?;
            event = event.with_topic(&t).map_err(ApiError::bad_request)?;
        }
        Some(ts) if ts.starts_with('[') => {
            let ts: Vec<&RawValue> = serde_json::from_str(ts).map_err(ApiError::bad_request)?;
            if ts.is_empty() {
                return Err(ApiError::bad_request(
                    "topic must be a string or a non-empty array of strings",
                ));
            }
            if ts.len() > max_topics {
                return Err(too_many_topics(ts.len(), max_topics));
            }
            for t in ts {
                if !t.get().starts_with('"') {
                    return Err(ApiError::bad_request(
                        "topic must be a string or an array of strings",
                    ));
                }
                let t: String = serde_json::from_str(t.get()).map_err(ApiError::bad_request)?;
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

/// Valid JSON text without the whitespace outside its strings: one compact line, every byte
/// of every string, number and key kept as written. Strings are followed through their
/// escapes (`\"` does not end one, `\\` does not escape the quote after it).
fn strip_json_whitespace(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut kept_from = 0;
    for (i, b) in json.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            // ASCII, so both ends of the kept run are character boundaries.
            out.push_str(&json[kept_from..i]);
            kept_from = i + 1;
        } else if b == b'"' {
            in_string = true;
        }
    }
    out.push_str(&json[kept_from..]);
    out
}

/// Any JSON value, walked and thrown away: serde_json checks it as it would build a `Value`
/// (escapes, number ranges, its recursion limit) without allocating one.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
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
            parse_json(br#"{"data": {"a": [1, 2]}, "topic": ["x", "y"]}"#, &d, 64).unwrap();
        assert!(!batch);
        assert_eq!(events[0].data(), r#"{"a":[1,2]}"#);
        assert_eq!(events[0].topics().len(), 2);
        assert!(parse_json(
            br#"[{"data": "a"}, {"data": "b", "event": "x\ny"}]"#,
            &d,
            64
        )
        .unwrap_err()
        .reason
        .starts_with("element 1:"));
        assert!(parse_json(br#"{"data": "a", "retry": "5"}"#, &d, 64).is_err());
        assert!(parse_json(br#"{"data": "a", "retry": -1}"#, &d, 64).is_err());
        assert!(parse_json(br#"{"dta": "a"}"#, &d, 64).is_err());
        assert!(parse_json(br#"{"data": "a", "topic": []}"#, &d, 64).is_err());
        assert!(parse_json(b"[1]", &d, 64).is_err());
        assert!(parse_json(b"\"x\"", &d, 64).is_err());
    }

    fn one_data(body: &str) -> String {
        let (events, _) = parse_json(body.as_bytes(), &Defaults::default(), 64).unwrap();
        events[0].data().to_string()
    }

    #[test]
    fn json_data_passes_through_as_written() {
        assert_eq!(
            one_data(r#"{"data": {"k": 1, "id": "x", "n": 1.50}}"#),
            r#"{"k":1,"id":"x","n":1.50}"#
        );
        assert_eq!(
            one_data(r#"{"data": [1e3, -0, 12345678901234567890123]}"#),
            "[1e3,-0,12345678901234567890123]"
        );
        assert_eq!(one_data(r#"{"data": null}"#), "null");
        assert_eq!(one_data(r#"{"data": 1.50}"#), "1.50");
        // A string is its text, unescaped.
        assert_eq!(one_data(r#"{"data": "a \"b\"\n c"}"#), "a \"b\"\n c");
        assert_eq!(
            one_data(r#"{"data": {"s": "a \"b\" c\u00e9"}}"#),
            r#"{"s":"a \"b\" c\u00e9"}"#
        );
    }

    #[test]
    fn whitespace_goes_only_outside_strings() {
        let strip = strip_json_whitespace;
        assert_eq!(strip(" { \"a b\" :\t[ 1 ,\r\n2 ] } "), r#"{"a b":[1,2]}"#);
        // An escaped quote does not end the string, an escaped backslash does not escape it.
        assert_eq!(
            strip(r#"[ "x \" y " , "z\\" , " w " ]"#),
            r#"["x \" y ","z\\"," w "]"#
        );
        assert_eq!(strip(r#"[ "\\\" \\" ]"#), r#"["\\\" \\"]"#);
        assert_eq!(strip(r#"{ "ü ✓" : "→ ←" }"#), r#"{"ü ✓":"→ ←"}"#);
        assert_eq!(strip("true"), "true");
        assert_eq!(strip(""), "");
    }

    #[test]
    fn deep_nesting_is_refused_even_inside_data() {
        let d = Defaults::default();
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_json(deep(400).as_bytes(), &d, 64).is_err());
        let inside = format!(r#"{{"data": {}}}"#, deep(400));
        let refused = parse_json(inside.as_bytes(), &d, 64).unwrap_err();
        assert!(
            refused.reason.contains("recursion limit"),
            "{}",
            refused.reason
        );
        let fine = format!(r#"{{"data": {}}}"#, deep(100));
        assert_eq!(one_data(&fine), deep(100));
        // Data is as strict as when it was a `Value`, though it is passed on as written.
        for bad in [r#"{"data": [1e400]}"#, r#"{"data": {"s": "\ud800"}}"#] {
            assert!(parse_json(bad.as_bytes(), &d, 64).is_err(), "{bad}");
        }
        let garbage = parse_json(b"nope", &d, 64).unwrap_err();
        assert!(
            garbage.reason.starts_with("malformed JSON"),
            "{}",
            garbage.reason
        );
    }

    #[test]
    fn topics_are_counted_before_they_are_checked() {
        let d = Defaults::default();
        let topics = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!(r#""t{i}""#)).collect();
            format!(r#"{{"data": 1, "topic": [{}]}}"#, names.join(","))
        };
        assert_eq!(
            parse_json(topics(3).as_bytes(), &d, 3).unwrap().0[0]
                .topics()
                .len(),
            3
        );
        let refused = parse_json(topics(4).as_bytes(), &d, 3).unwrap_err();
        assert!(
            refused.reason.contains("--max-topics-per-event"),
            "{}",
            refused.reason
        );
        // Even when the topics past the limit are not valid ones.
        let bad_past = r#"{"data": 1, "topic": ["a", "b", "c", 5, ""]}"#;
        let refused = parse_json(bad_past.as_bytes(), &d, 3).unwrap_err();
        assert!(
            refused.reason.contains("at most 3 topics"),
            "{}",
            refused.reason
        );
        let batch = format!(r#"[{{"data": 1}}, {}]"#, topics(4));
        let refused = parse_json(batch.as_bytes(), &d, 3).unwrap_err();
        assert!(
            refused
                .reason
                .starts_with("element 1: an event may name at most 3"),
            "{}",
            refused.reason
        );
        let query = "topic=a&topic=b&topic=c&topic=d";
        assert!(Defaults::from_query(query, 4).is_ok());
        assert!(Defaults::from_query(query, 3).is_err());
    }
}
