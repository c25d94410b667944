//! `/metrics` on the real binary: the page parses as Prometheus text, and after publishes,
//! streams, a resume and refusals, the histograms, bytes out, refusals by reason and replays
//! count them. The Grafana dashboard in docs/ names only metrics a hub serves.

mod common;
mod redis_server;

use std::collections::{BTreeMap, BTreeSet};

use common::{client, HubProcess};
use redis_server::Redis;

/// One sample: its name, its labels as written (`a="b",c="d"`), its value.
type Sample = (String, String, f64);

/// Parses Prometheus text (format 0.0.4): every line a `# HELP`, a `# TYPE`, or a sample of a
/// declared family. Returns the samples; panics naming the first line that is none of these.
fn parse(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some(), "HELP without text: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                families.insert(name.into(), kind.into()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect(line)),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        for label in labels.split("\",").filter(|l| !l.is_empty()) {
            let (key, value) = label.split_once("=\"").expect(line);
            assert!(!key.is_empty() && !value.contains('\n'), "{line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| families.get(*base).map(String::as_str) == Some("histogram"))
            .unwrap_or(name);
        assert!(families.contains_key(family), "no TYPE for {line}");
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

/// The value of the sample `name` with exactly these labels.
fn value(samples: &[Sample], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
        .2
}

async fn scrape(hub: &HubProcess) -> String {
    let resp = client().get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_publishes_deliveries_refusals_and_replays() {
    let hub = HubProcess::start(&["--max-clients", "1", "--max-body", "8000", "--publish-open"]);
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    // 130 events: the delivery lag samples one in 64, so two of them are measured.
    let batch: Vec<String> = (0..130)
        .map(|i| format!(r#"{{"topic":"a","data":"{i}"}}"#))
        .collect();
    let (status, _) = hub.publish_json(&format!("[{}]", batch.join(","))).await;
    assert_eq!(status, 200);
    let first = stream.events(130).await;
    hub.publish_ok("?topic=a", "raw").await;
    let form = client()
        .post(hub.url("/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a&data=form")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    stream.events(2).await;
    // Refusals: the hub is full (one stream), and a body over --max-body.
    let full = client()
        .get(hub.url("/events?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 503);
    let (status, _) = hub.publish_raw("?topic=a", "x".repeat(9000)).await;
    assert_eq!(status, 413);
    // A resume from an id memory holds, once the one slot is free.
    drop(stream);
    hub.wait_metric("ssehub_clients", |n| n == 0).await;
    let resume = [("last-event-id", first[100].id.as_str())];
    let mut resumed = common::EventStream::open(&hub.url("/events?topic=a"), &resume).await;
    assert_eq!(resumed.events(31).await.len(), 31);
    drop(resumed);

    let samples = parse(&scrape(&hub).await);
    for (api, n) in [("json", 1.0), ("raw", 1.0), ("form", 1.0)] {
        let labels = format!("api=\"{api}\"");
        assert_eq!(
            value(&samples, "ssehub_publish_duration_seconds_count", &labels),
            n,
            "{api}"
        );
        let inf = format!("{labels},le=\"+Inf\"");
        assert_eq!(
            value(&samples, "ssehub_publish_duration_seconds_bucket", &inf),
            n
        );
        assert!(value(&samples, "ssehub_publish_duration_seconds_sum", &labels) > 0.0);
    }
    assert!(value(&samples, "ssehub_delivery_lag_seconds_count", "") >= 2.0);
    assert_eq!(
        value(&samples, "ssehub_refusals_total", "reason=\"full\""),
        1.0
    );
    assert_eq!(
        value(&samples, "ssehub_refusals_total", "reason=\"too_large\""),
        1.0
    );
    assert_eq!(
        value(&samples, "ssehub_refusals_total", "reason=\"unauthorized\""),
        0.0
    );
    assert!(value(&samples, "ssehub_bytes_out_total", "") > 132.0 * 10.0);
    assert_eq!(
        value(&samples, "ssehub_replays_total", "source=\"memory\""),
        1.0
    );
    assert_eq!(
        value(&samples, "ssehub_replays_total", "source=\"store\""),
        0.0
    );
    // Today's names and meanings are kept.
    assert_eq!(value(&samples, "ssehub_published_total", ""), 132.0);
    assert_eq!(value(&samples, "ssehub_rejected_total", ""), 1.0);
    assert_eq!(value(&samples, "ssehub_max_clients", ""), 1.0);
    for name in [
        "ssehub_clients",
        "ssehub_slow_disconnects_total",
        "ssehub_topics",
        "ssehub_history_events",
        "ssehub_history_bytes",
        "ssehub_pending_connections",
        "ssehub_history_store_failed",
    ] {
        value(&samples, name, "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_events_memory_let_go_counts_as_a_store_replay() {
    let dir = std::env::temp_dir().join(format!("ssehub-metrics-{}", std::process::id()));
    let data_dir = dir.to_str().unwrap();
    let hub = HubProcess::start(&[
        "--data-dir",
        data_dir,
        "--memory-history",
        "5",
        "--publish-open",
    ]);
    let ids: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"topic":"a","data":"{i}"}}"#))
        .collect();
    let (status, answer) = hub.publish_json(&format!("[{}]", ids.join(","))).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let early = answer["ids"][2].as_str().unwrap();
    let mut resumed =
        common::EventStream::open(&hub.url("/events?topic=a"), &[("last-event-id", early)]).await;
    assert_eq!(resumed.events(17).await.len(), 17);
    let samples = parse(&scrape(&hub).await);
    assert_eq!(
        value(&samples, "ssehub_replays_total", "source=\"store\""),
        1.0
    );
    assert_eq!(
        value(&samples, "ssehub_replays_total", "source=\"memory\""),
        0.0
    );
    drop((resumed, hub));
    let _ = std::fs::remove_dir_all(dir);
}

/// Every metric a panel of docs/grafana-dashboard.json queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("expr", Some(e)) => out.push(e.to_string()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 12, "{} queries", exprs.len());
    let mut names = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("ssehub_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_a_hub_serves() {
    let names = dashboard_metrics();
    // A relaying hub serves the upstream metrics (its upstream need not answer); a cluster hub
    // the Redis ones.
    let hub = HubProcess::start(&["--upstream", "dev=http://127.0.0.1:9/events"]);
    let served: BTreeSet<String> = parse(&scrape(&hub).await)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let redis = Redis::start(None);
    let cluster = HubProcess::start(&["--redis", &redis.url()]);
    let cluster_served: BTreeSet<String> = parse(&scrape(&cluster).await)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    for name in &names {
        let (hub, served) = match name.starts_with("ssehub_redis_") {
            true => ("a cluster hub", &cluster_served),
            false => ("the hub", &served),
        };
        assert!(
            served.contains(name),
            "the dashboard queries {name}, which {hub} does not serve"
        );
    }
    for needed in [
        "ssehub_publish_duration_seconds_bucket",
        "ssehub_delivery_lag_seconds_bucket",
        "ssehub_refusals_total",
        "ssehub_bytes_out_total",
    ] {
        assert!(names.contains(needed), "no panel queries {needed}");
    }
}
