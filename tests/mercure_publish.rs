//! Mercure's publish form (`POST /.well-known/mercure`) and publisher ids and private flags on
//! `/publish`, against the real binary: what the HTTP layer answers, and what subscribers get.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const FORM: &str = "application/x-www-form-urlencoded";

/// A Mercure POST to `url` with this body and content type (and a bearer token if given):
/// status, content type and body text.
async fn post(
    url: &str,
    content_type: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut request = client()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// A form publish on the publish listener (anonymous).
async fn form(hub: &HubProcess, body: &str) -> (u16, String, String) {
    post(&hub.publish_url("/.well-known/mercure"), FORM, body, None).await
}

/// A stream read as bytes, to compare frames byte for byte.
struct RawStream {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl RawStream {
    /// Opens `GET /events{query}` and reads its prologue (which ends with `retry: 1000`, the
    /// hubs here being started with `--retry 1000`), so the subscription is registered.
    async fn open(hub: &HubProcess, query: &str) -> RawStream {
        let response = client()
            .get(hub.url(&format!("/events{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = RawStream {
            response,
            buf: Vec::new(),
        };
        stream.read_until(b"retry: 1000\n\n").await;
        stream.buf.clear();
        stream
    }

    /// Reads until the bytes read end with `end`; returns them all and starts afresh.
    async fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.buf.ends_with(end) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out; read {:?}", String::from_utf8_lossy(&self.buf))
                })
                .unwrap()
                .expect("the stream ended");
            self.buf.extend_from_slice(&chunk);
        }
        std::mem::take(&mut self.buf)
    }

    /// The next event frame (the stream is started with `--heartbeat 0`: nothing else comes).
    async fn frame(&mut self) -> String {
        String::from_utf8(self.read_until(b"\n\n").await).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_publish_reaches_subscribers_of_each_of_its_topics() {
    let hub = HubProcess::start(&["--retry", "1000", "--heartbeat", "0"]);
    let canonical = "https://example.com/books/1";
    let mut on_canonical =
        RawStream::open(&hub, "?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1").await;
    let mut on_alternate = RawStream::open(&hub, "?topic=books").await;
    let mut on_neither = hub.subscribe("?topic=other").await.opened().await;
    // CRLF, an empty line, CR, LF; an unknown field; a space as `+`.
    let body = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=books&type=update&retry=2500\
                &data=one%0D%0A%0D%0Athree%0Dfour%0Afive+six&csrf=ignored";
    let (status, content_type, id) = form(&hub, body).await;
    assert_eq!(status, 200, "{id}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(!id.is_empty() && !id.contains('\n'), "{id:?}");
    let frame = format!(
        "id: {id}\nevent: update\nretry: 2500\ndata: one\ndata: \ndata: three\ndata: four\ndata: five six\n\n"
    );
    assert_eq!(on_canonical.frame().await, frame, "on {canonical}");
    assert_eq!(on_alternate.frame().await, frame, "on the alternate");
    assert!(on_neither
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
    // A form with only the required field: an unnamed event with empty data.
    let (status, _, id) = form(&hub, "topic=books").await;
    assert_eq!(status, 200, "{id}");
    assert_eq!(on_alternate.frame().await, format!("id: {id}\ndata: \n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_main_listener_a_form_publish_needs_a_token() {
    let hub = HubProcess::start(&["--jwt-key", "s3cret", "--retry", "1000", "--heartbeat", "0"]);
    let url = hub.url("/.well-known/mercure");
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    let all = hs256(json!({"mercure": {"publish": ["*"]}}), "s3cret");
    let (status, content_type, id) = post(&url, FORM, "topic=a&data=hi", Some(&all)).await;
    assert_eq!(status, 200, "{id}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let event = stream.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "hi")
    );
    // The token in the query string, as Mercure clients may send it.
    let (status, _, reason) =
        post(&format!("{url}?authorization={all}"), FORM, "topic=a", None).await;
    assert_eq!(status, 200, "{reason}");
    // No token: 401 saying so, and the same rules as /publish for a claim.
    let (status, _, reason) = post(&url, FORM, "topic=a&data=x", None).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("needs a token"), "{reason}");
    let (status, _, reason) = post(&url, FORM, "topic=a", Some("not.a.token")).await;
    assert_eq!(status, 401, "{reason}");
    let a_only = hs256(json!({"mercure": {"publish": ["a"]}}), "s3cret");
    let (status, _, reason) = post(&url, FORM, "topic=a&topic=b&data=x", Some(&a_only)).await;
    assert_eq!(status, 403, "{reason}");
    assert!(reason.contains("\"b\""), "{reason}");
    assert_eq!(hub.metric("ssehub_published_total").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forms_are_refused_with_a_reason() {
    let hub = HubProcess::start(&["--max-body", "200"]);
    for (body, why) in [
        ("data=x", "needs a topic"),
        ("topic=a&retry=soon", "retry must be a whole number"),
        ("topic=a&retry=-1", "retry must be a whole number"),
        ("topic=a&id=%23frag", "must not start with '#'"),
        ("topic=&data=x", "bad topic"),
        ("topic=a%0Ab", "control characters"),
        ("topic=a&type=a%0Ab", "bad event name"),
        ("topic=a&data=%FF", "bad form"),
        ("topic=a&data=1&data=2", "data twice"),
    ] {
        let (status, _, reason) = form(&hub, body).await;
        assert_eq!(status, 400, "{body}: {reason}");
        assert!(reason.contains(why), "{body}: {reason}");
        assert_eq!(reason.trim_end().lines().count(), 1, "{reason}");
    }
    let url = hub.publish_url("/.well-known/mercure");
    let (status, _, reason) = post(&url, "application/json", r#"{"topic": "a"}"#, None).await;
    assert_eq!(status, 415, "{reason}");
    assert!(reason.contains("x-www-form-urlencoded"), "{reason}");
    let long = format!("topic=a&data={}", "x".repeat(300));
    let (status, _, reason) = form(&hub, &long).await;
    assert_eq!(status, 413, "{reason}");
    assert!(reason.contains("--max-body"), "{reason}");
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_publishes_take_ids_and_private_flags() {
    let hub = HubProcess::start(&[]);
    let (status, text) = hub
        .publish_json(r#"{"topic": "a", "data": 1, "id": "order-1", "private": true}"#)
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = hub.publish_raw("?topic=a&id=order-2&private=1", "x").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = hub.publish_raw("?topic=a&private=false", "x").await;
    assert_eq!(status, 200, "{text}");
    for (body, why) in [
        (
            r#"{"data": 1, "private": 1}"#,
            "private must be true or false",
        ),
        (
            r#"{"data": 1, "private": "yes"}"#,
            "private must be true or false",
        ),
        (r##"{"data": 1, "id": "#x"}"##, "must not start with '#'"),
        (r#"{"data": 1, "id": 7}"#, "id must be a string"),
        (r#"{"data": 1, "id": "3f2a9c01b2c4-17"}"#, "the hub's own"),
    ] {
        let (status, reason) = hub.publish_json(body).await;
        assert_eq!(status, 400, "{body}: {reason}");
        assert!(reason.contains(why), "{body}: {reason}");
    }
    for (query, why) in [
        ("?private=maybe", "private must be"),
        ("?id=", "must not be empty"),
        ("?id=%23x", "must not start with '#'"),
    ] {
        let (status, reason) = hub.publish_raw(query, "x").await;
        assert_eq!(status, 400, "{query}: {reason}");
        assert!(reason.contains(why), "{query}: {reason}");
    }
    // A batch repeating an id is refused whole, before anything is published.
    let batch = r#"[{"data": 1, "id": "b-1"}, {"data": 2, "id": "b-2"}, {"data": 3, "id": "b-1"}]"#;
    let (status, reason) = hub.publish_json(batch).await;
    assert_eq!(status, 409, "{reason}");
    assert!(reason.contains("elements 0 and 2"), "{reason}");
    // So is a batch with one bad element.
    let batch = r#"[{"data": 1, "id": "c-1"}, {"data": 2, "private": "no"}]"#;
    assert_eq!(hub.publish_json(batch).await.0, 400);
    assert_eq!(hub.metric("ssehub_published_total").await, 3);
}

/// Publisher ids: subscribers see them, answers carry them, and a repeated one is `409` from
/// the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_ids_reach_subscribers_and_repeats_conflict() {
    let hub = HubProcess::start(&["--retry", "1000", "--heartbeat", "0"]);
    let mut stream = RawStream::open(&hub, "?topic=a").await;
    let (status, _, id) = form(&hub, "topic=a&id=urn%3Auuid%3A1&data=x").await;
    assert_eq!((status, id.as_str()), (200, "urn:uuid:1"));
    assert_eq!(stream.frame().await, "id: urn:uuid:1\ndata: x\n\n");
    let (status, text) = hub
        .publish_json(r#"{"topic": "a", "data": "y", "id": "order-1"}"#)
        .await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["id"], "order-1");
    assert_eq!(stream.frame().await, "id: order-1\ndata: y\n\n");
    let (status, text) = hub.publish_raw("?topic=a&id=raw-1", "z").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(stream.frame().await, "id: raw-1\ndata: z\n\n");
    // Ids still in the history are refused, whichever way they come.
    let (status, _, reason) = form(&hub, "topic=a&id=urn%3Auuid%3A1").await;
    assert_eq!(status, 409, "{reason}");
    assert_eq!(
        hub.publish_json(r#"{"data": 1, "id": "order-1"}"#).await.0,
        409
    );
    assert_eq!(hub.publish_raw("?id=raw-1", "z").await.0, 409);
    // Resuming from a publisher's id replays what came after it.
    let mut resumed = EventStream::open(
        &hub.url("/events?topic=a"),
        &[("last-event-id", "urn:uuid:1")],
    )
    .await;
    let events = resumed.events(2).await;
    assert_eq!(
        (events[0].id.as_str(), events[1].id.as_str()),
        ("order-1", "raw-1")
    );
}

/// An anonymous subscriber never gets a private event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_never_reach_anonymous_subscribers() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    assert_eq!(form(&hub, "topic=a&private=&data=secret-form").await.0, 200);
    let json = r#"{"topic": "a", "data": "secret-json", "private": true}"#;
    assert_eq!(hub.publish_json(json).await.0, 200);
    assert_eq!(
        hub.publish_raw("?topic=a&private=on", "secret-raw").await.0,
        200
    );
    assert_eq!(form(&hub, "topic=a&data=public").await.0, 200);
    assert_eq!(stream.next_event().await.data, "public");
}
