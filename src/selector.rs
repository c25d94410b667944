//! Topic selectors: what a subscription asks for, and what a token allows.
//!
//! A selector is an exact topic, `*` (every topic), or an RFC 6570 URI template such as
//! `https://example.com/books/{id}`, which matches every topic the template could expand to
//! (Mercure's rule). Exact topics cost nothing per event (the hub reads only their rings);
//! `*` and templates are checked against each event's topics.
//!
//! ```
//! use ssehub::selector::{Selector, SelectorSet};
//! use ssehub::Topic;
//!
//! let set = SelectorSet::new(vec![
//!     Selector::parse("news")?,
//!     Selector::parse("https://example.com/books/{id}")?,
//! ]);
//! assert!(set.matches(&Topic::new("news")?));
//! assert!(set.matches(&Topic::new("https://example.com/books/1")?));
//! assert!(!set.matches(&Topic::new("https://example.com/authors/1")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::event::{EventError, Topic};

mod template;

/// A selector that could not be read. The text is a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// Not a valid topic (empty, too long, a control character).
    #[error("{0}")]
    Topic(#[from] EventError),
    /// A `{` that does not open a valid RFC 6570 expression.
    #[error("bad URI template {0:?}: {1}")]
    Template(String, String),
    /// As many distinct URI templates as the hub allows are in use by live subscriptions
    /// ([`set_max_templates`]); a template already in use is still accepted.
    #[error("{0} distinct URI templates are in use, the most this hub allows (--max-templates); use one already in use, or an exact topic")]
    TooManyTemplates(usize),
}

/// One selector. See the [module documentation](self).
#[derive(Clone)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// One topic, exactly.
    Exact(Topic),
    /// An RFC 6570 URI template: every topic it could expand to.
    Template(Template),
}

impl Selector {
    /// Reads a selector: `*`, a URI template (it holds a `{`), or else an exact topic.
    ///
    /// # Errors
    ///
    /// [`SelectorError`]: not a valid topic, or a malformed template.
    ///
    /// ```
    /// use ssehub::selector::Selector;
    /// assert!(matches!(Selector::parse("*")?, Selector::Any));
    /// assert!(matches!(Selector::parse("a/{b}")?, Selector::Template(_)));
    /// assert!(matches!(Selector::parse("a/b")?, Selector::Exact(_)));
    /// assert!(Selector::parse("").is_err());
    /// # Ok::<(), ssehub::selector::SelectorError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Selector::parse_with(text, Template::new)
    }

    /// Like [`parse`](Self::parse), for a selector from a verified token's claim (see
    /// [`Template::granted`]).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    ///
    /// ```
    /// use ssehub::selector::Selector;
    /// assert!(Selector::parse_granted("/users/{id}")?.as_str() == "/users/{id}");
    /// # Ok::<(), ssehub::selector::SelectorError>(())
    /// ```
    pub fn parse_granted(text: &str) -> Result<Selector, SelectorError> {
        Selector::parse_with(text, Template::granted)
    }

    fn parse_with(
        text: &str,
        template: fn(&str) -> Result<Template, SelectorError>,
    ) -> Result<Selector, SelectorError> {
        let topic = Topic::new(text)?;
        if text == "*" {
            return Ok(Selector::Any);
        }
        if text.contains('{') {
            return Ok(Selector::Template(template(text)?));
        }
        Ok(Selector::Exact(topic))
    }

    /// Whether `topic` is selected.
    ///
    /// ```
    /// use ssehub::selector::Selector;
    /// use ssehub::Topic;
    /// assert!(Selector::parse("*")?.matches(&Topic::new("x")?));
    /// assert!(Selector::parse("/users/{id}")?.matches(&Topic::new("/users/42")?));
    /// assert!(!Selector::parse("/users/{id}")?.matches(&Topic::new("/users/42/x")?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn matches(&self, topic: &Topic) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(t) => t == topic,
            Selector::Template(t) => t.matches(topic),
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(t) => t.as_str(),
            Selector::Template(t) => t.as_str(),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Selector {}

/// Most distinct compiled templates in use at once, by default ([`set_max_templates`]). When the
/// table is full, those no live [`Template`] holds are forgotten; if every one is held, a new
/// template is refused ([`SelectorError::TooManyTemplates`]), so that subscribers cannot make
/// the hub hold more than this many compiled templates (each at most 128 KiB, plus its lazy
/// DFA's cache of at most 64 KiB).
pub const MAX_TEMPLATES: usize = 1024;

/// Sets how many distinct URI templates may be in use at once, process-wide (at least 1; the
/// default is [`MAX_TEMPLATES`]). The binary's `--max-templates`.
///
/// ```
/// ssehub::selector::set_max_templates(2048);
/// ```
pub fn set_max_templates(max: usize) {
    template::INTERNED.set_max(max);
}

/// Most topics whose answer one compiled template remembers; the answers are cleared when full.
/// Keys are [`Topic`]s, which share the events' buffers.
pub const MAX_CACHED_TOPICS: usize = 1024;

/// A compiled URI template. Cheap to clone; identical templates share one compiled regex and one
/// cache of answers (bounded by [`MAX_TEMPLATES`] and [`MAX_CACHED_TOPICS`]).
///
/// `{var}` and `{+var}` stand for one or more characters (`{var}` unreserved or pct-encoded,
/// `{+var}` reserved ones too, such as `/`); expressions with another operator (`{#var}`,
/// `{.var}`, `{/var}`, `{;var}`, `{?var}`, `{&var}`) may be absent, as for an undefined variable.
///
/// ```
/// use ssehub::selector::Template;
/// use ssehub::Topic;
///
/// let t = Template::new("https://example.com/users/{id}/{?page}")?;
/// assert!(t.matches(&Topic::new("https://example.com/users/1/")?));
/// assert!(t.matches(&Topic::new("https://example.com/users/1/?page=2")?));
/// assert!(!t.matches(&Topic::new("https://example.com/users/1/x")?));
/// assert!(Template::new("/books/{+path}")?.matches(&Topic::new("/books/a/b")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Template {
    compiled: Arc<template::Compiled>,
}

impl Template {
    /// Compiles a template, or shares the compiled one if the same text is in use.
    ///
    /// # Errors
    ///
    /// [`SelectorError::Template`] for a malformed expression, a template longer than
    /// [`MAX_TOPIC_LEN`](crate::event::MAX_TOPIC_LEN), or one whose automaton would take more than
    /// 128 KiB (such as `{a:255}{b:255}`; ordinary templates take a few KiB).
    ///
    /// ```
    /// use ssehub::selector::{SelectorError, Template};
    /// assert!(Template::new("/books/{id}").is_ok());
    /// let err = Template::new("/books/{id").unwrap_err();
    /// assert_eq!(err.to_string(), r#"bad URI template "/books/{id": unclosed '{'"#);
    /// ```
    pub fn new(text: &str) -> Result<Template, SelectorError> {
        Ok(Template {
            compiled: template::INTERNED.get(text)?,
        })
    }

    /// Like [`new`](Self::new), for a template from a verified token's claim: it does not count
    /// against [`set_max_templates`], so clients holding many templates cannot make a valid
    /// token fail.
    ///
    /// # Errors
    ///
    /// [`SelectorError::Template`], as [`new`](Self::new).
    pub fn granted(text: &str) -> Result<Template, SelectorError> {
        Ok(Template {
            compiled: template::GRANTED.get(text)?,
        })
    }

    /// Whether the template could expand to `topic` (example at [`Template`]).
    pub fn matches(&self, topic: &Topic) -> bool {
        self.compiled.matches(topic)
    }

    /// The template as written.
    ///
    /// ```
    /// assert_eq!(ssehub::selector::Template::new("a/{b}")?.as_str(), "a/{b}");
    /// # Ok::<(), ssehub::selector::SelectorError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.compiled.text
    }

    /// The anchored regular expression the template compiled to, for logs and debugging.
    ///
    /// ```
    /// let t = ssehub::selector::Template::new("/a.b")?;
    /// assert_eq!(t.pattern(), r"^/a\.b$");
    /// # Ok::<(), ssehub::selector::SelectorError>(())
    /// ```
    pub fn pattern(&self) -> &str {
        self.compiled.pattern()
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Several selectors, matched as one: exact topics by a set lookup, then `*`, then templates.
#[derive(Clone, Default)]
pub struct SelectorSet {
    any: bool,
    exact: HashSet<Topic>,
    templates: Vec<Template>,
    /// As given, without duplicates, for display and for the subscriptions API.
    all: Vec<Selector>,
}

impl SelectorSet {
    /// A set of these selectors (duplicates dropped).
    pub fn new(selectors: Vec<Selector>) -> SelectorSet {
        let mut set = SelectorSet::default();
        for s in selectors {
            if set.all.contains(&s) {
                continue;
            }
            match &s {
                Selector::Any => set.any = true,
                Selector::Exact(t) => {
                    set.exact.insert(t.clone());
                }
                Selector::Template(t) => set.templates.push(t.clone()),
            }
            set.all.push(s);
        }
        set
    }

    /// Whether any selector selects `topic`.
    pub fn matches(&self, topic: &Topic) -> bool {
        self.any || self.exact.contains(topic) || self.templates.iter().any(|t| t.matches(topic))
    }

    /// Whether any selector selects any of `topics`.
    pub fn matches_any(&self, topics: &[Topic]) -> bool {
        topics.iter().any(|t| self.matches(t))
    }

    /// Holds `*`.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Only exact topics (no `*`, no template): the hub reads their rings alone.
    pub fn is_exact_only(&self) -> bool {
        !self.any && self.templates.is_empty()
    }

    /// No selector at all.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The selectors, as given.
    pub fn selectors(&self) -> &[Selector] {
        &self.all
    }
}

impl fmt::Debug for SelectorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.all).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn set(selectors: &[&str]) -> SelectorSet {
        SelectorSet::new(
            selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
        )
    }

    #[test]
    fn parse_sorts_selectors_and_reports_bad_templates() {
        assert!(matches!(Selector::parse("*"), Ok(Selector::Any)));
        assert!(matches!(Selector::parse("a}b"), Ok(Selector::Exact(_))));
        assert!(matches!(
            Selector::parse("/a/{b}"),
            Ok(Selector::Template(_))
        ));
        let err = Selector::parse("/a/{b").unwrap_err();
        assert_eq!(
            err,
            SelectorError::Template("/a/{b".into(), "unclosed '{'".into())
        );
        assert!(matches!(
            Selector::parse("a\n{b}"),
            Err(SelectorError::Topic(_))
        ));
    }

    #[test]
    fn sets_match_exact_any_and_templates() {
        let exact = set(&["a", "b", "a"]);
        assert!(exact.is_exact_only() && !exact.is_any() && !exact.is_empty());
        assert_eq!(exact.selectors().len(), 2);
        assert!(exact.matches(&topic("a")) && !exact.matches(&topic("c")));

        let mixed = set(&["a", "https://example.com/books/{id}"]);
        assert!(!mixed.is_exact_only());
        assert!(mixed.matches(&topic("https://example.com/books/1")));
        assert!(!mixed.matches(&topic("https://example.com/books/1/reviews")));
        assert!(mixed.matches_any(&[topic("x"), topic("a")]));
        assert!(!mixed.matches_any(&[topic("x")]));

        let any = set(&["*", "a"]);
        assert!(any.is_any() && any.matches(&topic("anything")));
        assert!(SelectorSet::new(vec![]).is_empty());
    }
}
