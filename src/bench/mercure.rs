//! The bench's Mercure scenario (`--mercure`, `--private`, `--jwt-key`): where streams subscribe
//! and publishes go on a hub's `/.well-known/mercure`, the form fields of each publish, the HS256
//! tokens the bench signs, and how many events each stream should get.

use std::collections::HashMap;

use jsonwebtoken::{EncodingKey, Header};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use super::args::{targets, BenchArgs, Targets};
use super::http1::Url;
use super::BenchError;
use crate::event::Topic;
use crate::selector::Selector;

/// What a stream subscribes to without `--mercure-selector`: a URI template matching every topic
/// the bench publishes to.
pub(super) const DEFAULT_SELECTOR: &str = "https://example.com/bench/{id}";
/// The topic of each publish; `{topic}` is the event's topic number (1 with a single topic).
const TOPIC: &str = "https://example.com/bench/{topic}";
/// The one Mercure URL, for subscribing and publishing alike.
const PATH: &str = "/.well-known/mercure";

/// Everything but RFC 3986's unreserved characters is escaped, in query values and form fields
/// alike (`/`, `:` and `{` included, so a selector reads back exactly as written).
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a run measured, so a recorded report says it.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// `native` (ssehub's own `/events` and `/publish`, or the URLs given) or `mercure`.
    pub protocol: &'static str,
    /// Mercure: what each stream subscribes to (`{topic}`: the stream's topic number).
    pub selector: Option<String>,
    /// Mercure: `exact`, `template` or `any` (`*`).
    pub selector_kind: Option<&'static str>,
    /// Mercure: the topic of each publish (`{topic}`: the event's topic number).
    pub topic: Option<String>,
    /// Mercure: publishes are private updates (`private=on`).
    pub private: bool,
    /// The bench signed HS256 tokens with `--jwt-key`: publishers send one as
    /// `Authorization: Bearer`, Mercure streams as their `authorization` query parameter.
    pub tokens: bool,
}

impl Scenario {
    /// One line for the table.
    pub(super) fn describe(&self) -> String {
        let tokens = if self.tokens {
            ", HS256 tokens signed by the bench"
        } else {
            ""
        };
        match (&self.selector, &self.topic) {
            (Some(selector), Some(topic)) => format!(
                "mercure: selector {selector} ({}), topic {topic}, {} updates{tokens}",
                self.selector_kind.unwrap_or("exact"),
                if self.private { "private" } else { "public" },
            ),
            _ => format!("{}{tokens}", self.protocol),
        }
    }
}

/// The scenario resolved from the flags: where to go, what to send, what to expect.
pub(super) struct Plan {
    pub(super) targets: Targets,
    /// The stream URL for the report: the subscriber token replaced by `TOKEN`.
    pub(super) shown_url: Url,
    /// `--body` to use.
    pub(super) body: String,
    /// `--form-field` to use.
    pub(super) form_field: String,
    /// Form fields before the data; `{topic}` is the event's topic number.
    pub(super) form_extra: String,
    /// `Authorization: Bearer` with the publisher token, CRLF-ended; empty without `--jwt-key`.
    pub(super) auth_header: String,
    /// Events a stream on topic `s` should receive, for each `s` in `0..--topics`.
    pub(super) expected_per_stream: Vec<u64>,
    pub(super) scenario: Scenario,
}

/// Resolves the scenario flags, native or Mercure, into a [`Plan`].
pub(super) fn plan(args: &BenchArgs) -> Result<Plan, BenchError> {
    let flag = |s: &str| BenchError::Flag(s.into());
    if !args.mercure {
        if args.private {
            return Err(flag(
                "--private needs --mercure (ssehub's own topics have no private updates)",
            ));
        }
        if args.mercure_selector.is_some() {
            return Err(flag("--mercure-selector needs --mercure"));
        }
    }
    let secret = args.jwt_key.as_deref().map(read_secret).transpose()?;
    let auth_header = match &secret {
        Some(secret) => format!("Authorization: Bearer {}\r\n", publisher_token(secret)?),
        None => String::new(),
    };
    let events_on = |t: u64| args.events / args.topics + u64::from(t < args.events % args.topics);
    if !args.mercure {
        let targets = targets(&args.url, args.publish_url.as_deref(), args.topics)?;
        return Ok(Plan {
            shown_url: targets.url.clone(),
            targets,
            body: args.body.clone(),
            form_field: args.form_field.clone(),
            form_extra: args.form_extra.clone(),
            auth_header,
            expected_per_stream: (0..args.topics).map(events_on).collect(),
            scenario: Scenario {
                protocol: "native",
                selector: None,
                selector_kind: None,
                topic: None,
                private: false,
                tokens: secret.is_some(),
            },
        });
    }
    let base = Url::parse(&args.url).map_err(|e| BenchError::Flag(format!("--url {e}")))?;
    if base.target != "/" {
        return Err(BenchError::Flag(format!(
            "--url {:?}: --mercure takes a base URL (http://HOST:PORT) and adds {PATH} itself",
            args.url
        )));
    }
    if args.private && secret.is_none() {
        return Err(flag(
            "--private needs --jwt-key: private updates reach only streams with a subscriber \
             token, so the run would deliver nothing",
        ));
    }
    if args.body == "json" {
        return Err(flag("--mercure publishes form bodies: drop --body json"));
    }
    let selector = single_topic(
        args.mercure_selector.as_deref().unwrap_or(DEFAULT_SELECTOR),
        args.topics,
    );
    let topic = single_topic(TOPIC, args.topics);
    let expected_per_stream = expected_per_stream(&selector, &topic, args.topics, &events_on)?;
    if args.events > 0 && expected_per_stream.iter().all(|&n| n == 0) {
        return Err(BenchError::Flag(format!(
            "--mercure-selector {selector:?} matches none of the topics published to ({}), so the \
             run would deliver nothing",
            topic_name(&topic, 0)
        )));
    }
    let publish_url = match &args.publish_url {
        Some(p) => Url::parse(p).map_err(|e| BenchError::Flag(format!("--publish-url {e}")))?,
        None => Url {
            authority: base.authority.clone(),
            target: PATH.into(),
        },
    };
    let subscriber_token = secret.as_deref().map(subscriber_token).transpose()?;
    let stream = |token: Option<&str>| Url {
        authority: base.authority.clone(),
        target: subscribe_target(&selector, token),
    };
    let mut form_extra = format!("topic={}", encode(&topic));
    if args.private {
        form_extra.push_str("&private=on");
    }
    if !args.form_extra.is_empty() {
        form_extra.push('&');
        form_extra.push_str(&args.form_extra);
    }
    Ok(Plan {
        shown_url: stream(subscriber_token.as_ref().map(|_| "TOKEN")),
        targets: Targets {
            url: stream(subscriber_token.as_deref()),
            publish_url,
        },
        body: "form".into(),
        form_field: "data".into(),
        form_extra,
        auth_header,
        expected_per_stream,
        scenario: Scenario {
            protocol: "mercure",
            selector_kind: Some(match Selector::parse(&topic_name(&selector, 0)) {
                Ok(Selector::Any) => "any",
                Ok(Selector::Template(_)) => "template",
                _ => "exact",
            }),
            selector: Some(selector),
            topic: Some(topic),
            private: args.private,
            tokens: secret.is_some(),
        },
    })
}

/// With one topic, `{topic}` is 1 (the topic is `https://example.com/bench/1`).
fn single_topic(text: &str, topics: u64) -> String {
    if topics == 1 {
        text.replace("{topic}", "1")
    } else {
        text.to_string()
    }
}

fn topic_name(template: &str, t: u64) -> String {
    template.replace("{topic}", &t.to_string())
}

/// `--jwt-key` as `ssehub serve` reads it: the secret, or `@FILE` (one trailing newline dropped).
fn read_secret(value: &str) -> Result<Vec<u8>, BenchError> {
    let mut bytes = match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| BenchError::Flag(format!("--jwt-key {path}: {e}")))?
        }
        None => value.as_bytes().to_vec(),
    };
    if value.starts_with('@') && bytes.ends_with(b"\n") {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(BenchError::Flag("--jwt-key: the secret is empty".into()));
    }
    Ok(bytes)
}

/// An HS256 token with these `mercure` claims (no `exp`: a run may be long, and the hub takes
/// tokens without one).
fn sign(secret: &[u8], mercure: serde_json::Value) -> Result<String, BenchError> {
    let claims = serde_json::json!({ "mercure": mercure });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| BenchError::Flag(format!("--jwt-key: cannot sign a token: {e}")))
}

/// A token that may publish to every topic.
pub(super) fn publisher_token(secret: &[u8]) -> Result<String, BenchError> {
    sign(secret, serde_json::json!({ "publish": ["*"] }))
}

/// A token that may receive every private update.
pub(super) fn subscriber_token(secret: &[u8]) -> Result<String, BenchError> {
    sign(secret, serde_json::json!({ "subscribe": ["*"] }))
}

/// Escapes a query value or form field, leaving the bench's `{topic}` placeholder as it is.
pub(super) fn encode(text: &str) -> String {
    text.split("{topic}")
        .map(|part| utf8_percent_encode(part, ESCAPE).to_string())
        .collect::<Vec<_>>()
        .join("{topic}")
}

/// `/.well-known/mercure?topic=SELECTOR`, with `&authorization=TOKEN` when given.
pub(super) fn subscribe_target(selector: &str, token: Option<&str>) -> String {
    let mut target = format!("{PATH}?topic={}", encode(selector));
    if let Some(token) = token {
        target.push_str("&authorization=");
        target.push_str(&encode(token));
    }
    target
}

/// Events a stream on topic `s` gets, for each `s`: the events of every topic its selector
/// matches.
fn expected_per_stream(
    selector: &str,
    topic: &str,
    topics: u64,
    events_on: &dyn Fn(u64) -> u64,
) -> Result<Vec<u64>, BenchError> {
    let names: Vec<String> = (0..topics).map(|t| topic_name(topic, t)).collect();
    let parse = |text: &str| {
        Selector::parse(text).map_err(|e| BenchError::Flag(format!("--mercure-selector {e}")))
    };
    let events_for = |selector: &Selector| -> u64 {
        match selector {
            Selector::Any => (0..topics).map(events_on).sum(),
            _ => (0..topics)
                .filter(|&t| {
                    Topic::new(names[t as usize].as_str()).is_ok_and(|n| selector.matches(&n))
                })
                .map(events_on)
                .sum(),
        }
    };
    if !selector.contains("{topic}") {
        // One selector for every stream.
        return Ok(vec![events_for(&parse(selector)?); topics as usize]);
    }
    let by_name: HashMap<&str, u64> = names
        .iter()
        .enumerate()
        .map(|(t, n)| (n.as_str(), t as u64))
        .collect();
    (0..topics)
        .map(|s| {
            let own = topic_name(selector, s);
            Ok(match parse(&own)? {
                // The common case (one exact topic per stream) without testing every topic.
                Selector::Exact(_) => by_name.get(own.as_str()).map_or(0, |&t| events_on(t)),
                other => events_for(&other),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
