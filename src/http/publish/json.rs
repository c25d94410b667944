//! JSON publish bodies: one object or an array of them, each element's `data` passed on as
//! written (minus the whitespace outside its strings), and checked as strictly as a parsed value.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{too_many_topics, Defaults};
use crate::event::Event;
use crate::http::ApiError;

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
    /// The publisher's id: a string (checked by `Event::with_id`).
    #[serde(default)]
    id: Option<Value>,
    /// `true`: only subscribers allowed one of the topics get it. Any other type is refused
    /// rather than guessed at.
    #[serde(default)]
    private: Option<Value>,
}

/// Parses a JSON body: one object, or an array of objects. Returns the events and whether the
/// body was an array.
pub(super) fn parse_json(
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
    match parsed.id {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => event = event.with_id(&id).map_err(ApiError::bad_request)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "id must be a string, got {}",
                kind(&other)
            )))
        }
    }
    let private = match parsed.private {
        None | Some(Value::Null) => defaults.private,
        Some(Value::Bool(private)) => private,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "private must be true or false, got {}",
                kind(&other)
            )))
        }
    };
    if private {
        event = event.private();
    }
    Ok(event)
}

/// What a JSON value is, for a reason (the value itself could be megabytes).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
