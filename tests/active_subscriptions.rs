//! Mercure's active subscriptions (`--mercure-subscriptions`) against the real binary: each
//! subscription to `/.well-known/mercure` is announced as a private update when it opens and when
//! it closes, and `GET /.well-known/mercure/subscriptions` lists the open ones to a token that
//! may see them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "presence-secret";

fn signed(claims: Value) -> String {
    hs256(claims, SECRET)
}

/// A token that may see every subscription's announcements.
fn watcher_token() -> String {
    signed(
        json!({"mercure": {"subscribe": ["/.well-known/mercure/subscriptions/{topic}/{subscriber}"]}}),
    )
}

async fn list(hub: &HubProcess, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(hub.url(&format!("/.well-known/mercure/subscriptions{path}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_announced_and_listed() {
    let hub = HubProcess::start(&["--jwt-key", SECRET, "--mercure-subscriptions"]);
    let token = watcher_token();
    let watch_url = hub.url(&format!(
        "/.well-known/mercure?topic={}&authorization={token}",
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}"
    ));
    let mut watcher = EventStream::open(&watch_url, &[]).await.opened().await;
    // The watcher's own subscription is announced first.
    let own: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(own["active"], true);

    let user = signed(json!({"mercure": {"subscribe": [], "payload": {"user": "ann"}}}));
    let url = hub.url(&format!(
        "/.well-known/mercure?topic=https://example.com/books/{{id}}&authorization={user}"
    ));
    let reader = EventStream::open(&url, &[]).await.opened().await;
    let opened: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(opened["type"], "Subscription");
    assert_eq!(opened["topic"], "https://example.com/books/{id}");
    assert_eq!(opened["active"], true);
    assert_eq!(opened["payload"], json!({"user": "ann"}));
    let subscriber = opened["subscriber"].as_str().unwrap().to_string();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");

    // The API lists both, with where to resume to see later changes.
    let (status, all) = list(&hub, "", Some(&token)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["type"], "Subscriptions");
    assert!(all["lastEventID"].as_str().is_some_and(|id| !id.is_empty()));
    let subs = all["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{all}");
    let topic = "https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D";
    let (_, on_topic) = list(&hub, &format!("/{topic}"), Some(&token)).await;
    assert_eq!(on_topic["subscriptions"].as_array().unwrap().len(), 1);
    let one_path = format!("/{topic}/{}", subscriber.replace(':', "%3A"));
    let (status, one) = list(&hub, &one_path, Some(&token)).await;
    assert_eq!(
        (status, one["subscriber"].as_str()),
        (200, Some(subscriber.as_str()))
    );

    // Closing is announced too, and the API forgets it.
    drop(reader);
    let closed: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(
        (closed["subscriber"].as_str(), closed["active"].as_bool()),
        (Some(subscriber.as_str()), Some(false))
    );
    let (status, _) = list(&hub, &one_path, Some(&token)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_are_private_and_the_api_needs_a_token() {
    let hub = HubProcess::start(&["--jwt-key", SECRET, "--mercure-subscriptions"]);
    // An anonymous `*` subscriber never sees who subscribes.
    let mut anonymous = EventStream::open(&hub.url("/.well-known/mercure?topic=*"), &[])
        .await
        .opened()
        .await;
    let _other = EventStream::open(&hub.url("/.well-known/mercure?topic=a"), &[])
        .await
        .opened()
        .await;
    hub.publish_ok("?topic=a", "public").await;
    assert_eq!(anonymous.next_event().await.data, "public");
    assert!(anonymous
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
    let (status, reason) = list(&hub, "", None).await;
    assert_eq!(status, 401, "{reason}");
    // A token that covers no subscription topic sees an empty list.
    let (status, none) = list(
        &hub,
        "",
        Some(&signed(json!({"mercure": {"subscribe": ["a"]}}))),
    )
    .await;
    assert_eq!(
        (status, none["subscriptions"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // Off by default.
    let plain = HubProcess::start(&["--jwt-key", SECRET]);
    let (status, reason) = list(&plain, "", Some(&watcher_token())).await;
    assert_eq!(status, 404);
    assert!(
        reason.to_string().contains("--mercure-subscriptions"),
        "{reason}"
    );
}
