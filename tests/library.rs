//! The library face: a `Hub` built in code, published to from code, its router mounted in an axum
//! app (the hyper path for streams), and the `embed` example run as a real process.

mod common;

use std::process::{Command, Stdio};

use common::*;
use ssehub::http::{router, HttpConfig};
use ssehub::{Event, Hub};

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
