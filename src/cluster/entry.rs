//! How an event is stored as the fields of a Redis stream entry, and read back.
//!
//! Short field names, since every entry carries them: `t` the topics (newline-joined: a topic
//! holds no control character), `d` the data, and when set, `n` the name, `r` the retry, `p` the
//! private flag and `i` the publisher's own id. The id an event is delivered with is the
//! publisher's, or else the one its [`Place`] makes.

use crate::cluster::Place;
use crate::event::{Event, Topic};

/// An event's fields, in the order they are written.
pub(crate) fn fields(event: &Event) -> Vec<(&'static str, Vec<u8>)> {
    let topics: Vec<&str> = event.topics().iter().map(Topic::as_str).collect();
    let mut out = vec![
        ("t", topics.join("\n").into_bytes()),
        ("d", event.data().as_bytes().to_vec()),
    ];
    if let Some(name) = event.name() {
        out.push(("n", name.as_bytes().to_vec()));
    }
    if let Some(retry) = event.retry() {
        out.push(("r", retry.to_string().into_bytes()));
    }
    if event.is_private() {
        out.push(("p", b"1".to_vec()));
    }
    if let Some(id) = event.id() {
        out.push(("i", id.as_bytes().to_vec()));
    }
    out
}

/// Rebuilds the event of an entry at `place` in history `epoch`. Everything is checked again,
/// as for a publish: an entry that was not written by a hub is refused with a reason, never
/// delivered half-read.
pub(crate) fn event<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    place: Place,
    epoch: &str,
) -> Result<Event, String> {
    let text = |field: &str, value: &[u8]| {
        std::str::from_utf8(value)
            .map(str::to_string)
            .map_err(|_| format!("field {field} is not UTF-8"))
    };
    let (mut topics, mut data, mut name, mut retry, mut private, mut id) =
        (None, None, None, None, false, None);
    for (field, value) in fields {
        match field {
            "t" => topics = Some(text(field, value)?),
            "d" => data = Some(text(field, value)?),
            "n" => name = Some(text(field, value)?),
            "r" => retry = Some(text(field, value)?),
            "p" => private = value == b"1",
            "i" => id = Some(text(field, value)?),
            // Fields a later version may add are not this one's business.
            _ => {}
        }
    }
    let mut event = Event::new(data.ok_or("no data field (d)")?);
    for topic in topics.ok_or("no topics field (t)")?.split('\n') {
        event = event.with_topic(topic).map_err(|e| e.to_string())?;
    }
    if let Some(name) = name {
        event = event.with_name(&name).map_err(|e| e.to_string())?;
    }
    if let Some(retry) = retry {
        let millis = retry.parse().map_err(|_| format!("bad retry {retry:?}"))?;
        event = event.with_retry(millis);
    }
    if private {
        event = event.private();
    }
    let id = id.unwrap_or_else(|| place.id(epoch));
    event.with_id(&id).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: &Event, place: Place) -> Event {
        let stored = fields(event);
        let borrowed = stored.iter().map(|(f, v)| (*f, v.as_slice()));
        super::event(borrowed, place, "3f2a9c01b2c4").unwrap()
    }

    #[test]
    fn every_field_comes_back() {
        let place = Place {
            ms: 1_700_000_000_123,
            shard: 3,
            n: 7,
        };
        let plain = Event::new("line one\nline two").with_topic("news").unwrap();
        let back = round_trip(&plain, place);
        assert_eq!(back.data(), "line one\nline two");
        assert_eq!(back.topics(), plain.topics());
        assert_eq!(back.id(), Some("3f2a9c01b2c4-1700000000123-7-3"));
        assert_eq!(
            (back.name(), back.retry(), back.is_private()),
            (None, None, false)
        );

        let full = Event::new("{\"a\": 1}")
            .with_topic("a/b")
            .unwrap()
            .with_topic("c d")
            .unwrap()
            .with_name("status")
            .unwrap()
            .with_retry(5000)
            .with_id("order-42")
            .unwrap()
            .private();
        let back = round_trip(&full, place);
        assert_eq!(back.data(), full.data());
        assert_eq!(back.topics(), full.topics());
        assert_eq!(back.name(), Some("status"));
        assert_eq!(back.retry(), Some(5000));
        assert!(back.is_private());
        assert_eq!(back.id(), Some("order-42"));
        assert_eq!(
            crate::event::encode("x", &back),
            crate::event::encode("x", &full)
        );
    }

    #[test]
    fn a_foreign_entry_is_refused_with_a_reason() {
        let place = Place {
            ms: 1,
            shard: 0,
            n: 0,
        };
        let missing = super::event([("d", b"x".as_slice())], place, "3f2a9c01b2c4");
        assert_eq!(missing.unwrap_err(), "no topics field (t)");
        let bad = super::event(
            [("t", b"a".as_slice()), ("d", b"x"), ("n", b"a\nb")],
            place,
            "3f2a9c01b2c4",
        );
        assert!(bad.unwrap_err().contains("bad event name"));
    }
}
