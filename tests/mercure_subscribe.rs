//! Mercure's subscribe (`GET /.well-known/mercure`) and subscribers' tokens against the real
//! binary: the fast path takes it like `/events`, resumes, refusals that say why, discovery.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `GET /.well-known/mercure{query}` on a fresh connection; status and body of a refusal.
async fn refused(hub: &HubProcess, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = client().get(hub.url(&format!("/.well-known/mercure{query}")));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// The value of `name` in a raw response head.
fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mercure_subscription_on_a_kept_alive_connection_takes_the_fast_path() {
    let hub = HubProcess::start(&[]);
    let before = hub.publish_ok("?topic=a", "before").await;
    let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
    plain_request_first(&mut socket, "/healthz").await;
    socket
        .write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header_of(&head, "content-type"), Some("text/event-stream"));
    // The stream starts after the newest event: that is what a client resumes from.
    assert_eq!(header_of(&head, "last-event-id"), before["id"].as_str());
    // hyper would add `date`; the fast path writes its own head.
    assert_eq!(header_of(&head, "date"), None, "{head}");
    hub.publish_ok("?topic=b", "not mine").await;
    hub.publish_ok("?topic=a", "x").await;
    let events = raw_events(&mut socket, 1).await;
    assert_eq!(data(&events), ["x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_route_answers_the_same() {
    // Streams served by hyper and the router, as in an app that mounts it.
    let mut cmd = HubProcess::command(&["--listen", "127.0.0.1:0"]);
    cmd.env("SSEHUB_BENCH_STREAMS_VIA_HYPER", "1");
    let hub = HubProcess::spawn(cmd);
    let mut stream = EventStream::open(&hub.url("/.well-known/mercure?topic=a"), &[])
        .await
        .opened()
        .await;
    assert_eq!(
        stream
            .headers
            .get("last-event-id")
            .unwrap()
            .to_str()
            .unwrap(),
        "earliest"
    );
    assert!(stream.headers.get("date").is_some(), "served by hyper");
    hub.publish_ok("?topic=a", "x").await;
    assert_eq!(stream.next_event().await.data, "x");
    let (status, reason) = refused(&hub, "", &[]).await;
    assert_eq!(status, 400, "{reason}");
    assert!(reason.contains("at least one topic selector"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_query_or_the_header_which_wins() {
    let hub = HubProcess::start(&[]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let answer = hub.publish_ok("?topic=a", &format!("e{i}")).await;
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    let url = hub.url(&format!(
        "/.well-known/mercure?topic=a&lastEventID={}",
        ids[0]
    ));
    let mut stream = EventStream::open(&url, &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream
            .headers
            .get("last-event-id")
            .unwrap()
            .to_str()
            .unwrap(),
        ids[0]
    );
    assert_eq!(data(&stream.events(2).await), ["e1", "e2"]);
    // The header beats the query.
    let mut by_header = EventStream::open(&url, &[("last-event-id", &ids[1])]).await;
    assert_eq!(
        by_header
            .headers
            .get("last-event-id")
            .unwrap()
            .to_str()
            .unwrap(),
        ids[1]
    );
    assert_eq!(by_header.next_event().await.data, "e2");
    // Live after the replay, with no duplicate.
    hub.publish_ok("?topic=a", "e3").await;
    assert_eq!(stream.next_event().await.data, "e3");
    assert_eq!(by_header.next_event().await.data, "e3");
    // What a client sends back comes back as a valid header value.
    let (mut socket, status, head) = raw_get(
        &hub.addr,
        "/.well-known/mercure?topic=a&lastEventID=x%0D%0Aset-cookie:%20y",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header_of(&head, "set-cookie"), None, "{head}");
    assert_eq!(header_of(&head, "last-event-id"), Some("x??set-cookie: y"));
    socket.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_without_a_topic_is_refused() {
    let hub = HubProcess::start(&[]);
    for query in ["", "?lastEventID=earliest", "?topics=a"] {
        let (status, reason) = refused(&hub, query, &[]).await;
        assert_eq!(status, 400, "{query}: {reason}");
        assert!(reason.contains("at least one topic selector"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_tokens_are_checked_and_refusals_say_why() {
    let hub = HubProcess::start(&["--jwt-key", "s3cret", "--subscribers-need-token"]);
    let (status, reason) = refused(&hub, "?topic=a", &[]).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("--subscribers-need-token"), "{reason}");
    // /events checks the same.
    let (_s, status, head) = raw_get(&hub.addr, "/events?topic=a", &[]).await;
    assert_eq!(status, 401, "{head}");
    assert_eq!(
        header_of(&head, "www-authenticate"),
        Some("Bearer"),
        "{head}"
    );
    let wrong = hs256(json!({"mercure": {"subscribe": ["*"]}}), "wrong");
    let (status, reason) = refused(&hub, &format!("?topic=a&authorization={wrong}"), &[]).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("signature"), "{reason}");
    let bad_selector = hs256(json!({"mercure": {"subscribe": ["a", ""]}}), "s3cret");
    let bearer = format!("Bearer {bad_selector}");
    let (status, reason) = refused(&hub, "?topic=a", &[("authorization", &bearer)]).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("mercure.subscribe"), "{reason}");
    let expired = hs256(json!({"exp": 1000}), "s3cret");
    let cookie = format!("mercureAuthorization={expired}");
    let (status, reason) = refused(&hub, "?topic=a", &[("cookie", &cookie)]).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    // A good token, in a cookie as a browser sends it, that expires in 2 s: accepted.
    let token = hs256(
        json!({"exp": unix_now() + 2, "mercure": {"subscribe": ["a"]}}),
        "s3cret",
    );
    let cookie = format!("mercureAuthorization={token}");
    let url = hub.url("/.well-known/mercure?topic=a");
    let mut stream = EventStream::open(&url, &[("cookie", &cookie)])
        .await
        .opened()
        .await;
    hub.publish_ok("?topic=a", "x").await;
    assert_eq!(stream.next_event().await.data, "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_subscribers_are_welcome_by_default() {
    // A subscriber key, but no --subscribers-need-token: no token is fine, a bad one is not.
    let hub = HubProcess::start(&["--subscriber-jwt-key", "s3cret"]);
    let stream = EventStream::open(&hub.url("/.well-known/mercure?topic=a"), &[]).await;
    assert_eq!(stream.status, 200);
    let (status, reason) = refused(&hub, "?topic=a&authorization=garbage", &[]).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("not a valid JWT"), "{reason}");
    // Without a subscriber key, tokens are not looked at (Mercure's reference hub does the same).
    let hub = HubProcess::start(&["--publisher-jwt-key", "s3cret"]);
    let cookie = "mercureAuthorization=garbage";
    let stream = EventStream::open(
        &hub.url("/.well-known/mercure?topic=a"),
        &[("cookie", cookie)],
    )
    .await;
    assert_eq!(stream.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_page_points_at_the_hub() {
    let hub = HubProcess::start(&[]);
    let response = client().get(hub.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("link").unwrap().to_str().unwrap(),
        "</.well-known/mercure>; rel=\"mercure\""
    );
}

#[test]
fn subscribers_need_token_needs_a_key() {
    let output = HubProcess::command(&["--subscribers-need-token"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--subscriber-jwt-key"), "{stderr}");
}

/// The stream ends once the token's `exp` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let hub = HubProcess::start(&["--jwt-key", "s3cret"]);
    let token = hs256(json!({"exp": unix_now() + 2}), "s3cret");
    let url = hub.url(&format!(
        "/.well-known/mercure?topic=a&authorization={token}"
    ));
    let mut stream = EventStream::open(&url, &[]).await.opened().await;
    let ended = stream.try_next_event(Duration::from_secs(6)).await;
    assert_eq!(ended.unwrap_err(), Stop::Closed);
}

/// A private event reaches only a token whose `mercure.subscribe` covers its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_reach_only_tokens_that_cover_them() {
    let hub = HubProcess::start(&["--jwt-key", "s3cret"]);
    let url = hub.url("/.well-known/mercure?topic=a");
    let mut anonymous = EventStream::open(&url, &[]).await.opened().await;
    let token = hs256(json!({"mercure": {"subscribe": ["a"]}}), "s3cret");
    let cookie = format!("mercureAuthorization={token}");
    let mut allowed = EventStream::open(&url, &[("cookie", &cookie)])
        .await
        .opened()
        .await;
    let (status, text) = hub
        .publish_json(r#"{"topic":"a","data":"x","private":true}"#)
        .await;
    assert_eq!(status, 200, "{text}");
    hub.publish_ok("?topic=a", "public").await;
    assert_eq!(data(&allowed.events(2).await), ["x", "public"]);
    assert_eq!(anonymous.next_event().await.data, "public");
}

/// A replay never leaks a private event: resumed from before it, from memory and from the
/// history file alike, an anonymous stream skips it and a token holder gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_never_leak_private_events() {
    let dir = std::env::temp_dir().join(format!("ssehub-private-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.to_str().unwrap();
    // One event in memory: the replays below read the file.
    for args in [
        vec!["--jwt-key", "s3cret"],
        vec![
            "--jwt-key",
            "s3cret",
            "--data-dir",
            data_dir,
            "--memory-history",
            "1",
        ],
    ] {
        let hub = HubProcess::start(&args);
        let first = hub.publish_ok("?topic=a", "before").await;
        let (status, text) = hub
            .publish_json(r#"{"topic":"a","data":"secret","private":true,"id":"s-1"}"#)
            .await;
        assert_eq!(status, 200, "{text}");
        hub.publish_ok("?topic=a", "after").await;
        let from = first["id"].as_str().unwrap();
        let url = hub.url(&format!("/.well-known/mercure?topic=a&lastEventID={from}"));
        let mut anonymous = EventStream::open(&url, &[]).await.opened().await;
        assert_eq!(data(&anonymous.events(1).await), ["after"], "{args:?}");
        let token = hs256(json!({"mercure": {"subscribe": ["*"]}}), "s3cret");
        let cookie = format!("mercureAuthorization={token}");
        let mut allowed = EventStream::open(&url, &[("cookie", &cookie)])
            .await
            .opened()
            .await;
        let got = allowed.events(2).await;
        assert_eq!(data(&got), ["secret", "after"], "{args:?}");
        assert_eq!(got[0].id, "s-1");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// URI templates and `*` select topics; a template selects nothing it could not expand to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_star_select_topics() {
    let hub = HubProcess::start(&[]);
    let template = "/.well-known/mercure?topic=https://example.com/books/{id}";
    let mut books = EventStream::open(&hub.url(template), &[])
        .await
        .opened()
        .await;
    let mut all = EventStream::open(&hub.url("/.well-known/mercure?topic=*"), &[])
        .await
        .opened()
        .await;
    for topic in [
        "https://example.com/authors/1",
        "https://example.com/books/1",
    ] {
        hub.publish_ok(&format!("?topic={topic}"), topic).await;
    }
    assert_eq!(books.next_event().await.data, "https://example.com/books/1");
    assert_eq!(
        data(&all.events(2).await),
        [
            "https://example.com/authors/1",
            "https://example.com/books/1"
        ]
    );
}

/// `earliest`: every retained event, with no gap notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_replays_everything_retained() {
    let hub = HubProcess::start(&[]);
    hub.publish_ok("?topic=a", "e0").await;
    hub.publish_ok("?topic=a", "e1").await;
    let url = hub.url("/.well-known/mercure?topic=a&lastEventID=earliest");
    let mut stream = EventStream::open(&url, &[]).await;
    assert_eq!(
        stream
            .headers
            .get("last-event-id")
            .unwrap()
            .to_str()
            .unwrap(),
        "earliest"
    );
    let events = stream.events(2).await;
    assert_eq!(data(&events), ["e0", "e1"]);
    assert!(events.iter().all(|e| e.event == "message"));
}

/// `--max-templates`: distinct templates in use are bounded; one already in use is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_templates_in_use_are_bounded() {
    let hub = HubProcess::start(&["--max-templates", "1"]);
    let url = |t: &str| hub.url(&format!("/.well-known/mercure?topic={t}"));
    let _first = EventStream::open(&url("/books/{id}"), &[])
        .await
        .opened()
        .await;
    let _same = EventStream::open(&url("/books/{id}"), &[])
        .await
        .opened()
        .await;
    let (status, reason) = refused(&hub, "?topic=/authors/{id}", &[]).await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("--max-templates"), "{reason}");
}
