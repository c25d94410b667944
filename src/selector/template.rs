//! RFC 6570 URI templates compiled to anchored regular expressions, and shared.
//!
//! As in Mercure's reference hub (Go's `yosida95/uritemplate`, `Regexp()`), a template becomes
//! one regex accepting every string the template could expand to. Identical templates share one
//! compiled regex and one bounded cache of answers through a process-wide table, because a
//! template is checked against every event of every subscription that uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use regex::{Regex, RegexBuilder};

use super::{SelectorError, MAX_CACHED_TOPICS, MAX_TEMPLATES};
use crate::event::{Topic, MAX_TOPIC_LEN};

/// Most heap one template's compiled automaton may take; ordinary templates take a few KiB,
/// `{var:255}` about 110 KiB.
const MAX_COMPILED: usize = 128 << 10;
/// Most heap one template's lazy DFA may cache before falling back to a slower, cache-free
/// search.
const MAX_DFA_CACHE: usize = 64 << 10;

/// A compiled template and its answers. Shared by every `Template` with the same text.
pub(super) struct Compiled {
    pub(super) text: Arc<str>,
    regex: Regex,
    /// Topic -> matches. At most `MAX_CACHED_TOPICS` entries: cleared when full, so hot topics
    /// come back at once and memory stays bounded.
    answers: RwLock<HashMap<Topic, bool>>,
}

impl Compiled {
    fn new(text: &str) -> Result<Compiled, SelectorError> {
        let bad = |why: String| SelectorError::Template(shown(text), why);
        if text.len() > MAX_TOPIC_LEN {
            return Err(bad(format!("longer than {MAX_TOPIC_LEN} bytes")));
        }
        let pattern = pattern(text).map_err(bad)?;
        // A 256-byte template can still ask for a large automaton (`{a:255}` repeated): refuse
        // those rather than let a subscriber pin megabytes. Nesting grows with variables per
        // expression, past the parser's default of 250.
        let regex = RegexBuilder::new(&pattern)
            .size_limit(MAX_COMPILED)
            .dfa_size_limit(MAX_DFA_CACHE)
            .nest_limit(4 * MAX_TOPIC_LEN as u32)
            .build()
            .map_err(|_| bad(format!("too complex (compiles past {MAX_COMPILED} bytes)")))?;
        Ok(Compiled {
            text: text.into(),
            regex,
            answers: RwLock::default(),
        })
    }

    /// Whether the template could expand to `topic`. The regex runs outside the lock.
    pub(super) fn matches(&self, topic: &Topic) -> bool {
        let cached = self
            .answers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .copied();
        if let Some(hit) = cached {
            return hit;
        }
        let hit = self.regex.is_match(topic.as_str());
        let mut answers = self.answers.write().unwrap_or_else(PoisonError::into_inner);
        if answers.len() >= MAX_CACHED_TOPICS {
            answers.clear();
        }
        answers.insert(topic.clone(), hit);
        hit
    }

    pub(super) fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.answers.read().unwrap().len()
    }
}

/// The process-wide table of compiled templates, keyed by text.
pub(super) static INTERNED: LazyLock<Interner> = LazyLock::new(|| Interner::new(MAX_TEMPLATES));

/// The table for selectors from verified tokens' claims: shared the same way, but never refused
/// (a signed claim is the token issuer's word, not something a client can multiply); when it is
/// full of templates in use, a new one is compiled unshared.
pub(super) static GRANTED: LazyLock<Interner> = LazyLock::new(|| Interner {
    refuse_when_full: false,
    ..Interner::new(MAX_TEMPLATES)
});

/// A bounded table of compiled templates. When full, it forgets those no live `Template` holds;
/// if every one is in use, a new template is refused: the table is the bound on what
/// subscribers can make the hub hold.
pub(super) struct Interner {
    max: AtomicUsize,
    /// Full of templates in use: refuse a new one (`false`: compile it unshared).
    refuse_when_full: bool,
    table: Mutex<HashMap<Arc<str>, Arc<Compiled>>>,
}

impl Interner {
    fn new(max: usize) -> Interner {
        Interner {
            max: AtomicUsize::new(max.max(1)),
            refuse_when_full: true,
            table: Mutex::default(),
        }
    }

    pub(super) fn get(&self, text: &str) -> Result<Arc<Compiled>, SelectorError> {
        if let Some(c) = self.lock().get(text) {
            return Ok(c.clone());
        }
        // Compile outside the lock: a slow compile must not stall every other subscribe.
        let fresh = Arc::new(Compiled::new(text)?);
        let mut table = self.lock();
        if let Some(c) = table.get(text) {
            return Ok(c.clone()); // Lost a race: share the winner's.
        }
        let max = self.max.load(Ordering::Relaxed);
        if table.len() >= max {
            // Count 1: only the table holds it, and cloning it out needs this lock.
            table.retain(|_, c| Arc::strong_count(c) > 1);
        }
        if table.len() >= max {
            if self.refuse_when_full {
                return Err(SelectorError::TooManyTemplates(max));
            }
            return Ok(fresh);
        }
        table.insert(fresh.text.clone(), fresh.clone());
        Ok(fresh)
    }

    pub(super) fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Compiled>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A template as shown in an error: long ones cut to 60 bytes.
fn shown(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}...", &s[..end])
    } else {
        s.into()
    }
}

/// How an operator expands (RFC 6570 §3.2.1 and appendix A).
#[derive(Clone, Copy)]
struct Op {
    /// Written before the first defined value.
    first: &'static str,
    /// Written between values.
    sep: &'static str,
    /// Values are written `name=value`.
    named: bool,
    /// An empty named value writes `name=` (`?`, `&`) rather than `name` (`;`).
    empty_eq: bool,
    /// Reserved characters pass unencoded (`+`, `#`).
    reserved: bool,
    /// `{var}` and `{+var}`: the expression must be there and each value is one or more
    /// characters, so `/books/{id}` does not match `/books/`. Operator expressions follow the RFC:
    /// absent when undefined (`/s{?q}` matches `/s`), values may be empty.
    required: bool,
}

const fn op(first: &'static str, sep: &'static str, named: bool, empty_eq: bool) -> Op {
    Op {
        first,
        sep,
        named,
        empty_eq,
        reserved: false,
        required: false,
    }
}

const SIMPLE: Op = Op {
    required: true,
    ..op("", ",", false, false)
};
const PLUS: Op = Op {
    reserved: true,
    ..SIMPLE
};
const HASH: Op = Op {
    reserved: true,
    ..op("#", ",", false, false)
};

fn operator(c: char) -> Option<Op> {
    Some(match c {
        '+' => PLUS,
        '#' => HASH,
        '.' => op(".", ".", false, false),
        '/' => op("/", "/", false, false),
        ';' => op(";", ";", true, false),
        '?' => op("?", "&", true, true),
        '&' => op("&", "&", true, true),
        _ => return None,
    })
}

// Regex class contents; `-`, `&`, `~`, `[`, `]` escaped so the class parser sees literals.
const UNRESERVED: &str = r"A-Za-z0-9\-._\~";
const RESERVED: &str = r":/?#\[\]@!$\&'()*+,;=";

/// The regex for a whole template: literals escaped, each expression compiled, anchored.
fn pattern(text: &str) -> Result<String, String> {
    let mut out = String::from("^");
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&regex::escape(&rest[..i]));
        if rest[i..].starts_with('}') {
            return Err("'}' outside an expression".into());
        }
        let after = &rest[i + 1..];
        let end = after.find('}').ok_or("unclosed '{'")?;
        let body = &after[..end];
        if body.contains('{') {
            return Err(format!("'{{' inside '{{{body}}}'"));
        }
        expression(body, &mut out).map_err(|why| format!("{why} in '{{{body}}}'"))?;
        rest = &after[end + 1..];
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    Ok(out)
}

/// Appends the regex for one expression (`body` is between the braces).
fn expression(body: &str, out: &mut String) -> Result<(), String> {
    let first = body.chars().next().ok_or("empty expression")?;
    let (op, list) = match operator(first) {
        Some(op) => (op, &body[first.len_utf8()..]),
        None if "=,!@|".contains(first) => return Err(format!("reserved operator '{first}'")),
        None => (SIMPLE, body),
    };
    let sep = regex::escape(op.sep);
    // Any ordered, non-empty subset of the variables may be defined. Built from the left so
    // the pattern grows linearly: q(i) = q(i-1) (sep item(i))? | item(i).
    let mut any_subset = String::new();
    for spec in list.split(',') {
        let item = variable(op, spec)?;
        any_subset = if any_subset.is_empty() {
            format!("(?:{item})")
        } else {
            format!("(?:{any_subset}(?:{sep}{item})?|{item})")
        };
    }
    if op.required {
        out.push_str(&any_subset);
    } else {
        out.push_str(&format!("(?:{}{any_subset})?", regex::escape(op.first)));
    }
    Ok(())
}

/// The regex for one defined variable: a value, a list or an associative array.
fn variable(op: Op, spec: &str) -> Result<String, String> {
    let (name, explode, prefix) = if let Some(name) = spec.strip_suffix('*') {
        (name, true, None)
    } else if let Some((name, digits)) = spec.split_once(':') {
        (name, false, Some(prefix(digits)?))
    } else {
        (spec, false, None)
    };
    check_name(name)?;
    // Unexploded lists and arrays join with ','; exploded unnamed arrays write 'key=value';
    // exploded named ones write 'key=value' too, so there a key holds no '='.
    let extra = match (explode, op.named) {
        (false, _) => ",",
        (true, false) => "=",
        (true, true) => "",
    };
    let reserved = if op.reserved { RESERVED } else { "" };
    let unit = format!("(?:[{UNRESERVED}{reserved}{extra}]|%[0-9A-Fa-f]{{2}})");
    // A prefix counts characters; a pct-encoded triplet counts as one.
    let (any, nonempty) = match prefix {
        // No topic is that long anyway, and a bounded repeat costs automaton space per unit.
        Some(n) if usize::from(n) >= MAX_TOPIC_LEN => (format!("{unit}*"), format!("{unit}+")),
        Some(n) => (format!("{unit}{{0,{n}}}"), format!("{unit}{{1,{n}}}")),
        None => (format!("{unit}*"), format!("{unit}+")),
    };
    let value = if op.required { &nonempty } else { &any };
    if !op.named {
        return Ok(if explode {
            format!("{value}(?:{}{value})*", regex::escape(op.sep))
        } else {
            value.clone()
        });
    }
    let key = if explode {
        format!("{unit}+")
    } else {
        regex::escape(name)
    };
    let pair = if op.empty_eq {
        format!("{key}={any}")
    } else {
        format!("{key}(?:={nonempty})?")
    };
    Ok(if explode {
        format!("{pair}(?:{}{pair})*", regex::escape(op.sep))
    } else {
        pair
    })
}

/// A prefix modifier: 1 to 9999.
fn prefix(digits: &str) -> Result<u16, String> {
    match digits.parse::<u16>() {
        Ok(n @ 1..=9999)
            if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') =>
        {
            Ok(n)
        }
        _ => Err(format!("bad prefix ':{digits}' (1 to 9999)")),
    }
}

/// varname = varchar *( ["."] varchar ), varchar = ALPHA / DIGIT / "_" / pct-encoded.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty variable name".into());
    }
    let bad = || Err(format!("bad variable name '{name}'"));
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return bad();
    }
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        let ok = match b {
            b'%' => {
                bytes.next().is_some_and(|h| h.is_ascii_hexdigit())
                    && bytes.next().is_some_and(|h| h.is_ascii_hexdigit())
            }
            _ => b.is_ascii_alphanumeric() || b == b'_' || b == b'.',
        };
        if !ok {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
