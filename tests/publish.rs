//! `POST /publish` against the real binary: shapes, answers, atomic batches, every bad input.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_ids_and_subscriber_counts() {
    let hub = HubProcess::start(&[]);
    let none = hub.publish_ok("?topic=x", "nobody listens").await;
    assert_eq!(none["subscribers"], 0);
    let _a = hub.subscribe("?topic=x").await.opened().await;
    let _b = hub.subscribe("?topic=x").await.opened().await;
    let two = hub.publish_ok("?topic=x", "two listen").await;
    assert_eq!(two["subscribers"], 2);
    let (first, second) = (none["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    let seq = |id: &str| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    assert!(seq(second) > seq(first), "ids increase: {first} {second}");
    let (status, text) = hub
        .publish_json(r#"[{"topic": "x", "data": "1"}, {"topic": "y", "data": "2"}]"#)
        .await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["ids"].as_array().unwrap().len(), 2);
    assert_eq!(answer["subscribers"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_arrives_in_order_and_whole() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=a&topic=b").await.opened().await;
    let items: Vec<String> = (0..200)
        .map(|i| {
            let topic = if i % 3 == 0 { "a" } else { "b" };
            format!(r#"{{"topic": "{topic}", "event": "n", "data": "{i}"}}"#)
        })
        .collect();
    let (status, text) = hub.publish_json(&format!("[{}]", items.join(","))).await;
    assert_eq!(status, 200, "{text}");
    let got = data(&stream.events(200).await);
    let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_and_publishes_nothing() {
    let hub = HubProcess::start(&["--max-body", "1000"]);
    let mut stream = hub.subscribe("?topic=t&topic=default").await.opened().await;
    let long_topic = format!("?topic={}", "x".repeat(257));
    let raw_cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("?topic=t", vec![0x66, 0xff, 0x6f], 400),
        ("?topic=", b"x".to_vec(), 400),
        ("?topic=a%0Db", b"x".to_vec(), 400),
        (&long_topic, b"x".to_vec(), 400),
        ("?topic=t&event=a%0Ab", b"x".to_vec(), 400),
        ("?topic=t&event=a%0Db", b"x".to_vec(), 400),
        ("?topic=t&retry=soon", b"x".to_vec(), 400),
        ("?topic=t&retry=-5", b"x".to_vec(), 400),
        ("?topik=t", b"x".to_vec(), 400),
        ("?topic=%E0%A4", b"x".to_vec(), 400),
        ("?topic=t", vec![b'x'; 1001], 413),
    ];
    for (query, body, want) in raw_cases {
        let (status, text) = hub.publish_raw(query, body).await;
        assert_eq!(status, want, "{query}: {text}");
        assert!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "one line: {text:?}"
        );
    }
    // A body without a length that grows past the limit is refused as well.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 100])));
    let (status, _) = hub
        .publish_raw("?topic=t", reqwest::Body::wrap_stream(chunks))
        .await;
    assert_eq!(status, 413);
    let json_cases = [
        r#"{"topic": "t", "data": "x""#,
        r#"{"topic": "t"}"#,
        r#"{"topic": "t", "data": "x", "retry": "10"}"#,
        r#"{"topic": "t", "data": "x", "retry": 1.5}"#,
        r#"{"topic": "t", "data": "x", "event": "a\nb"}"#,
        r#"{"topic": "t", "data": "x", "event": "a\r"}"#,
        r#"{"topic": "", "data": "x"}"#,
        r#"{"topic": ["t", 5], "data": "x"}"#,
        r#"{"topic": "t", "data": "x", "colour": "red"}"#,
        r#""just a string""#,
        // All or nothing: the bad second element keeps the good first one from being published.
        r#"[{"topic": "t", "data": "good"}, {"topic": "t", "data": "bad", "event": "x\ny"}]"#,
        &format!("{}{}", "[".repeat(400), "]".repeat(400)),
    ];
    for body in json_cases {
        let (status, text) = hub.publish_json(body).await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!(status, 400, "{shown}: {text}");
        assert!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "one line: {text:?}"
        );
    }
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
    assert_eq!(
        stream.try_next_event(Duration::from_millis(300)).await,
        Err(Stop::Timeout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_token_is_required_when_set() {
    let hub = HubProcess::start(&["--publish-token", "s3cret"]);
    let url = hub.url("/publish?topic=t");
    let send = |auth: Option<&'static str>| {
        let mut req = client().post(url.clone()).body("x");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.unwrap();
            let challenge = resp.headers().get("www-authenticate").is_some();
            (resp.status().as_u16(), challenge)
        }
    };
    assert_eq!(send(None).await, (401, true));
    assert_eq!(send(Some("Bearer wrong")).await, (401, true));
    assert_eq!(send(Some("Bearer s3cret2")).await, (401, true));
    assert_eq!(send(Some("Basic s3cret")).await, (401, true));
    assert_eq!(send(Some("Bearer s3cret")).await.0, 200);
    assert_eq!(hub.metric("ssehub_published_total").await, 1);
}

/// POST /publish on `base` with an optional Authorization header: status and reason.
async fn publish_on(base: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = client().post(format!("{base}/publish?topic=t")).body("x");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_the_loopback_publish_listener_takes_anonymous_publishes() {
    let hub = HubProcess::start(&[]);
    let (status, reason) = publish_on(&hub.url(""), None).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("--publish-listen"), "{reason}");
    assert_eq!(reason.matches('\n').count(), 1, "one line: {reason:?}");
    assert_eq!(publish_on(&hub.url(""), Some("Bearer guess")).await.0, 401);
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
    // The publish listener: anonymous publishing, and everything else too.
    let publish = hub.publish_url("");
    assert_eq!(publish_on(&publish, None).await.0, 200);
    assert_eq!(hub.metric("ssehub_published_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_open_and_tokens() {
    let open = HubProcess::start(&["--publish-open", "--publish-listen", "off"]);
    assert_eq!(open.publish_addr, None);
    assert_eq!(publish_on(&open.url(""), None).await.0, 200);
    // With a token: it works on both listeners; anonymous still only on the publish listener.
    let hub = HubProcess::start(&["--publish-token", "s3"]);
    assert_eq!(publish_on(&hub.url(""), Some("Bearer s3")).await.0, 200);
    assert_eq!(
        publish_on(&hub.publish_url(""), Some("Bearer s3")).await.0,
        200
    );
    assert_eq!(
        publish_on(&hub.publish_url(""), Some("Bearer no")).await.0,
        401
    );
    assert_eq!(publish_on(&hub.publish_url(""), None).await.0, 200);
    let (status, reason) = publish_on(&hub.url(""), None).await;
    assert_eq!(status, 401);
    assert!(reason.contains("Bearer"), "{reason}");
}
