//! The command-line clients, as a user runs them: `ssehub listen` and `ssehub publish` against
//! a real hub, including a hub killed and restarted on the same port (`--data-dir`) under them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ssehub-clients-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A durable hub on a given address (`127.0.0.1:0` for a new port).
fn durable_hub(dir: &TempDir, listen: &str, extra: &[&str]) -> HubProcess {
    let mut args = vec![
        "--data-dir",
        dir.arg(),
        "--listen",
        listen,
        "--retry",
        "100",
    ];
    args.extend_from_slice(extra);
    HubProcess::spawn(HubProcess::command(&args))
}

/// A client process; its standard output collected line by line; killed when dropped.
struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The pipes' readers: joined once the process exited, so that all it wrote is in.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(args: &[&str], stdin: bool) -> Client {
        let mut cmd = bare_command();
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("start the client");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for (pipe, into) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                lines.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ] {
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    into.lock().unwrap().push(line);
                }
            }));
        }
        Client {
            child,
            lines,
            stderr,
            readers,
        }
    }

    /// Waits until `n` lines came (or WAIT passes); returns them all.
    fn wait_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        while self.lines.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines.lock().unwrap().clone()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for the exit (at most `within`); its code.
    fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_data_lines_or_json_and_exits_0_on_a_signal() {
    let hub = HubProcess::start(&[]);
    let plain = Client::start(&["listen", &hub.url(""), "--topic", "t"], false);
    let json = Client::start(&["listen", "--json", &hub.url("/events?topic=t")], false);
    hub.wait_metric("ssehub_clients", |n| n == 2).await;
    let first = hub.publish_ok("?topic=t", "a").await;
    hub.publish_ok("?topic=t&event=status", "b\nc").await;

    assert_eq!(plain.wait_lines(3, WAIT), ["a", "b", "c"]);
    let objects: Vec<serde_json::Value> = json
        .wait_lines(2, WAIT)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["id"], first["id"]);
    assert_eq!(
        (&objects[0]["event"], &objects[0]["data"]),
        (&"message".into(), &"a".into())
    );
    assert_eq!(
        (&objects[1]["event"], &objects[1]["data"]),
        (&"status".into(), &"b\nc".into())
    );

    for (mut client, signal) in [(plain, "INT"), (json, "TERM")] {
        client.signal(signal);
        assert_eq!(client.exit_code(WAIT), Some(0), "{}", client.stderr_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_resumes_across_a_hub_restart_printing_every_event_once() {
    let dir = TempDir::new("listen");
    let hub = durable_hub(&dir, "127.0.0.1:0", &[]);
    let addr = hub.addr.clone();
    let listen = Client::start(
        &["listen", &format!("http://{addr}"), "--topic", "t"],
        false,
    );
    hub.wait_metric("ssehub_clients", |n| n == 1).await;
    for i in 0..50 {
        hub.publish_ok("?topic=t", &i.to_string()).await;
    }
    assert!(listen.wait_lines(20, WAIT).len() >= 20);
    drop(hub); // killed, mid-stream
    let hub = durable_hub(&dir, &addr, &[]);
    // Published before the listener is back: it gets them by its Last-Event-ID.
    for i in 50..100 {
        hub.publish_ok("?topic=t", &i.to_string()).await;
    }
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let got = listen.wait_lines(100, Duration::from_secs(15));
    assert_eq!(got, expected, "{}", listen.stderr_text());
    // And it is live again afterwards.
    hub.publish_ok("?topic=t", "live").await;
    assert_eq!(listen.wait_lines(101, WAIT).last().unwrap(), "live");
    let mut listen = listen;
    listen.signal("INT");
    assert_eq!(listen.exit_code(WAIT), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_sends_one_event() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=news").await.opened().await;
    let base = hub.publish_url("");
    let mut publish = Client::start(
        &[
            "publish", &base, "hello", "--topic", "news", "--event", "note",
        ],
        false,
    );
    assert_eq!(
        publish.exit_code(WAIT),
        Some(0),
        "{}",
        publish.stderr_text()
    );
    let event = stream.next_event().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("note", "hello")
    );
    let answer: serde_json::Value = serde_json::from_str(&publish.wait_lines(1, WAIT)[0]).unwrap();
    assert_eq!(answer["id"].as_str(), Some(event.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stdin_sends_every_line_once_in_order() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=app").await.opened().await;
    let mut publish = Client::start(
        &["publish", "--stdin", &hub.publish_url(""), "--topic", "app"],
        true,
    );
    let mut stdin = publish.child.stdin.take().unwrap();
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    for (i, line) in lines.iter().enumerate() {
        writeln!(stdin, "{line}").unwrap();
        if i % 100 == 0 {
            // Some lines alone, some in batches.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(stdin);
    assert_eq!(
        publish.exit_code(WAIT),
        Some(0),
        "{}",
        publish.stderr_text()
    );
    assert_eq!(data(&stream.events(500).await), lines);
    assert!(stream
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stdin_retries_across_a_hub_restart_without_losing_or_repeating_a_line() {
    let dir = TempDir::new("publish");
    let token = ["--publish-token", "tok"];
    let hub = durable_hub(&dir, "127.0.0.1:0", &token);
    let addr = hub.addr.clone();
    let start = hub.publish_ok("?topic=other", "start").await;
    let mut publish = Client::start(
        &[
            "publish",
            "--stdin",
            &format!("http://{addr}"),
            "--topic",
            "app",
            "--token",
            "tok",
        ],
        true,
    );
    let mut stdin = publish.child.stdin.take().unwrap();
    for i in 0..250 {
        writeln!(stdin, "line {i}").unwrap();
    }
    stdin.flush().unwrap();
    hub.wait_metric("ssehub_published_total", |n| n >= 251)
        .await;
    drop(hub);
    // Lines go on arriving while the hub is away.
    for i in 250..500 {
        writeln!(stdin, "line {i}").unwrap();
    }
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let hub = durable_hub(&dir, &addr, &token);
    drop(stdin);
    assert_eq!(
        publish.exit_code(Duration::from_secs(20)),
        Some(0),
        "{}",
        publish.stderr_text()
    );
    assert!(
        publish.stderr_text().contains("again in"),
        "it had to retry"
    );

    // The history after `start` holds each line once, in order, and nothing else.
    let start_id = start["id"].as_str().unwrap();
    let mut replay = EventStream::open(
        &hub.url("/events?topic=app"),
        &[("last-event-id", start_id)],
    )
    .await;
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    assert_eq!(data(&replay.events(500).await), lines);
    assert!(replay
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_a_one_line_refusal_and_a_bad_url_names_itself() {
    let hub = HubProcess::start(&["--publish-token", "right"]);
    let mut publish = Client::start(&["publish", &hub.url(""), "x", "--token", "wrong"], false);
    assert_eq!(publish.exit_code(WAIT), Some(1));
    let err = publish.stderr_text();
    assert!(err.starts_with("ssehub: ") && err.contains("401"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let mut stdin_publish = Client::start(
        &["publish", "--stdin", &hub.url(""), "--token", "wrong"],
        true,
    );
    writeln!(stdin_publish.child.stdin.as_mut().unwrap(), "a line").unwrap();
    // Standard input stays open (`tail -F`): the refusal ends it anyway.
    assert_eq!(stdin_publish.exit_code(WAIT), Some(1));
    assert!(stdin_publish.stderr_text().contains("401"));

    let mut bad = Client::start(&["listen", "hub:8080"], false);
    assert_eq!(bad.exit_code(WAIT), Some(2));
    assert!(
        bad.stderr_text().contains("'hub:8080' for '<URL>'"),
        "{}",
        bad.stderr_text()
    );
}

/// A stream server of the test's own, to make what a hub does not: a `503`, a stall, a replay
/// of the last id. Answers each connection with the next script; returns the requests' heads.
async fn scripted_server(
    scripts: Vec<&'static str>,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        let mut open = Vec::new();
        for script in scripts {
            let (mut socket, _) = listener.accept().await.unwrap();
            heads.push(read_head(&mut socket).await.to_ascii_lowercase());
            socket.write_all(script.as_bytes()).await.unwrap();
            // Kept open (a stall) until the client goes away by itself.
            open.push(socket);
        }
        heads
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_waits_as_told_reconnects_a_stalled_stream_and_skips_a_replayed_last_event() {
    let (addr, server) = scripted_server(vec![
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 5\r\n\r\nfull\n",
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nretry: 100\nid: x\ndata: a\n\n",
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nid: x\ndata: a\n\nid: y\ndata: b\n\n",
    ])
    .await;
    let started = Instant::now();
    let listen = Client::start(
        &[
            "listen",
            &format!("http://{addr}/stream"),
            "--idle-timeout",
            "1",
        ],
        false,
    );
    assert_eq!(
        listen.wait_lines(2, WAIT),
        ["a", "b"],
        "{}",
        listen.stderr_text()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After and the idle timeout"
    );
    let heads = server.await.unwrap();
    assert!(
        heads[0].starts_with("get /stream http/1.1")
            && heads[0].contains("accept: text/event-stream")
    );
    assert!(!heads[1].contains("last-event-id"), "{}", heads[1]);
    assert!(heads[2].contains("last-event-id: x"), "{}", heads[2]);
    let err = listen.stderr_text();
    assert!(
        err.contains("503") && err.contains("nothing came for 1.0s"),
        "{err}"
    );
}

/// A proxy to `upstream` that loses the answer to the first request (the request goes through;
/// the connection closes before the answer comes back), then passes everything.
async fn answer_losing_proxy(upstream: String) -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut hub = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            if !first {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut hub).await;
                });
                continue;
            }
            first = false;
            let (mut from_client, to_client) = client.into_split();
            let (mut from_hub, mut to_hub) = hub.into_split();
            let forward =
                tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_hub).await });
            // The hub answers once it published: then both sides go, the answer unread.
            let mut byte = [0u8; 1];
            let _ = from_hub.read(&mut byte).await;
            forward.abort();
            drop((to_client, from_hub));
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_is_not_published_twice() {
    let hub = HubProcess::start(&[]);
    let mut stream = hub.subscribe("?topic=app").await.opened().await;
    let proxy = answer_losing_proxy(hub.publish_addr.clone().unwrap()).await;
    let mut publish = Client::start(
        &[
            "publish",
            "--stdin",
            &format!("http://{proxy}"),
            "--topic",
            "app",
        ],
        true,
    );
    let mut stdin = publish.child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    drop(stdin);
    assert_eq!(
        publish.exit_code(WAIT),
        Some(0),
        "{}",
        publish.stderr_text()
    );
    assert!(
        publish.stderr_text().contains("409 on a retry"),
        "{}",
        publish.stderr_text()
    );
    assert_eq!(data(&stream.events(3).await), ["one", "two", "three"]);
    assert!(stream
        .try_next_event(Duration::from_millis(300))
        .await
        .is_err());
}
