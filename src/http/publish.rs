//! The publish endpoints: `POST /publish` (raw bodies and JSON) and Mercure's
//! `POST /.well-known/mercure` (a form). Both go through [`handle`]: the same authorization, body
//! limit, checks and error mapping, so the two differ only in how events are read and answered.
//! A request is validated whole before anything is published.

mod auth;
mod form;
mod json;

use std::collections::HashMap;

use auth::{authorize, check_grant};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use json::parse_json;

use super::metrics::PublishApi;
use super::query::parse_query;
use super::{ApiError, AppState, PublishListener};
use crate::event::{check_name, Event, Topic};
use crate::hub::{PublishError, Receipt};

/// Which publish endpoint a request came to: how its events are read and how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    /// `POST /publish`: a raw body or JSON, answered with JSON.
    Native,
    /// `POST /.well-known/mercure`: a form, answered with the event's id as text.
    Mercure,
}

/// `POST /publish`.
pub(crate) async fn publish(
    State(app): State<AppState>,
    publish_listener: Option<Extension<PublishListener>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = query.as_deref().unwrap_or("");
    handle(
        Front::Native,
        &app,
        publish_listener.is_some(),
        query,
        &headers,
        body,
    )
    .await
}

/// `POST /.well-known/mercure`: Mercure's publish form (see `form.rs`).
pub(crate) async fn mercure(
    State(app): State<AppState>,
    publish_listener: Option<Extension<PublishListener>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = query.as_deref().unwrap_or("");
    handle(
        Front::Mercure,
        &app,
        publish_listener.is_some(),
        query,
        &headers,
        body,
    )
    .await
}

/// The one publish path: authorize, read the body, build and check the events, publish them and
/// answer as `front` does.
async fn handle(
    front: Front,
    app: &AppState,
    on_publish_listener: bool,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let anonymous_ok = app.config.publish_open || on_publish_listener;
    let grant = authorize(&app.config, anonymous_ok, headers, query)?;
    if front == Front::Mercure && !form::is_form(headers) {
        // Said before the body is read: whatever it holds, it is not a form.
        return Err(form::not_a_form());
    }
    let body = read_body(body, headers, app.config.max_body, app.config.body_timeout).await?;
    let max_topics = app.hub.config().max_topics_per_event;
    let json = is_json(headers);
    let (events, batch) = match front {
        Front::Native => request_events(query, json, &body, max_topics)?,
        Front::Mercure => (vec![form::form_event(&body, max_topics)?], false),
    };
    if let Some(grant) = grant {
        check_grant(&grant, &events)?;
    }
    let receipt = app.hub.publish(events).await.map_err(publish_error)?;
    let api = match front {
        Front::Mercure => PublishApi::Form,
        Front::Native if json => PublishApi::Json,
        Front::Native => PublishApi::Raw,
    };
    app.metrics.publish.observe(api, started.elapsed());
    Ok(answer(front, batch, receipt))
}

/// The status and reason of a publish the hub refused.
fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Event(e) => ApiError::bad_request(e),
        PublishError::TooManyTopics { given, max } => too_many_topics(given, max),
        PublishError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        PublishError::DuplicateId(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        PublishError::Closing | PublishError::Store(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// A published request's answer: JSON for `/publish`, the id as text for Mercure.
fn answer(front: Front, batch: bool, receipt: Receipt) -> Response {
    match front {
        Front::Mercure => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            receipt.ids.first().cloned().unwrap_or_default(),
        )
            .into_response(),
        Front::Native if batch => {
            axum::Json(serde_json::json!({"ids": receipt.ids, "subscribers": receipt.subscribers}))
                .into_response()
        }
        Front::Native => axum::Json(
            serde_json::json!({"id": receipt.ids.first(), "subscribers": receipt.subscribers}),
        )
        .into_response(),
    }
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
        if defaults.id.is_some() {
            // A default id would be one id for every element of an array.
            return Err(ApiError::bad_request(
                "the id query parameter is for raw bodies; give a JSON event an \"id\" field",
            ));
        }
        let (events, batch) = parse_json(body, &defaults, max_topics)?;
        check_unique_ids(&events)?;
        Ok((events, batch))
    } else {
        let data = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        Ok((vec![defaults.event(data.to_string())?], false))
    }
}

/// `409` if two events of one request carry the same publisher id: the hub would refuse the
/// batch anyway, but this names both elements, before anything is sent to it.
fn check_unique_ids(events: &[Event]) -> Result<(), ApiError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        let Some(id) = event.id() else { continue };
        if let Some(first) = seen.insert(id, i) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("elements {first} and {i} both have the id {id:?}; ids must be unique"),
            ));
        }
    }
    Ok(())
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    within: std::time::Duration,
) -> Result<bytes::Bytes, ApiError> {
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
    let Ok(read) = tokio::time::timeout(within, Limited::new(body, max).collect()).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s (--publish-body-timeout); nothing was published",
                within.as_secs_f64()
            ),
        ));
    };
    match read {
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
    /// The publisher's id (`?id=`): raw bodies only.
    id: Option<String>,
    /// `?private=1`: only subscribers allowed one of the topics get the event(s).
    private: bool,
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
                "id" => {
                    crate::event::check_id(&value).map_err(ApiError::bad_request)?;
                    d.id = Some(value);
                }
                "private" => d.private = parse_flag(&value)?,
                // The publisher's token (see `jwt::token`), not a field of the event.
                "authorization" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?} (expected topic, event, retry, id, private or authorization)"
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
        if let Some(id) = &self.id {
            event = event.with_id(id).map_err(ApiError::bad_request)?;
        }
        if self.private {
            event = event.private();
        }
        Ok(event)
    }
}

/// `?private=`: `1`, `true` or `on` is private, `0` or `false` public; anything else is a
/// mistake worth saying (a typo must not publish a private event to everyone).
fn parse_flag(value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "true" | "on" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "private must be 1, true, on, 0 or false, got {value:?}"
        ))),
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

    fn native(query: &str, json: bool, body: &str) -> Result<(Vec<Event>, bool), ApiError> {
        request_events(query, json, body.as_bytes(), 64)
    }

    #[test]
    fn raw_bodies_take_an_id_and_a_private_flag() {
        let (events, _) = native("topic=a&id=order-1&private=1", false, "x").unwrap();
        assert_eq!(events[0].id(), Some("order-1"));
        assert!(events[0].is_private());
        for (flag, private) in [("true", true), ("on", true), ("0", false), ("false", false)] {
            let (events, _) = native(&format!("private={flag}"), false, "x").unwrap();
            assert_eq!(events[0].is_private(), private, "{flag}");
        }
        assert!(!native("", false, "x").unwrap().0[0].is_private());
        for bad in ["private=yes", "private=", "private"] {
            let refused = native(bad, false, "x").unwrap_err();
            assert!(
                refused.reason.contains("private must be"),
                "{bad}: {}",
                refused.reason
            );
        }
        for bad in ["id=%231", "id=", "id=3f2a9c01b2c4-17"] {
            let refused = native(bad, false, "x").unwrap_err();
            assert!(
                refused.reason.starts_with("bad event id"),
                "{bad}: {}",
                refused.reason
            );
        }
        // An id in the query would be every JSON element's id.
        let refused = native("id=a", true, r#"{"data": 1}"#).unwrap_err();
        assert!(refused.reason.contains("raw bodies"), "{}", refused.reason);
    }

    #[test]
    fn json_events_take_an_id_and_a_private_flag() {
        let (events, _) = native("", true, r#"{"data": 1, "id": "a", "private": true}"#).unwrap();
        assert_eq!((events[0].id(), events[0].is_private()), (Some("a"), true));
        let (events, _) = native("", true, r#"{"data": 1, "id": null, "private": false}"#).unwrap();
        assert_eq!((events[0].id(), events[0].is_private()), (None, false));
        // The query's flag is a default, as its topic and name are.
        let body = r#"[{"data": 1}, {"data": 2, "private": false}]"#;
        let (events, _) = native("private=1", true, body).unwrap();
        assert_eq!(
            (events[0].is_private(), events[1].is_private()),
            (true, false)
        );
        for (bad, why) in [
            (
                r#"{"data": 1, "private": 1}"#,
                "private must be true or false, got a number",
            ),
            (
                r#"{"data": 1, "private": "yes"}"#,
                "private must be true or false, got a string",
            ),
            (
                r#"{"data": 1, "id": 5}"#,
                "id must be a string, got a number",
            ),
            (r##"{"data": 1, "id": "#5"}"##, "must not start with '#'"),
            (r#"{"data": 1, "id": ""}"#, "must not be empty"),
        ] {
            let refused = native("", true, bad).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert!(refused.reason.contains(why), "{bad}: {}", refused.reason);
        }
    }

    #[test]
    fn a_batch_repeating_an_id_is_a_conflict() {
        let body = r#"[{"data": 1, "id": "a"}, {"data": 2, "id": "b"}, {"data": 3, "id": "a"}]"#;
        let refused = native("", true, body).unwrap_err();
        assert_eq!(refused.status, StatusCode::CONFLICT);
        assert_eq!(
            refused.reason,
            r#"elements 0 and 2 both have the id "a"; ids must be unique"#
        );
        let body = r#"[{"data": 1, "id": "a"}, {"data": 2}, {"data": 3}, {"data": 4, "id": "b"}]"#;
        assert_eq!(native("", true, body).unwrap().0.len(), 4);
        // A bad element still refuses the whole batch, whatever comes after it.
        let body = r##"[{"data": 1, "id": "a"}, {"data": 2, "id": "#b"}, {"data": 3, "id": "a"}]"##;
        assert_eq!(
            native("", true, body).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
