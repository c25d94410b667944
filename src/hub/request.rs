//! What a subscription asks for: its topics (or selectors), where to resume, which private
//! events it may see, and until when.

use std::time::Instant;

use crate::event::{EventError, Topic};
use crate::selector::SelectorSet;

/// What to subscribe to, and where to resume.
///
/// ```
/// use ssehub::SubscribeRequest;
/// let req = SubscribeRequest::topics(["a", "b"])?.resume_after("3f2a9c01b2c4-17");
/// # Ok::<(), ssehub::event::EventError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub(crate) topics: Vec<Topic>,
    /// Set when a selector is `*` or a URI template: every event is looked at and filtered
    /// (exact topics alone read only their rings).
    pub(crate) selectors: Option<SelectorSet>,
    pub(crate) last_event_id: Option<String>,
    /// Replay every retained event first, with no gap notice.
    pub(crate) earliest: bool,
    /// On a fresh open, replay the newest this many retained events first (like `tail -n`).
    pub(crate) tail: Option<usize>,
    /// The topics whose private events it may receive (`None`: public events only).
    pub(crate) private: Option<SelectorSet>,
    /// The stream ends here (its token's `exp`).
    pub(crate) expires_at: Option<Instant>,
}

impl PartialEq for SubscribeRequest {
    fn eq(&self, other: &SubscribeRequest) -> bool {
        let sel = |s: &Option<SelectorSet>| s.as_ref().map(|s| s.selectors().to_vec());
        self.topics == other.topics
            && sel(&self.selectors) == sel(&other.selectors)
            && self.last_event_id == other.last_event_id
            && self.earliest == other.earliest
            && self.tail == other.tail
            && sel(&self.private) == sel(&other.private)
            && self.expires_at == other.expires_at
    }
}

impl Eq for SubscribeRequest {}

impl SubscribeRequest {
    /// A request for these (checked) topics; none means `default`. Duplicates are dropped.
    ///
    /// ```
    /// use ssehub::{SubscribeRequest, Topic};
    /// let a = Topic::new("a")?;
    /// assert_eq!(SubscribeRequest::new(vec![a.clone(), a.clone()]).topic_list(), [a]);
    /// assert_eq!(SubscribeRequest::new(vec![]).topic_list(), [Topic::default_topic()]);
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn new(topics: Vec<Topic>) -> SubscribeRequest {
        let mut unique: Vec<Topic> = Vec::with_capacity(topics.len().max(1));
        for t in topics {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }
        if unique.is_empty() {
            unique.push(Topic::default_topic());
        }
        SubscribeRequest {
            topics: unique,
            selectors: None,
            last_event_id: None,
            earliest: false,
            tail: None,
            private: None,
            expires_at: None,
        }
    }

    /// A request for whatever these selectors select (see [`selector`](crate::selector)). Only
    /// exact topics: the same as [`new`](Self::new) with them. With `*` or a URI template, the
    /// subscription looks at every event (a cost per event, not per topic) and keeps those
    /// that match. An empty set means `default`.
    ///
    /// ```
    /// use ssehub::selector::{Selector, SelectorSet};
    /// use ssehub::SubscribeRequest;
    /// let set = SelectorSet::new(vec![Selector::parse("a")?]);
    /// assert_eq!(SubscribeRequest::selectors(set), SubscribeRequest::topics(["a"])?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn selectors(set: SelectorSet) -> SubscribeRequest {
        let exact = set
            .selectors()
            .iter()
            .filter_map(|s| match s {
                crate::selector::Selector::Exact(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        let mut request = SubscribeRequest::new(exact);
        if !set.is_exact_only() {
            request.topics.clear();
            request.selectors = Some(set);
        }
        request
    }

    /// Also receive the private events on topics these selectors select (a token's
    /// `mercure.subscribe` claim). Without it, a subscription gets public events only.
    ///
    /// ```
    /// use ssehub::selector::{Selector, SelectorSet};
    /// let req = ssehub::SubscribeRequest::topics(["a"])?
    ///     .allow_private(SelectorSet::new(vec![Selector::parse("*")?]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_private(mut self, allowed: SelectorSet) -> SubscribeRequest {
        self.private = Some(allowed);
        self
    }

    /// End the subscription at this instant (with [`End::Expired`](crate::End::Expired)).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let req = ssehub::SubscribeRequest::topics(["a"])?
    ///     .expires_at(Instant::now() + Duration::from_secs(60));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expires_at(mut self, at: Instant) -> SubscribeRequest {
        self.expires_at = Some(at);
        self
    }

    /// On a fresh open, replay the newest `n` events retained in memory on its topics first,
    /// like `tail -n` (the viewer's "last N"), then go on live. A resume
    /// ([`resume_after`](Self::resume_after)) wins over it: a client reconnecting with its last
    /// id gets what it missed, not the tail again.
    ///
    /// ```
    /// let req = ssehub::SubscribeRequest::topics(["log"])?.tail(100);
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn tail(mut self, n: usize) -> SubscribeRequest {
        self.tail = Some(n);
        self
    }

    /// Replay every retained event first (Mercure's `lastEventID=earliest`), with no gap
    /// notice for what retention already dropped.
    ///
    /// ```
    /// let req = ssehub::SubscribeRequest::topics(["a"])?.from_earliest();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_earliest(mut self) -> SubscribeRequest {
        self.earliest = true;
        self.last_event_id = None;
        self
    }

    /// A request for topics given by name, checked.
    ///
    /// # Errors
    ///
    /// [`EventError::BadTopic`] for the first name that is not a valid topic.
    ///
    /// ```
    /// use ssehub::SubscribeRequest;
    /// assert_eq!(SubscribeRequest::topics(["a", "b"])?.topic_list().len(), 2);
    /// assert!(SubscribeRequest::topics([""]).is_err());
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn topics<I, S>(names: I) -> Result<SubscribeRequest, EventError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let topics = names
            .into_iter()
            .map(|n| Topic::new(n.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SubscribeRequest::new(topics))
    }

    /// Resume after this event id (what `Last-Event-ID` carries, or a
    /// [`ReceivedEvent::id`](crate::ReceivedEvent::id)). An empty id means no resume. An id
    /// this hub did not give is not an error: the subscription starts with a gap notice and
    /// replays everything retained (see [`Gap`](crate::Gap)).
    ///
    /// ```
    /// use ssehub::SubscribeRequest;
    /// let req = SubscribeRequest::topics(["a"])?.resume_after("3f2a9c01b2c4-17");
    /// assert_eq!(req, SubscribeRequest::topics(["a"])?.resume_after("").resume_after("3f2a9c01b2c4-17"));
    /// # Ok::<(), ssehub::EventError>(())
    /// ```
    pub fn resume_after(mut self, id: impl Into<String>) -> SubscribeRequest {
        let id = id.into();
        self.last_event_id = (!id.is_empty()).then_some(id);
        self.earliest = false;
        self
    }

    /// The exact topics, without duplicates (examples at [`new`](Self::new)); empty when the
    /// request has `*` or a template ([`selector_set`](Self::selector_set)).
    pub fn topic_list(&self) -> &[Topic] {
        &self.topics
    }

    /// The selectors, when they are not only exact topics.
    pub fn selector_set(&self) -> Option<&SelectorSet> {
        self.selectors.as_ref()
    }
}
