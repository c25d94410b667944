//! Which events of the rings it reads a subscription may be sent: those its selectors select
//! (when it reads every event, for `*` or a URI template), and of the private ones, those on a
//! topic its token allows.
//!
//! Exact-topic subscriptions with no private events in sight pay one inline flag test per event:
//! the common case stays a plain walk of the ring, and the event's shared [`Meta`] is looked at
//! only for private events and for selector subscriptions.

use crate::event::Topic;
use crate::selector::SelectorSet;

use super::ring::{Entry, Meta};

/// A subscription's filter. See the [module documentation](self). One pointer: the common
/// subscription (exact topics, public events only) holds nothing else, which keeps idle streams
/// small.
pub(crate) struct Access(Option<Box<Rules>>);

struct Rules {
    /// Set when the subscription reads every event: keep those with a selected topic.
    select: Option<SelectorSet>,
    /// The topics whose private events it may get (`None`: public events only).
    private: Option<SelectorSet>,
    /// Per ring read: its private events are allowed without looking further.
    ring_allowed: Vec<bool>,
}

impl Access {
    /// A filter for a subscription reading the rings of `rings` (exact topics), or every event
    /// (`rings` empty, `select` set).
    pub(crate) fn new(
        select: Option<SelectorSet>,
        private: Option<SelectorSet>,
        rings: &[Topic],
    ) -> Access {
        if select.is_none() && private.is_none() {
            return Access(None);
        }
        let ring_allowed = match (&select, &private) {
            (_, None) => vec![false; rings.len().max(1)],
            (Some(_), Some(p)) => vec![p.is_any()],
            (None, Some(p)) => rings.iter().map(|t| p.matches(t)).collect(),
        };
        Access(Some(Box::new(Rules {
            select,
            private,
            ring_allowed,
        })))
    }

    /// Whether the entry, read from ring number `ring`, may be sent.
    #[inline]
    pub(crate) fn admits(&self, ring: usize, entry: &Entry) -> bool {
        match &self.0 {
            None => !entry.private,
            Some(rules) if rules.select.is_none() && !entry.private => true,
            // Selector readers read the ring of every event, whose entries all have it.
            Some(_) => entry
                .meta
                .as_ref()
                .is_some_and(|meta| self.admits_meta(ring, meta)),
        }
    }

    /// Whether an event with this meta, read from ring number `ring`, may be sent.
    pub(crate) fn admits_meta(&self, ring: usize, meta: &Meta) -> bool {
        let allowed = self
            .0
            .as_ref()
            .and_then(|r| r.ring_allowed.get(ring).copied())
            .unwrap_or(false);
        self.admits_event(allowed, &meta.topics, meta.private)
    }

    /// Whether an event with these topics may be sent; `allowed`: its private events are
    /// allowed on the ring it was read from.
    pub(crate) fn admits_event(&self, allowed: bool, topics: &[Topic], private: bool) -> bool {
        let Some(rules) = &self.0 else {
            return !private;
        };
        if let Some(select) = &rules.select {
            if !select.matches_any(topics) {
                return false;
            }
        }
        !private
            || allowed
            || rules
                .private
                .as_ref()
                .is_some_and(|p| p.matches_any(topics))
    }

    /// It reads the ring of every event (a `*` or template subscription).
    pub(crate) fn reads_all(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.select.is_some())
    }

    /// Whether the subscription would take this event at all (the decoder's topics).
    pub(crate) fn selects(&self, topic: &Topic) -> bool {
        self.0
            .as_ref()
            .and_then(|r| r.select.as_ref())
            .is_none_or(|s| s.matches(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;

    fn set(selectors: &[&str]) -> SelectorSet {
        SelectorSet::new(
            selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
        )
    }

    fn topics(names: &[&str]) -> Vec<Topic> {
        names.iter().map(|n| Topic::new(n).unwrap()).collect()
    }

    #[test]
    fn private_events_need_a_grant_on_one_of_their_topics() {
        let anonymous = Access::new(None, None, &topics(&["a"]));
        assert!(anonymous.admits_event(false, &topics(&["a"]), false));
        assert!(!anonymous.admits_event(false, &topics(&["a"]), true));
        // Allowed `b` only, reading ring `a`: a private event on `a` and `b` is theirs (an
        // alternate topic counts), one on `a` alone is not.
        let granted = Access::new(None, Some(set(&["b"])), &topics(&["a"]));
        assert!(!granted.0.as_ref().unwrap().ring_allowed[0]);
        assert!(granted.admits_event(false, &topics(&["a", "b"]), true));
        assert!(!granted.admits_event(false, &topics(&["a"]), true));
        let ring_granted = Access::new(None, Some(set(&["a"])), &topics(&["a"]));
        assert!(ring_granted.0.as_ref().unwrap().ring_allowed[0]);
    }

    #[test]
    fn selector_subscriptions_keep_what_they_select() {
        let all = Access::new(Some(set(&["*"])), Some(set(&["*"])), &[]);
        assert!(all.admits_event(
            all.0.as_ref().unwrap().ring_allowed[0],
            &topics(&["x"]),
            true
        ));
        let picky = Access::new(Some(set(&["x", "*"])), None, &[]);
        assert!(picky.admits_event(false, &topics(&["y"]), false));
        assert!(!picky.admits_event(false, &topics(&["y"]), true));
        let exact = Access::new(Some(set(&["x"])), None, &[]);
        assert!(!exact.admits_event(false, &topics(&["y"]), false));
        assert!(exact.selects(&Topic::new("x").unwrap()));
    }
}
