//! What a subscription asks for: its topics, and where to resume.

use crate::event::{EventError, Topic};

/// What to subscribe to, and where to resume.
///
/// ```
/// use ssehub::SubscribeRequest;
/// let req = SubscribeRequest::topics(["a", "b"])?.resume_after("3f2a9c01b2c4-17");
/// # Ok::<(), ssehub::event::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub(crate) topics: Vec<Topic>,
    pub(crate) last_event_id: Option<String>,
}

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
            last_event_id: None,
        }
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
        self
    }

    /// The topics, without duplicates (examples at [`new`](Self::new)).
    pub fn topic_list(&self) -> &[Topic] {
        &self.topics
    }
}
