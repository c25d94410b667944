//! Mercure's publish form: `POST /.well-known/mercure` with an
//! `application/x-www-form-urlencoded` body, read into one [`Event`].
//!
//! | field | becomes |
//! |---|---|
//! | `topic` (required, repeatable) | the event's topics, in order: the first is the canonical one |
//! | `data` | the data, as sent (line breaks are split into `data:` lines when encoded) |
//! | `id` | the publisher's id ([`Event::with_id`]); none: the hub makes one |
//! | `type` | the `event:` name |
//! | `retry` | `retry:`, a whole number of milliseconds |
//! | `private` | present, with any value (even empty): [`Event::private`] |
//!
//! Other fields are ignored, as the reference hub does (clients send their own, such as a CSRF
//! token). An empty `id`, `type` or `retry` counts as absent, also as the reference hub does: an
//! HTML form sends its empty inputs. A field other than `topic` or `private` given twice is
//! refused, since which one was meant is a guess.
//!
//! Decoding is the strict one of the query string ([`parse_query`]): a bad `%` escape or invalid
//! UTF-8 is a `400`, not a replacement character in a topic.

use axum::http::{header, HeaderMap, StatusCode};

use super::{parse_retry, too_many_topics, ApiError};
use crate::event::Event;
use crate::http::query::parse_query;

/// The one content type a Mercure publish may have (parameters such as `charset` aside).
const FORM: &str = "application/x-www-form-urlencoded";

/// Whether the request says its body is a form.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(FORM))
}

/// The refusal of a body that is not a form: `415`, the status HTTP has for a content type the
/// endpoint does not take (the request may be fine, sent to `/publish`).
pub(super) fn not_a_form() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("a Mercure publish is a form: Content-Type must be {FORM} (JSON and raw bodies go to /publish)"),
    )
}

/// The event a Mercure publish form describes, checked (at most `max_topics` topics).
pub(super) fn form_event(body: &[u8], max_topics: usize) -> Result<Event, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the form is not valid UTF-8"))?;
    let pairs = parse_query(text).map_err(|e| {
        let why = e.to_string();
        let why = why.strip_prefix("bad query string: ").unwrap_or(&why);
        ApiError::bad_request(format!("bad form: {why}"))
    })?;
    // Counted before any topic is checked, so a flood of them costs nothing more.
    let topics = pairs.iter().filter(|(key, _)| key == "topic").count();
    if topics == 0 {
        return Err(ApiError::bad_request(
            "a Mercure publish needs a topic field (repeat it for alternate topics)",
        ));
    }
    if topics > max_topics {
        return Err(too_many_topics(topics, max_topics));
    }
    let mut fields = Fields::default();
    let mut event_topics = Vec::with_capacity(topics);
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "topic" => {
                event_topics.push(value);
                continue;
            }
            "private" => {
                fields.private = true;
                continue;
            }
            "data" => &mut fields.data,
            "id" => &mut fields.id,
            "type" => &mut fields.name,
            "retry" => &mut fields.retry,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!(
                "the form gives {key} twice; send it once"
            )));
        }
        *slot = Some(value);
    }
    let mut event = Event::new(fields.data.unwrap_or_default());
    for topic in &event_topics {
        event = event.with_topic(topic).map_err(ApiError::bad_request)?;
    }
    if let Some(name) = fields.name.filter(|n| !n.is_empty()) {
        event = event.with_name(&name).map_err(ApiError::bad_request)?;
    }
    if let Some(retry) = fields.retry.filter(|r| !r.is_empty()) {
        event = event.with_retry(parse_retry(&retry)?);
    }
    if let Some(id) = fields.id.filter(|id| !id.is_empty()) {
        event = event.with_id(&id).map_err(ApiError::bad_request)?;
    }
    if fields.private {
        event = event.private();
    }
    Ok(event)
}

/// The single-valued fields of a form, as sent.
#[derive(Default)]
struct Fields {
    data: Option<String>,
    id: Option<String>,
    name: Option<String>,
    retry: Option<String>,
    private: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::encode;

    fn event(form: &str) -> Event {
        form_event(form.as_bytes(), 64).unwrap()
    }

    fn refusal(form: &str) -> String {
        form_event(form.as_bytes(), 64).unwrap_err().reason
    }

    #[test]
    fn data_keeps_its_lines_and_their_breaks() {
        // CRLF, an empty line, CR and LF: kept as sent, split when encoded.
        let e = event("topic=a&data=one%0D%0A%0D%0Atwo%0Dthree%0Afour+five");
        assert_eq!(e.data(), "one\r\n\r\ntwo\rthree\nfour five");
        assert_eq!(
            &encode("x", &e)[..],
            b"id: x\ndata: one\ndata: \ndata: two\ndata: three\ndata: four five\n\n"
        );
        assert_eq!(event("topic=a").data(), "");
        assert_eq!(event("topic=a&data=").data(), "");
    }

    #[test]
    fn the_first_topic_is_canonical_and_the_others_follow_in_order() {
        let e = event("topic=https%3A%2F%2Fex.com%2Fbooks%2F1&data=x&topic=b&topic=a");
        let topics: Vec<&str> = e.topics().iter().map(|t| t.as_str()).collect();
        assert_eq!(topics, ["https://ex.com/books/1", "b", "a"]);
    }

    #[test]
    fn fields_become_the_event() {
        let e = event("topic=a&type=status&retry=2500&id=order-1&data=x&csrf=ignored");
        assert_eq!(e.name(), Some("status"));
        assert_eq!(e.retry(), Some(2500));
        assert_eq!(e.id(), Some("order-1"));
        assert!(!e.is_private());
        // Empty id, type and retry are absent (an HTML form sends its empty inputs).
        let e = event("topic=a&id=&type=&retry=");
        assert_eq!((e.id(), e.name(), e.retry()), (None, None, None));
    }

    #[test]
    fn private_is_present_with_any_value() {
        assert!(event("topic=a&private").is_private());
        assert!(event("topic=a&private=").is_private());
        assert!(event("topic=a&private=on").is_private());
        // Presence is what counts, not the word.
        assert!(event("topic=a&private=0").is_private());
        assert!(!event("topic=a").is_private());
    }

    #[test]
    fn malformed_forms_are_refused_with_a_reason() {
        assert!(refusal("data=x").contains("needs a topic"));
        assert!(refusal("").contains("needs a topic"));
        assert!(refusal("topic=a&retry=-1").contains("retry must be a whole number"));
        assert!(refusal("topic=a&retry=5s").contains("retry must be a whole number"));
        assert!(refusal("topic=a&retry=99999999999999999999999").contains("too large"));
        assert!(refusal("topic=a&id=%231").contains("must not start with '#'"));
        assert!(refusal("topic=a&id=3f2a9c01b2c4-17").contains("the hub's own"));
        assert!(refusal("topic=&data=x").contains("bad topic"));
        assert!(refusal("topic=a%0Ab").contains("control characters"));
        assert!(refusal("topic=a&type=a%0Db").contains("bad event name"));
        assert!(refusal("topic=a&data=%FF").starts_with("bad form:"));
        assert!(refusal("topic=a&data=%4").starts_with("bad form:"));
        assert!(refusal("topic=a&data=1&data=2").contains("data twice"));
        assert!(form_event(b"topic=a&data=\xff", 64)
            .unwrap_err()
            .reason
            .contains("UTF-8"));
    }

    #[test]
    fn topics_are_counted_before_they_are_checked() {
        assert_eq!(form_event(b"topic=a&topic=b", 2).unwrap().topics().len(), 2);
        let refused = form_event(b"topic=a&topic=b&topic=", 2).unwrap_err();
        assert!(
            refused.reason.contains("at most 2 topics"),
            "{}",
            refused.reason
        );
    }

    #[test]
    fn only_a_form_content_type_is_a_form() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_form(&headers)
        };
        assert!(with("application/x-www-form-urlencoded"));
        assert!(with("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!with("application/json"));
        assert!(!with("text/plain"));
        assert!(!is_form(&HeaderMap::new()));
        assert_eq!(not_a_form().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
