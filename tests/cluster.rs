//! Cluster mode (`--redis`): several real hubs sharing one real `redis-server` on loopback.
//! Every event reaches every hub in one order with one id; a client resumes on another hub
//! with no gap and no duplicate; Redis going away gives 503 (never a false 200) while streams
//! stay open, and once it is back nothing acknowledged is lost or doubled.

mod common;
mod redis_server;

use std::time::{Duration, Instant};

use common::{client, EventStream, HubProcess, WAIT};
use redis_server::Redis;
use ssehub::parse::{Frame, ParsedEvent};

fn hub(redis: &Redis) -> HubProcess {
    HubProcess::start(&["--redis", &redis.url(), "--heartbeat", "1"])
}

/// POSTs a JSON body to a hub's publish listener; status and body.
async fn post(url: &str, body: String) -> (u16, String) {
    let resp = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn ids_of(answer: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(answer).expect("a JSON answer");
    match json["ids"].as_array() {
        Some(ids) => ids.iter().map(|id| id.as_str().unwrap().into()).collect(),
        // One event (not an array) is answered with its id alone.
        None => vec![json["id"].as_str().expect("an id").to_string()],
    }
}

fn pairs(events: &[ParsedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

#[tokio::test]
async fn every_hub_delivers_every_event_in_one_order() {
    let redis = Redis::start(None);
    let hubs: Vec<HubProcess> = (0..3).map(|_| hub(&redis)).collect();
    let mut streams = Vec::new();
    for h in &hubs {
        streams.push(h.subscribe("?topic=news&topic=sports").await.opened().await);
    }
    // Every hub publishes at once: 10 requests of 2 events each (news first: one shard, so
    // each publisher's order is kept too).
    let mut publishers = Vec::new();
    for (i, h) in hubs.iter().enumerate() {
        let url = h.publish_url("/publish");
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for j in 0..10 {
                let body = serde_json::json!([
                    {"topic": "news", "data": format!("h{i}-{j}-a")},
                    {"topic": ["sports", "news"], "data": format!("h{i}-{j}-b")},
                ]);
                let (status, answer) = post(&url, body.to_string()).await;
                assert_eq!(status, 200, "{answer}");
                ids.extend(ids_of(&answer));
            }
            ids
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.push(p.await.unwrap());
    }
    let mut seen = Vec::new();
    for s in &mut streams {
        seen.push(pairs(&s.events(60).await));
    }
    assert_eq!(seen[0], seen[1], "hubs 0 and 1 delivered differently");
    assert_eq!(seen[0], seen[2], "hubs 0 and 2 delivered differently");
    for (i, ids) in acked.iter().enumerate() {
        let mine: Vec<&(String, String)> = seen[0]
            .iter()
            .filter(|(_, data)| data.starts_with(&format!("h{i}-")))
            .collect();
        let expected: Vec<(String, String)> = (0..10)
            .flat_map(|j| [format!("h{i}-{j}-a"), format!("h{i}-{j}-b")])
            .zip(ids)
            .map(|(data, id)| (id.clone(), data))
            .collect();
        assert_eq!(
            mine.into_iter().cloned().collect::<Vec<_>>(),
            expected,
            "hub {i}'s events, in its publish order, with the ids it answered"
        );
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_hub_with_no_gap_and_no_duplicate() {
    let redis = Redis::start(None);
    let (a, b, c) = (hub(&redis), hub(&redis), hub(&redis));
    let mut on_b = b.subscribe("?topic=r").await.opened().await;
    let url = a.publish_url("/publish");
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..150 {
            let body = serde_json::json!({"topic": "r", "data": i.to_string()});
            let (status, answer) = post(&url, body.to_string()).await;
            assert_eq!(status, 200, "{answer}");
            ids.extend(ids_of(&answer));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ids
    });
    let first = on_b.events(40).await;
    drop(on_b);
    let last_id = first.last().unwrap().id.clone();
    // At once: hub C may not have read that event from Redis yet; it waits for it.
    let mut on_c = EventStream::open(
        &c.url("/events?topic=r"),
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    let rest = on_c.events(110).await;
    let ids = publisher.await.unwrap();
    let got: Vec<(String, String)> = pairs(&first).into_iter().chain(pairs(&rest)).collect();
    let expected: Vec<(String, String)> = ids
        .into_iter()
        .zip(0..)
        .map(|(id, i)| (id, i.to_string()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        on_c.try_next_event(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing more"
    );
}

#[tokio::test]
async fn redis_down_gives_503_and_back_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("ssehub-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Redis::start(Some(&dir));
    let (a, b) = (hub(&redis), hub(&redis));
    let mut on_b = b.subscribe("?topic=k").await.opened().await;
    let publish = |data: String| {
        let url = a.publish_url("/publish");
        async move {
            post(
                &url,
                serde_json::json!({"topic": "k", "data": data}).to_string(),
            )
            .await
        }
    };
    let mut acked = Vec::new();
    for i in 0..5 {
        let (status, answer) = publish(format!("before-{i}")).await;
        assert_eq!(status, 200, "{answer}");
        acked.extend(ids_of(&answer));
    }
    let before = on_b.events(5).await;
    assert_eq!(
        before.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        acked
    );

    redis.kill();
    let started = Instant::now();
    let (status, answer) = publish("refused".into()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.contains("Redis"), "a reason: {answer}");
    // The stream stays open: heartbeats (every second) keep coming.
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut heartbeats = 0;
    while Instant::now() < deadline {
        match on_b.next_frame(Duration::from_millis(200)).await {
            Ok(Frame::Comment(_)) => heartbeats += 1,
            Ok(other) => panic!("unexpected {other:?} while Redis is down"),
            Err(common::Stop::Timeout) => {}
            Err(common::Stop::Closed) => panic!("the stream closed while Redis is down"),
        }
    }
    assert!(heartbeats >= 1, "no heartbeat while Redis was down");
    // Operators see it: the reader's state in /metrics.
    assert_eq!(b.wait_metric("ssehub_redis_up", |v| v == 0).await, 0);

    let _redis = Redis::start_on(redis.port, Some(&dir));
    let mut after = Vec::new();
    let deadline = Instant::now() + WAIT;
    while after.len() < 5 {
        let (status, answer) = publish(format!("after-{}", after.len())).await;
        match status {
            200 => after.extend(ids_of(&answer)),
            _ => assert!(Instant::now() < deadline, "Redis is back, yet: {answer}"),
        }
    }
    let delivered = on_b.events(5).await;
    assert_eq!(
        delivered.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        after
    );
    assert_eq!(b.wait_metric("ssehub_redis_up", |v| v == 1).await, 1);
    assert_eq!(b.metric("ssehub_redis_late_events_total").await, 0);
    assert_eq!(
        delivered.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        (0..5).map(|i| format!("after-{i}")).collect::<Vec<_>>()
    );
    // Hub A caught up too: a resume there from the first event gets everything else, once.
    let url = a.url("/events?topic=k");
    let mut resumed = EventStream::open(&url, &[("last-event-id", acked[0].as_str())]).await;
    let all: Vec<String> = acked[1..].iter().chain(&after).cloned().collect();
    let got = resumed.events(all.len()).await;
    assert_eq!(got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), all);
    assert!(resumed
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_hub_that_disagrees_with_the_cluster_refuses_to_start() {
    let redis = Redis::start(None);
    let _first = hub(&redis);
    let refused = |args: &[&str]| {
        let mut cmd = common::bare_command();
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()]);
        let out = cmd.args(args).output().expect("run ssehub");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let shards = refused(&["--redis-shards", "8"]);
    assert!(
        shards.contains("--redis-shards 8") && shards.contains("16 shards"),
        "{shards}"
    );
    let dir = refused(&["--data-dir", "/nonexistent/ssehub"]);
    assert!(dir.contains("--redis and --data-dir"), "{dir}");
}

/// Publishes `data` on topic `h` through `url` until Redis takes it (it may be coming back).
async fn publish_until_taken(url: &str, data: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = serde_json::json!({"topic": "h", "data": data}).to_string();
        let (status, answer) = post(url, body).await;
        if status == 200 {
            return ids_of(&answer).remove(0);
        }
        assert!(Instant::now() < deadline, "Redis is back, yet: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_back_empty_ends_streams_and_a_resume_gets_a_gap() {
    let mut redis = Redis::start(None);
    let (a, b) = (hub(&redis), hub(&redis));
    let mut on_b = b.subscribe("?topic=h").await.opened().await;
    let url = a.publish_url("/publish");
    let old = publish_until_taken(&url, "old").await;
    assert_eq!(on_b.next_event().await.id, old);

    redis.kill();
    let _redis = Redis::start_on(redis.port, None);
    let new = [
        publish_until_taken(&url, "new-0").await,
        publish_until_taken(&url, "new-1").await,
    ];
    assert_ne!(
        new[0].split('-').next(),
        old.split('-').next(),
        "a new epoch"
    );
    // B's stream ends, with nothing of the new history on it.
    let deadline = Instant::now() + WAIT;
    loop {
        match on_b.next_frame(Duration::from_millis(200)).await {
            Ok(Frame::Comment(_)) | Err(common::Stop::Timeout) => {}
            Ok(other) => panic!("unexpected {other:?} on the old stream"),
            Err(common::Stop::Closed) => break,
        }
        assert!(Instant::now() < deadline, "B's stream did not end");
    }
    let url = b.url("/events?topic=h");
    let mut resumed = EventStream::open(&url, &[("last-event-id", old.as_str())]).await;
    let gap = resumed.next_event().await;
    assert_eq!(gap.event, "gap", "{gap:?}");
    let gap: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["reason"], "other-history", "{gap}");
    let got = resumed.events(2).await;
    assert_eq!(
        pairs(&got),
        vec![
            (new[0].clone(), "new-0".to_string()),
            (new[1].clone(), "new-1".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_publisher_id_is_claimed_for_every_hub() {
    let redis = Redis::start(None);
    // Memory holds one event: B cannot know of `x` but from Redis' claim.
    let (a, b) = (
        HubProcess::start(&["--redis", &redis.url(), "--history", "1"]),
        HubProcess::start(&["--redis", &redis.url(), "--history", "1"]),
    );
    let one = |id: &str| serde_json::json!({"topic": "c", "id": id, "data": id}).to_string();
    let (status, answer) = post(&a.publish_url("/publish"), one("x")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&a.publish_url("/publish"), one("filler")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&b.publish_url("/publish"), one("x")).await;
    assert_eq!(status, 409, "{answer}");
    let batch = serde_json::json!([
        {"topic": "c", "id": "y", "data": "y"},
        {"topic": "c", "id": "z", "data": "z"},
    ]);
    let (status, answer) = post(&b.publish_url("/publish"), batch.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids_of(&answer), ["y", "z"]);
    // A refused batch claims nothing: `w` goes through afterwards.
    let refused = serde_json::json!([
        {"topic": "c", "id": "w", "data": "w"},
        {"topic": "c", "id": "y", "data": "again"},
    ]);
    let (status, answer) = post(&a.publish_url("/publish"), refused.to_string()).await;
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = post(&a.publish_url("/publish"), one("w")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_killed_hubs_clients_resume_on_another_and_miss_nothing() {
    let redis = Redis::start(None);
    let (mut a, b) = (hub(&redis), hub(&redis));
    let mut on_a = a.subscribe("?topic=k").await.opened().await;
    // Published on B the whole time.
    let url = b.publish_url("/publish");
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..120 {
            let body = serde_json::json!({"topic": "k", "data": i.to_string()});
            let (status, answer) = post(&url, body.to_string()).await;
            assert_eq!(status, 200, "{answer}");
            ids.extend(ids_of(&answer));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ids
    });
    let first = on_a.events(30).await;
    a.signal_and_wait("KILL");
    assert!(
        on_a.try_next_event(Duration::from_secs(2)).await.is_err(),
        "A's stream ends with A"
    );
    let last_id = first.last().unwrap().id.clone();
    let mut on_b = EventStream::open(
        &b.url("/events?topic=k"),
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    let rest = on_b.events(90).await;
    let ids = publisher.await.unwrap();
    let got: Vec<(String, String)> = pairs(&first).into_iter().chain(pairs(&rest)).collect();
    let expected: Vec<(String, String)> = ids
        .into_iter()
        .zip(0..)
        .map(|(id, i)| (id, i.to_string()))
        .collect();
    assert_eq!(got, expected);
}

/// `--stdin` batches lines up to `--history-bytes`, counting each id at its longest; a cluster's
/// ids (`EPOCH-MS-N-SHARD`) are longer than a lone hub's, and a batch counted with the shorter
/// ones was refused whole, its lines lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_batches_near_the_history_bound_are_all_published() {
    use std::io::Write;
    let redis = Redis::start(None);
    let mut cmd = HubProcess::command(&[
        "--redis",
        &redis.url(),
        "--stdin",
        "--stdin-topic",
        "log",
        "--history-bytes",
        "6000",
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd.stdin(std::process::Stdio::piped());
    let mut hub = HubProcess::spawn(cmd);
    let lines: Vec<String> = (0..200)
        .map(|i| format!("line {i:03} {}", "x".repeat(40)))
        .collect();
    let mut stdin = hub.child.stdin.take().expect("stdin");
    // One write: the feed finds many lines waiting and publishes them in batches as large as
    // the bound allows (a live stream would be cut loose behind them; a replay reads them all).
    stdin
        .write_all((lines.join("\n") + "\n").as_bytes())
        .expect("write");
    drop(stdin);
    let published = hub
        .wait_metric("ssehub_published_total", |n| n >= 200)
        .await;
    assert_eq!(published, 200, "{}", hub.stderr_text());
    assert!(
        !hub.stderr_text().contains("not published"),
        "{}",
        hub.stderr_text()
    );
    // The whole history, from before its first event (read back from Redis).
    let stderr = hub.stderr_text();
    let epoch = stderr
        .split("(epoch ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the epoch line");
    let before_all = format!("{epoch}-0-0-0");
    let mut stream = EventStream::open(
        &hub.url("/events?topic=log"),
        &[("last-event-id", &before_all)],
    )
    .await;
    let got: Vec<String> = stream
        .events(200)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, lines);
}
