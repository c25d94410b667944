//! A hub in front of a device: `GET /event` (the path a device's page opens with
//! `new EventSource('event')`) against the real binary, and the example device itself
//! (`examples/device.rs`) built and run.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `GET /event` as a browser's `EventSource` sends it, on a fresh connection.
async fn event_stream(hub: &HubProcess, query: &str, headers: &[(&str, &str)]) -> EventStream {
    let mut all = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    EventStream::open(&hub.url(&format!("/event{query}")), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_the_default_topic_and_ignores_a_topic_parameter() {
    let hub = HubProcess::start(&[]);
    let mut stream = event_stream(&hub, "?topic=other&_=123", &[])
        .await
        .opened()
        .await;
    assert_eq!(
        stream.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    hub.publish_ok("?topic=other", "not on /event").await;
    hub.publish_ok("", "on default").await;
    hub.publish_ok("?topic=default&event=status", "{\"up\":true}")
        .await;
    let events = stream.events(2).await;
    assert_eq!(data(&events), ["on default", "{\"up\":true}"]);
    assert_eq!(events[1].event, "status");
}

/// History on open: `?tail=N` shows the newest N retained events first (like `tail -n`), then
/// live ones; a bad N is a 400 saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opens_with_the_newest_events_when_asked() {
    let hub = HubProcess::start(&[]);
    for i in 1..=5 {
        hub.publish_ok("", &format!("line {i}")).await;
    }
    let mut stream = event_stream(&hub, "?tail=2", &[]).await.opened().await;
    assert_eq!(data(&stream.events(2).await), ["line 4", "line 5"]);
    hub.publish_ok("", "line 6").await;
    assert_eq!(stream.next_event().await.data, "line 6");
    let mut on_events = hub.subscribe("?topic=default&tail=1").await.opened().await;
    assert_eq!(on_events.next_event().await.data, "line 6");
    let response = client()
        .get(hub.url("/events?tail=lots"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let reason = response.text().await.unwrap();
    assert!(reason.contains("tail must be a number"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_topic_comes_from_the_flag_the_environment_or_the_config_file() {
    let dir = std::env::temp_dir().join(format!("ssehub-event-topic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(&file, "event-topic = \"from-file\"\n").unwrap();
    let file = file.to_str().unwrap();
    let mut env = HubProcess::command(&["--listen", "127.0.0.1:0"]);
    env.env("SSEHUB_EVENT_TOPIC", "from-env");
    let hubs = [
        (HubProcess::start(&["--event-topic", "log"]), "log"),
        (HubProcess::spawn(env), "from-env"),
        (HubProcess::start(&["--config", file]), "from-file"),
    ];
    for (hub, topic) in &hubs {
        let mut stream = event_stream(hub, "", &[]).await.opened().await;
        hub.publish_ok("", "default is not it").await;
        hub.publish_ok(&format!("?topic={topic}"), topic).await;
        assert_eq!(stream.next_event().await.data, *topic);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bad = bare_command()
        .args(["serve", "--event-topic", ""])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--event-topic"));
    // Listed under "Streams", with its default and its environment twin.
    let help = bare_command().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let streams = help.split("\nStreams:").nth(1).unwrap();
    let streams = streams.split("\nPublishing:").next().unwrap();
    let entry = streams.split("--event-topic <TOPIC>").nth(1).unwrap();
    let entry = entry.split("\n      --").next().unwrap();
    let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        entry.contains("[env: SSEHUB_EVENT_TOPIC=] [default: default]"),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_resumes_after_last_event_id() {
    let hub = HubProcess::start(&["--event-topic", "log"]);
    let first = hub.publish_ok("?topic=log", "one").await;
    hub.publish_ok("?topic=log", "two").await;
    hub.publish_ok("?topic=elsewhere", "not mine").await;
    hub.publish_ok("?topic=log", "three").await;
    let id = first["id"].as_str().unwrap();
    let mut stream = event_stream(&hub, "", &[("last-event-id", id)]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(data(&stream.events(2).await), ["two", "three"]);
    hub.publish_ok("?topic=log", "four").await;
    assert_eq!(stream.next_event().await.data, "four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_refuses_event_with_503() {
    let hub = HubProcess::start(&["--max-clients", "1"]);
    let _held = event_stream(&hub, "", &[]).await.opened().await;
    let refused = event_stream(&hub, "", &[]).await;
    assert_eq!(refused.status, 503);
    assert!(refused.headers.contains_key("retry-after"));
}

/// A browser loads the page, then opens its `EventSource` on the same kept-alive connection: that
/// stream takes the same path as one on a fresh connection (whose head has no `date`, unlike
/// hyper's), as `/events` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_on_a_kept_alive_connection_takes_the_fast_path() {
    let hub = HubProcess::start(&[]);
    let mut socket = TcpStream::connect(&hub.addr).await.unwrap();
    plain_request_first(&mut socket, "/healthz").await;
    socket
        .write_all(b"GET /event HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("date:"), "{head}");
    hub.wait_metric("ssehub_clients", |n| n == 1).await;
    hub.publish_ok("", "kept alive").await;
    assert_eq!(data(&raw_events(&mut socket, 1).await), ["kept alive"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_route_serves_event_too() {
    // Streams served by hyper and the router, as in an app that mounts it.
    let mut cmd = HubProcess::command(&["--listen", "127.0.0.1:0", "--event-topic", "log"]);
    cmd.env("SSEHUB_BENCH_STREAMS_VIA_HYPER", "1");
    let hub = HubProcess::spawn(cmd);
    let mut stream = event_stream(&hub, "?topic=x", &[]).await.opened().await;
    hub.publish_ok("?topic=x", "not mine").await;
    hub.publish_ok("?topic=log", "mine").await;
    assert_eq!(stream.next_event().await.data, "mine");
}

/// The example device, killed when dropped.
struct Device {
    child: Child,
    addr: String,
}

impl Device {
    /// Builds `examples/device.rs` (cargo test builds examples, `--test device` alone does not)
    /// and starts it on a free port.
    fn start(args: &[&str]) -> Device {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", "device"]);
        // Into the profile directory this test runs from.
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let built = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example device");
        assert!(built.success());
        // This test runs from target/debug/deps; the example is in target/debug/examples.
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap();
        let mut child = Command::new(bin.join("examples").join("device"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the device");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("device: listening on http://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Device {
            addr: format!("127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_device_fills_its_slots_then_answers_503() {
    let device = Device::start(&["--slots", "2"]);
    let url = format!("http://{}/event", device.addr);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = EventStream::open(&url, &[("accept", "text/event-stream")]).await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    for stream in &mut streams {
        // A status at once, log lines every 200 ms and a status every second (within 10 s).
        let first = stream.next_event().await;
        assert_eq!(first.event, "status");
        let status: serde_json::Value = serde_json::from_str(&first.data).unwrap();
        assert_eq!(status["slots"], 2);
        let mut lines = 0;
        let mut statuses = 0;
        while lines < 3 || statuses < 1 {
            let event = stream.next_event().await;
            match event.event.as_str() {
                "message" => {
                    assert!(event.data.contains("log line"), "{event:?}");
                    assert!(!event.id.is_empty());
                    lines += 1;
                }
                "status" => {
                    serde_json::from_str::<serde_json::Value>(&event.data).unwrap();
                    statuses += 1;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
    let third = client().get(&url).send().await.unwrap();
    assert_eq!(third.status().as_u16(), 503);
    assert_eq!(third.text().await.unwrap(), "Server Busy\n");
    // A client that leaves frees its slot: the device notices on a failed send.
    drop(streams.pop());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let again = EventStream::open(&url, &[]).await;
        if again.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its page, at `/`.
    let page = client()
        .get(format!("http://{}/", device.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("new EventSource(\"event\")"));
}
