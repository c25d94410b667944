//! The library face: a `Hub` built in code, published to from code, its router mounted in an axum
//! app (the hyper path for streams), and the `embed` example run as a real process.

mod common;

use std::process::{Command, Stdio};

use common::*;
use futures_util::StreamExt;
use ssehub::http::{router, HttpConfig};
use ssehub::{End, Event, Hub, Received, ReceivedEvent, SubscribeRequest, Topic};

async fn mounted(hub: Hub) -> String {
    let config = HttpConfig {
        publish_token: Some("t0ken".into()),
        ..HttpConfig::default()
    };
    let app = axum::Router::new()
        .route("/own", axum::routing::get(|| async { "mine" }))
        .merge(router(hub, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_router_streams_what_code_publishes() {
    let hub = Hub::builder().max_clients(1).history(100).build();
    let base = mounted(hub.clone()).await;
    assert_eq!(
        client()
            .get(format!("{base}/own"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "mine"
    );
    let mut stream = EventStream::open(&format!("{base}/events?topic=code"), &[])
        .await
        .opened()
        .await;
    let receipt = hub
        .publish(vec![Event::new("from code")
            .with_topic("code")
            .unwrap()
            .with_name("status")
            .unwrap()])
        .await
        .unwrap();
    assert_eq!(receipt.subscribers, 1);
    let e = stream.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("status", "from code"));
    assert_eq!(e.id, receipt.ids[0]);
    // HTTP publishing works through the mounted router too, with the token (never anonymously
    // by default: the app may well sit behind a proxy).
    let publish = |auth: &'static str| {
        client()
            .post(format!("{base}/publish?topic=code"))
            .header("authorization", auth)
            .body("over http")
            .send()
    };
    assert_eq!(publish("Bearer nope").await.unwrap().status(), 401);
    assert_eq!(publish("Bearer t0ken").await.unwrap().status(), 200);
    assert_eq!(stream.next_event().await.data, "over http");
    // The client limit holds on this path as well.
    let second = EventStream::open(&format!("{base}/events"), &[]).await;
    assert_eq!(second.status, 503);
    assert_eq!(hub.stats().clients, 1);
    drop(stream);
    // The slot is freed once the connection is gone (hyper notices on the next write at the latest).
    let deadline = std::time::Instant::now() + WAIT;
    while hub.stats().clients > 0 && std::time::Instant::now() < deadline {
        hub.publish_one(Event::new("tick").with_topic("code").unwrap())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(hub.stats().clients, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embed_example_runs() {
    // target/debug/deps/library-* -> target/debug/examples/embed
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("embed");
    if !example.exists() {
        // A plain `cargo test` builds examples; a filtered run (`--test library`) does not.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--example", "embed"])
            .status()
            .unwrap();
        assert!(built.success());
    }
    let mut cmd = Command::new(example);
    cmd.arg("127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let app = HubProcess::spawn(cmd);
    let hello = client()
        .get(app.url("/hello"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(hello, "hello from the app\n");
    let mut stream = app.subscribe("?topic=device").await.opened().await;
    let e = stream.next_event().await;
    assert_eq!(e.event, "status");
    assert!(e.data.starts_with("{\"tick\":"), "{}", e.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_router_limits_per_address_when_it_knows_the_address() {
    use std::net::SocketAddr;
    let hub = Hub::builder().build();
    let config = HttpConfig {
        max_clients_per_ip: 1,
        ..HttpConfig::default()
    };
    let app = router(hub, config).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let first = EventStream::open(&format!("{base}/events"), &[]).await;
    assert_eq!(first.status, 200);
    let second = EventStream::open(&format!("{base}/events"), &[]).await;
    assert_eq!(second.status, 429);
}

/// Reads the next item of a subscription's stream, or fails after a while.
async fn next_item(events: &mut ssehub::Events) -> Option<Result<Received, End>> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("the stream yields within the wait")
}

fn event(item: Option<Result<Received, End>>) -> ReceivedEvent {
    match item {
        Some(Ok(Received::Event(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscription_reads_as_a_stream_of_events_with_gaps_and_an_end() {
    let hub = Hub::builder().history(3).build();
    let topics = |names: &[&str]| SubscribeRequest::topics(names.iter().copied()).unwrap();

    // Published from code, read back decoded: id, name, data (several lines), topics.
    let mut events = hub.subscribe(topics(&["a", "b"])).unwrap().into_stream();
    let receipt = hub
        .publish(vec![
            Event::new("line one\nline two\r\nline three")
                .with_topic("a")
                .unwrap()
                .with_name("report")
                .unwrap(),
            Event::new("{\"up\":true}")
                .with_topic("b")
                .unwrap()
                .with_topic("a")
                .unwrap()
                .with_topic("c")
                .unwrap(),
        ])
        .await
        .unwrap();
    let first = event(next_item(&mut events).await);
    assert_eq!(first.id, receipt.ids[0]);
    assert_eq!(first.name, "report");
    assert_eq!(first.data, "line one\nline two\nline three");
    assert_eq!(first.topics, vec![Topic::new("a").unwrap()]);
    let second = event(next_item(&mut events).await);
    assert_eq!(second.id, receipt.ids[1]);
    assert_eq!(second.name, "message");
    assert_eq!(second.data, "{\"up\":true}");
    // Once, with the subscription's topics it was published on (not `c`).
    assert_eq!(
        second.topics,
        vec![Topic::new("a").unwrap(), Topic::new("b").unwrap()]
    );

    // A resume from before what the history still holds: a gap, then what is left.
    let on_d = |i: i32| Event::new(i.to_string()).with_topic("d").unwrap();
    // Resuming after -1 is owed 0, which leaves the history (3 events) with -1.
    let evicted = hub.publish(vec![on_d(-1), on_d(0)]).await.unwrap().ids[0].clone();
    let later = hub.publish((1..=3).map(on_d).collect()).await.unwrap();
    let mut resumed = hub
        .subscribe(topics(&["d"]).resume_after(evicted.clone()))
        .unwrap()
        .into_stream();
    match next_item(&mut resumed).await {
        Some(Ok(Received::Gap(gap))) => {
            assert_eq!(gap.reason, "evicted");
            assert_eq!(gap.resumed_at.as_deref(), Some(later.ids[0].as_str()));
            assert!(gap.data.contains(&evicted), "{}", gap.data);
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    for (id, data) in later.ids.iter().zip(["1", "2", "3"]) {
        let e = event(next_item(&mut resumed).await);
        assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), data));
        assert_eq!(e.topics, vec![Topic::new("d").unwrap()]);
    }

    // A reader that falls behind further than the history: the stream ends with `Lagged`.
    hub.publish((4..=8).map(on_d).collect()).await.unwrap();
    assert_eq!(next_item(&mut resumed).await, Some(Err(End::Lagged)));
    assert_eq!(next_item(&mut resumed).await, None);

    // Closing the hub ends a stream that is owed nothing more with `Shutdown`.
    hub.close();
    assert_eq!(next_item(&mut events).await, Some(Err(End::Shutdown)));
    assert_eq!(next_item(&mut events).await, None);
}
