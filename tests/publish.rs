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
    let long_topic = format!("?topic={}", "x".repeat(1025));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_data_reaches_subscribers_as_written() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=j").await.opened().await;
    // Each element's data as sent (spread over lines, spaced out) and as it must arrive:
    // the publisher's key order, number spelling and string escapes, on one line.
    let cases = [
        (
            r#"{"z": 1, "a": {"y": [1, 2, {"b": null}], "x": true}, "id": "x"}"#,
            r#"{"z":1,"a":{"y":[1,2,{"b":null}],"x":true},"id":"x"}"#,
        ),
        (
            r#"{"k": 1, "id": "x", "n": 1.50}"#,
            r#"{"k":1,"id":"x","n":1.50}"#,
        ),
        (
            r#"[1.50, 1e3, -0, 12345678901234567890123, 2.5E-3, -0.0]"#,
            r#"[1.50,1e3,-0,12345678901234567890123,2.5E-3,-0.0]"#,
        ),
        (
            r#"[[1, [2, [3, []]]], [], {}]"#,
            r#"[[1,[2,[3,[]]]],[],{}]"#,
        ),
        (
            r#"{"say": "he said \"hi\"  twice ", "tab": "a\tb", "path": "C:\\dir\\", "u": "\u00e9 é"}"#,
            r#"{"say":"he said \"hi\"  twice ","tab":"a\tb","path":"C:\\dir\\","u":"\u00e9 é"}"#,
        ),
        (
            "{\n  \"pretty\" : [\r\n\t1 ,\n\t\"two  words\"\n ]\n}",
            r#"{"pretty":[1,"two  words"]}"#,
        ),
        ("null", "null"),
        ("1.50", "1.50"),
        // A string is its text, unescaped.
        (r#""a \"quoted\"  string""#, r#"a "quoted"  string"#),
    ];
    let items: Vec<String> = cases
        .iter()
        .map(|(sent, _)| format!(r#"{{"topic": "j", "data": {sent}}}"#))
        .collect();
    let (status, text) = hub.publish_json(&format!("[{}]", items.join(",\n"))).await;
    assert_eq!(status, 200, "{text}");
    let got = data(&stream.events(cases.len()).await);
    for (got, (sent, want)) in got.iter().zip(cases) {
        assert_eq!(got, want, "sent {sent}");
    }
    // One object rather than an array: the same.
    let (status, text) = hub
        .publish_json(r#"{"data": {"b": 1.0, "a": 10E2}, "topic": "j"}"#)
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(stream.next_event().await.data, r#"{"b":1.0,"a":10E2}"#);
}

/// A JSON event on `n` topics `t0`, `t1`, ...
fn on_topics(n: usize) -> String {
    let topics: Vec<String> = (0..n).map(|i| format!(r#""t{i}""#)).collect();
    format!(r#"{{"topic": [{}], "data": "x"}}"#, topics.join(","))
}

/// `?topic=t0&topic=t1...` with `n` topics.
fn query_topics(n: usize) -> String {
    let topics: Vec<String> = (0..n).map(|i| format!("topic=t{i}")).collect();
    format!("?{}", topics.join("&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_too_many_topics_is_refused_whole() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=t0").await.opened().await;
    let refusals = [
        hub.publish_raw(&query_topics(65), "x").await,
        hub.publish_json(&on_topics(65)).await,
        // All or nothing: the first element alone would be fine.
        hub.publish_json(&format!("[{}, {}]", on_topics(1), on_topics(65)))
            .await,
    ];
    for (status, text) in &refusals {
        assert_eq!(*status, 400, "{text}");
        assert!(
            text.contains("at most 64 topics") && text.contains("--max-topics-per-event"),
            "names the limit and the flag: {text}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    assert!(
        refusals[2].1.starts_with("element 1: "),
        "{}",
        refusals[2].1
    );
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
    assert_eq!(
        stream.try_next_event(Duration::from_millis(300)).await,
        Err(Stop::Timeout)
    );
    // At the limit, both ways.
    assert_eq!(hub.publish_raw(&query_topics(64), "raw").await.0, 200);
    let (status, text) = hub.publish_json(&on_topics(64)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(data(&stream.events(2).await), ["raw", "x"]);
    assert_eq!(hub.metric("ssehub_published_total").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_limit_follows_the_flag() {
    let hub = HubProcess::start(&["--max-topics-per-event", "100"]);
    assert_eq!(hub.publish_json(&on_topics(100)).await.0, 200);
    assert_eq!(hub.publish_raw(&query_topics(65), "x").await.0, 200);
    let (status, text) = hub.publish_json(&on_topics(101)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 100 topics"), "{text}");
    assert_eq!(hub.metric("ssehub_published_total").await, 2);
    // The environment twin, and a limit below the default.
    let mut cmd = HubProcess::command(&["--listen", "127.0.0.1:0"]);
    cmd.env("SSEHUB_MAX_TOPICS_PER_EVENT", "2");
    let hub = HubProcess::spawn(cmd);
    assert_eq!(hub.publish_raw(&query_topics(2), "x").await.0, 200);
    let (status, text) = hub.publish_raw(&query_topics(3), "x").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 2 topics"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_topics_in_one_event_is_refused() {
    let hub = HubProcess::start(&[]);
    // About 60,000 distinct topics in a body just under the 1 MiB default --max-body: refused
    // by counting, before any topic is checked or compared with another.
    let topics: Vec<String> = (0..60_000).map(|i| format!(r#""t-{i:05}""#)).collect();
    let body = format!(r#"{{"topic": [{}], "data": "x"}}"#, topics.join(","));
    assert!(body.len() <= 1 << 20, "{} bytes", body.len());
    let (status, text) = hub.publish_json(&body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("names 60000"), "{text}");
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
}
