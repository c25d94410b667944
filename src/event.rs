//! Events and their wire encoding.
//!
//! An [`Event`] is validated when it is built (topics, name, retry) so that anything that reaches
//! the hub can be encoded without failing, and encoded exactly once, at publish, by [`encode`].
//! The bytes follow the WHATWG "server-sent events" format: `id:`, optional `event:` and `retry:`,
//! one `data:` line per line of the data (CR, LF and CRLF all split), then a blank line.
//!
//! ```
//! use ssehub::event::{encode, Event};
//!
//! let event = Event::new("line one\nline two").with_topic("news")?.with_name("status")?;
//! let bytes = encode("abc-1", &event);
//! assert_eq!(&bytes[..], b"id: abc-1\nevent: status\ndata: line one\ndata: line two\n\n");
//! # Ok::<(), ssehub::event::EventError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

mod wire;

pub use wire::{encode, encode_without_id, stream_prologue, HEARTBEAT};
pub(crate) use wire::{encoded_len_max, encoded_len_worst};

/// Longest topic, in bytes: room for Mercure's topics, which are URIs, and for its
/// subscription topics, which hold one (percent-encoded) and a subscriber id.
pub const MAX_TOPIC_LEN: usize = 1024;
/// Longest event name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The topic used when a subscriber or publisher names none.
pub const DEFAULT_TOPIC: &str = "default";

/// Why an event, topic or name was refused. The text is a one-line reason fit for an HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A topic that is empty, too long or holds a control character.
    #[error("bad topic {0:?}: {1}")]
    BadTopic(String, &'static str),
    /// An event name that is empty, too long or holds a control character (CR/LF would forge frames).
    #[error("bad event name {0:?}: {1}")]
    BadName(String, &'static str),
    /// A publisher-chosen id that is empty, too long, holds a control character, starts with
    /// `#`, or has the form of the hub's own ids (`EPOCH-SEQ`), which would make resume
    /// ambiguous.
    #[error("bad event id {0:?}: {1}")]
    BadId(String, &'static str),
}

/// A topic name: 1 to 1024 bytes of UTF-8 with no control characters. Cheap to clone.
///
/// ```
/// use ssehub::event::Topic;
/// assert!(Topic::new("chat/room-1").is_ok());
/// assert!(Topic::new("").is_err());
/// assert!(Topic::new("a\nb").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Checks and wraps a topic name.
    ///
    /// # Errors
    ///
    /// [`EventError::BadTopic`]: empty, longer than [`MAX_TOPIC_LEN`], or with a control
    /// character.
    ///
    /// ```
    /// let topic = ssehub::Topic::new("news")?;
    /// assert_eq!(topic.as_str(), "news");
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn new(name: &str) -> Result<Topic, EventError> {
        check_label(name, MAX_TOPIC_LEN).map_err(|why| EventError::BadTopic(shown(name), why))?;
        Ok(Topic(name.into()))
    }

    /// The topic everyone is on when they name none.
    ///
    /// ```
    /// assert_eq!(ssehub::Topic::default_topic().as_str(), ssehub::event::DEFAULT_TOPIC);
    /// ```
    pub fn default_topic() -> Topic {
        Topic(DEFAULT_TOPIC.into())
    }

    /// The name as text (example at [`Topic::new`]).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rule topics and event names share: 1 to `max` bytes, no control characters (CR and LF
/// above all, which would let a publisher forge frames).
fn check_label(s: &str, max: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        Err("must not be empty")
    } else if s.len() > max {
        Err(if max == MAX_TOPIC_LEN {
            "longer than 1024 bytes"
        } else {
            "longer than 256 bytes"
        })
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}

/// A label as shown in an error: long ones cut to 40 bytes.
fn shown(s: &str) -> String {
    if s.len() <= 40 {
        return s.into();
    }
    let mut end = 40;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Checks a publisher-chosen id (see [`Event::with_id`]).
pub fn check_id(id: &str) -> Result<(), EventError> {
    let why = if id.is_empty() {
        Some("must not be empty")
    } else if id.len() > MAX_ID_LEN {
        Some("longer than 256 bytes")
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if id.starts_with('#') {
        Some("must not start with '#'")
    } else if looks_like_hub_id(id) {
        Some("ids of the form EPOCH-SEQ (12 hex digits, '-', a number) are the hub's own")
    } else {
        None
    };
    match why {
        Some(why) => Err(EventError::BadId(shown(id), why)),
        None => Ok(()),
    }
}

/// `id` has the shape of an id the hub makes (`crate::id`): 12 lowercase hex digits, `-`, digits.
fn looks_like_hub_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(epoch, seq)| {
        epoch.len() == 12
            && epoch
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Checks an event name (the `event:` field): same rules as a topic.
pub fn check_name(name: &str) -> Result<(), EventError> {
    check_label(name, MAX_NAME_LEN).map_err(|why| EventError::BadName(shown(name), why))
}

/// One event to publish: its topics (at least one; [`DEFAULT_TOPIC`] when none is given), an
/// optional name, the data, and an optional reconnection time for the client.
///
/// ```
/// use ssehub::event::Event;
/// let e = Event::new("{\"cpu\":0.5}").with_topic("metrics")?.with_name("status")?.with_retry(5000);
/// assert_eq!(e.topics().len(), 1);
/// # Ok::<(), ssehub::event::EventError>(())
/// ```
#[derive(Clone)]
pub struct Event {
    topics: Vec<Topic>,
    /// The same topics as a set, once there are more than [`SCAN_TOPICS`]: adding a topic then
    /// checks for a duplicate in constant time, so naming n topics costs n steps, not n².
    topic_set: Option<HashSet<Topic>>,
    name: Option<Box<str>>,
    data: String,
    retry: Option<u64>,
    /// The publisher's id, if it chose one (else the hub numbers the event).
    id: Option<Arc<str>>,
    /// Only subscribers allowed one of its topics receive it.
    private: bool,
}

/// Longest publisher-chosen id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Up to this many topics, a duplicate is looked for in the list itself (cheaper than a set).
const SCAN_TOPICS: usize = 8;

// By hand: the set only mirrors `topics`, so it is left out of comparisons and output.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.topics == other.topics
            && self.name == other.name
            && self.data == other.data
            && self.retry == other.retry
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("topics", &self.topics)
            .field("name", &self.name)
            .field("data", &self.data)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Event {
    /// An unnamed event with this data, on no topic yet (it goes to `default` if none is added).
    ///
    /// ```
    /// let e = ssehub::Event::new("hello");
    /// assert_eq!((e.data(), e.name(), e.retry(), e.topics().len()), ("hello", None, None, 0));
    /// ```
    pub fn new(data: impl Into<String>) -> Event {
        Event {
            topics: Vec::new(),
            topic_set: None,
            name: None,
            data: data.into(),
            retry: None,
            id: None,
            private: false,
        }
    }

    /// Adds a topic (checked). Adding the same topic twice has no effect.
    ///
    /// # Errors
    ///
    /// [`EventError::BadTopic`], as [`Topic::new`].
    ///
    /// ```
    /// let e = ssehub::Event::new("x").with_topic("a")?.with_topic("b")?.with_topic("a")?;
    /// assert_eq!(e.topics().len(), 2);
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn with_topic(self, topic: &str) -> Result<Event, EventError> {
        Ok(self.with_checked_topic(Topic::new(topic)?))
    }

    /// Adds an already checked topic. Adding the same topic twice has no effect.
    ///
    /// ```
    /// let news = ssehub::Topic::new("news")?;
    /// let e = ssehub::Event::new("x").with_checked_topic(news.clone());
    /// assert_eq!(e.topics(), [news]);
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn with_checked_topic(mut self, topic: Topic) -> Event {
        self.add_topic(topic);
        self
    }

    /// Adds a topic unless it is already there, in constant time (amortised).
    fn add_topic(&mut self, topic: Topic) {
        if let Some(set) = &mut self.topic_set {
            if set.insert(topic.clone()) {
                self.topics.push(topic);
            }
            return;
        }
        if self.topics.contains(&topic) {
            return;
        }
        self.topics.push(topic);
        if self.topics.len() > SCAN_TOPICS {
            self.topic_set = Some(self.topics.iter().cloned().collect());
        }
    }

    /// Names the event (checked), so clients receive it with `addEventListener(name, ...)`.
    ///
    /// # Errors
    ///
    /// [`EventError::BadName`]: the same rules as a topic.
    ///
    /// ```
    /// let e = ssehub::Event::new("{}").with_name("status")?;
    /// assert_eq!(e.name(), Some("status"));
    /// assert!(ssehub::Event::new("{}").with_name("a\nb").is_err());
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn with_name(mut self, name: &str) -> Result<Event, EventError> {
        check_name(name)?;
        self.name = Some(name.into());
        Ok(self)
    }

    /// Asks the client to wait this many milliseconds before reconnecting (the `retry:` field).
    ///
    /// ```
    /// assert_eq!(ssehub::Event::new("x").with_retry(5000).retry(), Some(5000));
    /// ```
    pub fn with_retry(mut self, millis: u64) -> Event {
        self.retry = Some(millis);
        self
    }

    /// Gives the event the publisher's own id (checked) instead of one the hub makes. Subscribers
    /// see it as the event's id and resume from it as from a hub-made one; publishing an id that
    /// is still in the history is refused
    /// ([`PublishError::DuplicateId`](crate::PublishError::DuplicateId)).
    ///
    /// # Errors
    ///
    /// [`EventError::BadId`]: empty, longer than [`MAX_ID_LEN`], a control character, a leading
    /// `#` (Mercure's rule), or the shape of the hub's ids (`3f2a9c01b2c4-17`).
    ///
    /// ```
    /// let e = ssehub::Event::new("x").with_id("order-42")?;
    /// assert_eq!(e.id(), Some("order-42"));
    /// assert!(ssehub::Event::new("x").with_id("3f2a9c01b2c4-17").is_err());
    /// assert!(ssehub::Event::new("x").with_id("#1").is_err());
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn with_id(mut self, id: &str) -> Result<Event, EventError> {
        check_id(id)?;
        self.id = Some(id.into());
        Ok(self)
    }

    /// Makes the event private: only subscribers whose token allows one of its topics get it
    /// (live, in replays and in resumes alike).
    ///
    /// ```
    /// assert!(ssehub::Event::new("x").private().is_private());
    /// ```
    pub fn private(mut self) -> Event {
        self.private = true;
        self
    }

    /// The publisher-chosen id, if any (example at [`with_id`](Self::with_id)).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The shared publisher-chosen id, for the log's index.
    pub(crate) fn shared_id(&self) -> Option<&Arc<str>> {
        self.id.as_ref()
    }

    /// Whether only authorised subscribers receive it (example at [`private`](Self::private)).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The topics; [`DEFAULT_TOPIC`] alone once published if none was added (examples at
    /// [`with_topic`](Self::with_topic)).
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// Puts the event on `default` if it names no topic.
    pub(crate) fn ensure_topic(&mut self) {
        if self.topics.is_empty() {
            self.topics.push(Topic::default_topic());
        }
    }

    /// The event name, if any (example at [`with_name`](Self::with_name)).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The data (example at [`Event::new`]).
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The reconnection time, if any (example at [`with_retry`](Self::with_retry)).
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(data: &str) -> String {
        String::from_utf8(encode("e-1", &Event::new(data)).to_vec()).unwrap()
    }

    #[test]
    fn splits_data_on_every_line_ending() {
        assert_eq!(enc("a\nb"), "id: e-1\ndata: a\ndata: b\n\n");
        assert_eq!(enc("a\r\nb"), "id: e-1\ndata: a\ndata: b\n\n");
        assert_eq!(enc("a\rb"), "id: e-1\ndata: a\ndata: b\n\n");
        assert_eq!(enc("a\r\n\r\nb"), "id: e-1\ndata: a\ndata: \ndata: b\n\n");
        assert_eq!(enc("a\n"), "id: e-1\ndata: a\ndata: \n\n");
    }

    #[test]
    fn the_length_bound_holds_and_is_tight() {
        let named = Event::new("x").with_name("status").unwrap().with_retry(250);
        for (event, slack) in [
            (Event::new(""), 0),
            (Event::new("a\nb\rc"), 0),
            (Event::new("a\r\nb"), 7),
            (Event::new("\n".repeat(1000)), 0),
            (named, 17),
        ] {
            let len = encode("e-1", &event).len();
            assert_eq!(encoded_len_max(3, &event), len + slack, "{event:?}");
            assert!(encoded_len_worst(3, &event) >= len);
        }
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(enc(""), "id: e-1\ndata: \n\n");
    }

    #[test]
    fn leading_space_survives() {
        assert_eq!(enc(" x"), "id: e-1\ndata:  x\n\n");
    }

    #[test]
    fn name_and_retry() {
        let e = Event::new("x").with_name("status").unwrap().with_retry(250);
        assert_eq!(
            &encode("e-9", &e)[..],
            b"id: e-9\nevent: status\nretry: 250\ndata: x\n\n"
        );
    }

    #[test]
    fn topics_are_kept_once_in_the_order_first_named() {
        let names: Vec<String> = (0..50).map(|i| format!("t{}", i % 20)).collect();
        let event = names
            .iter()
            .try_fold(Event::new("x"), |e, t| e.with_topic(t))
            .unwrap();
        let got: Vec<&str> = event.topics().iter().map(Topic::as_str).collect();
        let want: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        assert_eq!(got, want);
        // Past the list-scan size too, and equal to the same event built without duplicates.
        let plain = want
            .iter()
            .try_fold(Event::new("x"), |e, t| e.with_topic(t))
            .unwrap();
        assert_eq!(event, plain);
        let few = Event::new("x")
            .with_topic("a")
            .unwrap()
            .with_topic("a")
            .unwrap();
        assert_eq!(few.topics().len(), 1);
    }

    #[test]
    fn refuses_forged_frames() {
        assert!(Event::new("x").with_name("a\nevent: b").is_err());
        assert!(Event::new("x").with_name("a\rb").is_err());
        assert!(Event::new("x").with_topic("a\0b").is_err());
        assert!(Topic::new(&"x".repeat(1025)).is_err());
        assert!(Topic::new(&"x".repeat(1024)).is_ok());
        assert!(Event::new("x").with_name(&"x".repeat(257)).is_err());
        assert!(Topic::new("ünïcødé ✓").is_ok());
    }
}
