//! The upstream relay (`--upstream TOPIC=URL`) against real processes: the example device
//! (`examples/device.rs`) relayed by the real binary to many subscribers, restarted, full; its
//! settings. Reconnecting against scripted servers: `upstream_reconnect.rs`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ssehub::parse::{Frame, ParsedEvent, Parser};

/// The example device, killed when dropped; its stderr lines kept.
struct Device {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Device {
    /// Builds `examples/device.rs` and starts it on `port` (0: a free one).
    fn start(port: u16, slots: usize) -> Device {
        static BUILT: std::sync::Once = std::sync::Once::new();
        BUILT.call_once(Device::build);
        Device::run(port, slots)
    }

    /// `cargo build --example device` (cargo test builds examples, `--test upstream` alone
    /// does not).
    fn build() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", "device"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let built = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example device");
        assert!(built.success());
    }

    fn run(port: u16, slots: usize) -> Device {
        // This test runs from target/debug/deps; the example is in target/debug/examples.
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap();
        let mut child = Command::new(bin.join("examples").join("device"))
            .args(["--port", &port.to_string(), "--slots", &slots.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the device");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("device: listening on http://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Device { child, port, lines }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/event", self.port)
    }

    /// The most streams the device held open at once, from its log, and how many it opened.
    fn streams(&self) -> (usize, usize) {
        let lines = self.lines.lock().unwrap();
        let in_use = |l: &String| -> Option<usize> {
            l.strip_prefix("device: stream ")?
                .split('(')
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        };
        let max = lines.iter().filter_map(in_use).max().unwrap_or(0);
        let opened = lines
            .iter()
            .filter(|l| l.starts_with("device: stream opened"))
            .count();
        (max, opened)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay hub in front of `url`, with `--upstream dev=URL`.
fn relay_hub(url: &str, more: &[&str]) -> HubProcess {
    let upstream = format!("dev={url}");
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(more);
    HubProcess::start(&args)
}

/// An `ssehub_upstream_*` value for the one upstream (labels in the name).
async fn upstream_metric(hub: &HubProcess, name: &str) -> f64 {
    let text = hub.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{topic=\"dev\"")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

async fn wait_upstream_metric(
    hub: &HubProcess,
    name: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = upstream_metric(hub, name).await;
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The number in a device log line's data (`I (801) device: log line 5` is 5).
fn line_number(e: &ParsedEvent) -> Option<u64> {
    e.data
        .rsplit("log line ")
        .next()?
        .parse()
        .ok()
        .filter(|_| e.event == "message")
}

/// Reads a raw stream of the hub's until log line `until` (or WAIT passes): its events.
async fn read_until_line(client: &reqwest::Client, url: &str, until: u64) -> Vec<ParsedEvent> {
    let mut response = client.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !events.iter().any(|e| line_number(e) >= Some(until)) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => parser.feed(&bytes, &mut |f| {
                if let Frame::Event(e) = f {
                    events.push(e)
                }
            }),
            _ => break,
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_subscribers_get_every_device_event_over_one_device_connection() {
    let device = Device::start(0, 4);
    let hub = relay_hub(&device.url(), &[]);
    wait_upstream_metric(&hub, "ssehub_upstream_connected", WAIT, |v| v == 1.0).await;
    // One client, many connections: each subscriber reads from the first relayed event on
    // (`tail`), so all of them must show the same events.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = hub.url("/events?topic=dev&tail=1000");
    let first = read_until_line(&client, &url, 0).await;
    let start = first.iter().find_map(line_number).expect("a first line");
    let until = start + 12;
    let readers: Vec<_> = (0..500)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { read_until_line(&client, &url, until).await })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.push(reader.await.unwrap());
    }
    let reference: Vec<(String, String, String)> = all[0]
        .iter()
        .map(|e| (e.id.clone(), e.event.clone(), e.data.clone()))
        .collect();
    let numbers: Vec<u64> = all[0].iter().filter_map(line_number).collect();
    // Every line the device logged while relayed, in order, none missing.
    assert_eq!(
        numbers,
        (start..=until).collect::<Vec<_>>(),
        "{reference:?}"
    );
    let statuses: Vec<serde_json::Value> = all[0]
        .iter()
        .filter(|e| e.event == "status")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert!(statuses.len() >= 2, "{reference:?}");
    // The device's own count: one client, the hub, while 500 read from the hub.
    assert!(statuses.iter().all(|s| s["clients"] == 1), "{statuses:?}");
    for (i, events) in all.iter().enumerate() {
        let seen: Vec<(String, String, String)> = events
            .iter()
            .take(reference.len())
            .map(|e| (e.id.clone(), e.event.clone(), e.data.clone()))
            .collect();
        assert_eq!(seen, reference, "subscriber {i}");
    }
    assert_eq!(
        device.streams(),
        (1, 1),
        "{:?}",
        device.lines.lock().unwrap()
    );
    assert_eq!(
        upstream_metric(&hub, "ssehub_upstream_reconnects_total").await,
        0.0
    );
    assert!(upstream_metric(&hub, "ssehub_upstream_events_total").await >= 13.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restart_keeps_subscribers_connected_and_its_new_events_come_through() {
    let device = Device::start(0, 4);
    let port = device.port;
    let hub = relay_hub(&device.url(), &[]);
    let mut stream = hub.subscribe("?topic=dev&tail=1000").await.opened().await;
    let mut events = Vec::new();
    while !events.iter().any(|e| line_number(e) >= Some(3)) {
        events.push(stream.next_event().await);
    }
    drop(device);
    // The subscriber is told, and stays connected (heartbeats aside, nothing else comes).
    loop {
        let event = stream.next_event().await;
        let down = event.event == "upstream" && event.data.contains("\"connected\":false");
        events.push(event);
        if down {
            break;
        }
    }
    let device = Device::start(port, 4);
    // The restarted device counts from 1 again (its ids go back): its lines still come
    // through, as new events, after the relay says it is back.
    let mut back = false;
    let mut after = Vec::new();
    while after.len() < 2 {
        let event = stream.next_event().await;
        back |= event.event == "upstream" && event.data.contains("\"connected\":true");
        if back {
            after.extend(line_number(&event));
        }
        events.push(event);
    }
    assert_eq!(after[1], after[0] + 1, "{events:?}");
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let up = names.iter().rposition(|n| *n == "upstream").unwrap();
    assert!(events[up].data.contains("\"connected\":true"), "{events:?}");
    assert!(events[up].data.contains("\"reconnects\":"), "{events:?}");
    // The hub's ids, in its order, without a repeat (the device's go back to 1).
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e.id.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{events:?}");
    assert!(upstream_metric(&hub, "ssehub_upstream_reconnects_total").await >= 1.0);
    assert_eq!(device.streams().0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_device_lets_the_relay_in_when_a_slot_frees() {
    let device = Device::start(0, 1);
    let taken = EventStream::open(&device.url(), &[]).await;
    assert_eq!(taken.status, 200);
    let hub = relay_hub(&device.url(), &[]);
    // Refused (503), and trying again.
    let tries =
        wait_upstream_metric(&hub, "ssehub_upstream_reconnects_total", WAIT, |v| v >= 1.0).await;
    assert!(tries >= 1.0);
    assert_eq!(
        upstream_metric(&hub, "ssehub_upstream_connected").await,
        0.0
    );
    assert!(hub.stderr_text().contains("503"), "{}", hub.stderr_text());
    let mut stream = hub.subscribe("?topic=dev&tail=10").await.opened().await;
    let told = stream.next_event().await;
    assert_eq!(told.event, "upstream");
    assert!(
        told.data.contains("\"connected\":false") && told.data.contains("503"),
        "{told:?}"
    );
    drop(taken);
    let connected =
        wait_upstream_metric(&hub, "ssehub_upstream_connected", WAIT * 2, |v| v == 1.0).await;
    assert_eq!(connected, 1.0);
    loop {
        let event = stream.next_event().await;
        if line_number(&event).is_some() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_come_from_flags_the_environment_or_the_config_file() {
    let dir = std::env::temp_dir().join(format!("ssehub-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(
        &file,
        "upstream = [\"a=http://127.0.0.1:9/event\", \"b=http://127.0.0.1:9/x?y=1\"]\nupstream-idle-timeout = 5\n",
    )
    .unwrap();
    let from_file = HubProcess::start(&["--config", file.to_str().unwrap()]);
    let mut env = HubProcess::command(&["--listen", "127.0.0.1:0"]);
    env.env(
        "SSEHUB_UPSTREAM",
        "a=http://127.0.0.1:9/event,b=http://127.0.0.1:9/x?y=1",
    );
    let from_env = HubProcess::spawn(env);
    for hub in [&from_file, &from_env] {
        let text = client()
            .get(hub.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(
                "ssehub_upstream_connected{topic=\"a\",url=\"http://127.0.0.1:9/event\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ssehub_upstream_connected{topic=\"b\",url=\"http://127.0.0.1:9/x?y=1\"} 0"
            ),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bad = bare_command()
        .args(["serve", "--upstream", "http://device/event"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--upstream") && err.contains("TOPIC=URL"),
        "{err}"
    );
}
