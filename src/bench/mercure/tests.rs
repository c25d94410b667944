use std::time::Duration;

use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;

use super::*;
use crate::bench::publishers::PublishJob;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn args(flags: &[&str]) -> BenchArgs {
    Cli::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
        .unwrap()
        .bench
}

fn planned(flags: &[&str]) -> Plan {
    plan(&args(flags)).unwrap()
}

fn refused(flags: &[&str]) -> String {
    match plan(&args(flags)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{flags:?} was accepted"),
    }
}

/// The publish body of event `seq` (publisher 0, sent at 123 µs), as the publishers build it.
fn body(plan: &Plan, topics: u64, seq: u64) -> String {
    let job = PublishJob {
        index: 0,
        url: plan.targets.publish_url.clone(),
        body: plan.body.clone(),
        form_field: plan.form_field.clone(),
        form_extra: plan.form_extra.clone(),
        headers: plan.auth_header.clone(),
        batch: 1,
        topics,
        size: 40,
        rate: 0.0,
        offset: Duration::ZERO,
    };
    let (content_type, body) = job.request(seq, 1, 123);
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    String::from_utf8(body).unwrap()
}

/// A form body or query string as decoded (name, value) pairs.
fn fields(encoded: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .unwrap()
            .into_owned()
    };
    encoded
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn query(url: &Url) -> Vec<(String, String)> {
    fields(url.target.split_once('?').unwrap().1)
}

/// The `mercure` claims of an HS256 token signed with `secret`.
fn claims(token: &str, secret: &[u8]) -> serde_json::Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_secret(secret), &validation)
        .unwrap()
        .claims
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn encoding_escapes_all_but_unreserved_and_keeps_the_topic_placeholder() {
    assert_eq!(
        encode("https://example.com/bench/{id}"),
        "https%3A%2F%2Fexample.com%2Fbench%2F%7Bid%7D"
    );
    assert_eq!(
        encode("https://example.com/bench/{topic}"),
        "https%3A%2F%2Fexample.com%2Fbench%2F{topic}"
    );
    assert_eq!(encode("a b&c=d+é~-._"), "a%20b%26c%3Dd%2B%C3%A9~-._");
}

#[test]
fn mercure_subscribes_and_publishes_at_the_well_known_url() {
    // --events 0 in these tests: they are about what is sent (what each stream should get has
    // tests of its own, and templates match nothing until the selector branch lands).
    let plan = planned(&[
        "--mercure",
        "--url",
        "http://127.0.0.1:9000",
        "--events",
        "0",
    ]);
    let url = &plan.targets.url;
    assert_eq!(url.authority, "127.0.0.1:9000");
    assert!(url.target.starts_with("/.well-known/mercure?"), "{url:?}");
    assert_eq!(
        query(url),
        pairs(&[("topic", "https://example.com/bench/{id}")])
    );
    assert_eq!(plan.shown_url, *url);
    assert_eq!(
        plan.targets.publish_url,
        Url {
            authority: "127.0.0.1:9000".into(),
            target: "/.well-known/mercure".into()
        }
    );
    assert_eq!(plan.auth_header, "");
    let data = format!("0 7 123 {}", "x".repeat(32));
    assert_eq!(
        fields(&body(&plan, 1, 7)),
        pairs(&[("topic", "https://example.com/bench/1"), ("data", &data)])
    );
    let s = &plan.scenario;
    assert_eq!(
        (s.protocol, s.selector_kind, s.private, s.tokens),
        ("mercure", Some("template"), false, false)
    );
    assert_eq!(
        s.describe(),
        "mercure: selector https://example.com/bench/{id} (template), \
         topic https://example.com/bench/1, public updates"
    );
    // A --publish-url is used as it is; --form-extra comes after Mercure's fields.
    let plan = planned(&[
        "--mercure",
        "--url",
        "http://h:1/",
        "--publish-url",
        "http://h:2/hub",
        "--form-extra",
        "type=bench&id=e{topic}",
        "--topics",
        "3",
        "--events",
        "0",
    ]);
    assert_eq!(plan.targets.publish_url.target, "/hub");
    assert_eq!(
        fields(&body(&plan, 3, 5))[..3],
        pairs(&[
            ("topic", "https://example.com/bench/2"),
            ("type", "bench"),
            ("id", "e2")
        ])[..]
    );
}

#[test]
fn an_exact_selector_per_topic() {
    let flags = [
        "--mercure",
        "--url",
        "http://h:1",
        "--topics",
        "4",
        "--events",
        "10",
        "--mercure-selector",
        "https://example.com/bench/{topic}",
    ];
    let plan = planned(&flags);
    assert_eq!(
        query(&plan.targets.url.with_topic(3)),
        pairs(&[("topic", "https://example.com/bench/3")])
    );
    // Event 9 goes to topic 9 mod 4.
    assert_eq!(
        fields(&body(&plan, 4, 9))[0],
        ("topic".into(), "https://example.com/bench/1".into())
    );
    // 10 events over 4 topics: 3, 3, 2, 2.
    assert_eq!(plan.expected_per_stream, [3, 3, 2, 2]);
    assert_eq!(plan.scenario.selector_kind, Some("exact"));
    // One topic is number 1, in the selector as in the publishes.
    let plan = planned(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--events",
        "10",
        "--mercure-selector",
        "https://example.com/bench/{topic}",
    ]);
    assert_eq!(
        query(&plan.targets.url),
        pairs(&[("topic", "https://example.com/bench/1")])
    );
    assert_eq!(plan.expected_per_stream, [10]);
    // A fixed exact topic gets its topic's events on every stream; * gets them all.
    let fixed = planned(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--topics",
        "4",
        "--events",
        "10",
        "--mercure-selector",
        "https://example.com/bench/2",
    ]);
    assert_eq!(fixed.expected_per_stream, [2, 2, 2, 2]);
    let any = planned(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--topics",
        "4",
        "--events",
        "10",
        "--mercure-selector",
        "*",
    ]);
    assert_eq!(any.expected_per_stream, [10, 10, 10, 10]);
    assert_eq!(any.scenario.selector_kind, Some("any"));
}

#[test]
fn a_template_selector_gets_every_topic() {
    let plan = planned(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--topics",
        "4",
        "--events",
        "10",
    ]);
    assert_eq!(plan.expected_per_stream, [10, 10, 10, 10]);
}

#[test]
fn private_updates_with_tokens_the_bench_signs() {
    let secret = "a-long-shared-secret";
    let plan = planned(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--private",
        "--jwt-key",
        secret,
        "--events",
        "0",
    ]);
    assert_eq!(
        fields(&plan.form_extra),
        pairs(&[("topic", "https://example.com/bench/1"), ("private", "on")])
    );
    let q = query(&plan.targets.url);
    assert_eq!(
        q[0],
        ("topic".into(), "https://example.com/bench/{id}".into())
    );
    assert_eq!(q[1].0, "authorization");
    assert_eq!(
        claims(&q[1].1, secret.as_bytes()),
        serde_json::json!({"mercure": {"subscribe": ["*"]}})
    );
    // The report never shows the token.
    assert_eq!(
        query(&plan.shown_url)[1],
        ("authorization".into(), "TOKEN".into())
    );
    let bearer = plan
        .auth_header
        .strip_prefix("Authorization: Bearer ")
        .and_then(|t| t.strip_suffix("\r\n"))
        .unwrap();
    assert_eq!(
        claims(bearer, secret.as_bytes()),
        serde_json::json!({"mercure": {"publish": ["*"]}})
    );
    assert!(plan.scenario.private && plan.scenario.tokens);
    assert!(plan
        .scenario
        .describe()
        .ends_with("private updates, HS256 tokens signed by the bench"));
}

#[test]
fn a_key_file_and_native_publishes_with_a_token() {
    let dir = std::env::temp_dir().join(format!("ssehub-bench-key-{}", std::process::id()));
    std::fs::write(&dir, "from-a-file\n").unwrap();
    let at = format!("@{}", dir.display());
    let plan = planned(&["--url", "http://h:1", "--jwt-key", &at]);
    std::fs::remove_file(&dir).unwrap();
    let bearer = plan.auth_header.trim_end().rsplit(' ').next().unwrap();
    assert_eq!(
        claims(bearer, b"from-a-file"),
        serde_json::json!({"mercure": {"publish": ["*"]}})
    );
    // Native streams carry no token; the rest is as without --jwt-key.
    assert_eq!(plan.targets.url.target, "/events?topic=bench");
    assert_eq!(plan.targets.publish_url.target, "/publish?topic=bench");
    assert_eq!(plan.scenario.protocol, "native");
    assert_eq!(
        plan.scenario.describe(),
        "native, HS256 tokens signed by the bench"
    );
    let native = planned(&["--url", "http://h:1", "--topics", "3", "--events", "7"]);
    assert_eq!(native.expected_per_stream, [3, 2, 2]);
    assert_eq!(native.auth_header, "");
    assert_eq!(native.scenario.describe(), "native");
}

#[test]
fn flags_that_would_measure_nothing_are_refused() {
    let private = refused(&["--mercure", "--url", "http://h:1", "--private"]);
    assert!(
        private.starts_with("--private needs --jwt-key"),
        "{private}"
    );
    let private = refused(&["--url", "http://h:1", "--private", "--jwt-key", "k"]);
    assert!(
        private.starts_with("--private needs --mercure"),
        "{private}"
    );
    let path = refused(&["--mercure", "--url", "http://h:1/events?topic=a"]);
    assert!(
        path.starts_with("--url \"http://h:1/events?topic=a\""),
        "{path}"
    );
    let selector = refused(&["--mercure-selector", "*"]);
    assert_eq!(selector, "--mercure-selector needs --mercure");
    let json = refused(&["--mercure", "--url", "http://h:1", "--body", "json"]);
    assert!(json.contains("--body json"), "{json}");
    let none = refused(&[
        "--mercure",
        "--url",
        "http://h:1",
        "--mercure-selector",
        "https://example.com/other",
    ]);
    assert!(
        none.starts_with("--mercure-selector \"https://example.com/other\" matches none"),
        "{none}"
    );
    let empty = refused(&["--mercure", "--url", "http://h:1", "--jwt-key", ""]);
    assert_eq!(empty, "--jwt-key: the secret is empty");
}
