//! TLS and HTTP/2: streams over TLS with HTTP/1.1 and HTTP/2 (reqwest, hyper's h2 client and
//! curl), resume, the certificate reloaded on SIGHUP under an open stream, `--max-clients` over
//! one HTTP/2 connection, and h2c with `--http2-cleartext`. Certificates are made here (rcgen).

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{bare_command, HubProcess, WAIT};
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyDataStream, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::parse::{Frame, ParsedEvent, Parser};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files in `dir`.
struct Cert {
    der: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn make_cert(dir: &Path, name: &str) -> Cert {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, made.cert.pem()).unwrap();
    std::fs::write(&key_path, made.key_pair.serialize_pem()).unwrap();
    Cert {
        der: made.cert.der().clone(),
        cert_path,
        key_path,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssehub-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts a hub with `args` and waits for its "listening on <scheme>://" line.
fn start(args: &[&str]) -> HubProcess {
    let mut cmd = bare_command();
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start ssehub");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = stderr.clone();
    let pipe = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let mut publish_addr = None;
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("publish without a token on http://").nth(1) {
                publish_addr = rest.split('/').next().map(str::to_string);
            }
            let listening = line.split("listening on ").nth(1).map(|rest| {
                let port = rest.rsplit(':').next().unwrap_or("").to_string();
                format!("127.0.0.1:{port}")
            });
            lines.lock().unwrap().push(line);
            if let Some(addr) = listening {
                let _ = tx.send((addr, publish_addr.clone()));
            }
        }
    });
    let (addr, publish_addr) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("ssehub did not start: {:?}", stderr.lock().unwrap())
    });
    HubProcess {
        child,
        addr,
        publish_addr,
        stderr,
    }
}

fn tls_args(cert: &Cert) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.cert_path.display().to_string(),
        "--tls-key".into(),
        cert.key_path.display().to_string(),
    ]
}

fn port(hub: &HubProcess) -> &str {
    hub.addr.rsplit(':').next().unwrap()
}

/// A reqwest client trusting `cert`, HTTP/1.1 only or HTTP/2 by ALPN.
fn reqwest_client(cert: &Cert, h2: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_der(&cert.der).unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .pool_max_idle_per_host(0);
    let builder = if h2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

type Chunks = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A stream's body read through our parser.
struct Sse {
    chunks: Chunks,
    parser: Parser,
    frames: VecDeque<Frame>,
}

impl Sse {
    fn new(chunks: Chunks) -> Sse {
        Sse {
            chunks,
            parser: Parser::new(),
            frames: VecDeque::new(),
        }
    }

    fn from_reqwest(response: reqwest::Response) -> Sse {
        Sse::new(Box::pin(
            response
                .bytes_stream()
                .filter_map(|r| std::future::ready(r.ok())),
        ))
    }

    fn from_hyper(response: hyper::Response<hyper::body::Incoming>) -> Sse {
        let body = BodyDataStream::new(response.into_body());
        Sse::new(Box::pin(body.filter_map(|r| std::future::ready(r.ok()))))
    }

    /// The next event within `within`; `None` on timeout or end.
    async fn try_event(&mut self, within: Duration) -> Option<ParsedEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(frame) = self.frames.pop_front() {
                if let Frame::Event(event) = frame {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.chunks.next())
                .await
                .ok()??;
            let frames = &mut self.frames;
            self.parser.feed(&chunk, &mut |f| frames.push_back(f));
        }
    }

    async fn event(&mut self) -> ParsedEvent {
        self.try_event(WAIT).await.expect("an event")
    }
}

/// One TLS connection to the hub trusting `roots`, offering only `h2`; returns the HTTP/2 sender
/// and the certificate the hub served.
async fn h2_over_tls(
    addr: &str,
    roots: &[&Cert],
) -> (SendRequest<Empty<Bytes>>, CertificateDer<'static>) {
    let tls = tls_connect(addr, roots, vec![b"h2".to_vec()])
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]), "ALPN picked h2");
    let served = session.peer_certificates().unwrap()[0].clone();
    (h2_handshake(TokioIo::new(tls)).await, served)
}

async fn tls_connect(
    addr: &str,
    roots: &[&Cert],
    alpn: Vec<Vec<u8>>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn h2_handshake<I>(io: TokioIo<I>) -> SendRequest<Empty<Bytes>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET path` on an HTTP/2 connection.
async fn h2_get(
    sender: &mut SendRequest<Empty<Bytes>>,
    authority: &str,
    scheme: &str,
    path: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let request = hyper::Request::get(format!("{scheme}://{authority}{path}"))
        .body(Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("answer in time")
        .unwrap()
}

#[tokio::test]
async fn streams_over_tls_with_http1_and_http2_and_resume() {
    let dir = temp_dir("versions");
    let cert = make_cert(&dir, "a");
    let args = tls_args(&cert);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(hub.stderr_text().contains("listening on https://"));
    let url = format!("https://localhost:{}/events?topic=t", port(&hub));
    let mut last_id = String::new();
    for (h2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let client = reqwest_client(&cert, h2);
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version);
        let mut stream = Sse::from_reqwest(response);
        // The opening has gone out once the answer is here; give the subscription a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let published = hub
            .publish_ok("?topic=t", &format!("over {version:?}"))
            .await;
        let event = stream.event().await;
        assert_eq!(event.data, format!("over {version:?}"));
        assert_eq!(Some(event.id.as_str()), published["id"].as_str());
        last_id = event.id;
    }
    // Resume over HTTP/2 from the first event: the second is replayed.
    hub.publish_ok("?topic=t", "after").await;
    let marker = hub.publish_ok("?topic=t", "x").await;
    let client = reqwest_client(&cert, true);
    let response = client
        .get(&url)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut stream = Sse::from_reqwest(response);
    assert_eq!(stream.event().await.data, "after");
    assert_eq!(
        Some(stream.event().await.id.as_str()),
        marker["id"].as_str()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn curl_gets_a_stream_over_http2() {
    let dir = temp_dir("curl");
    let cert = make_cert(&dir, "a");
    let args = tls_args(&cert);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let url = format!("https://localhost:{}/events?topic=c", port(&hub));
    let mut curl = Command::new("curl")
        .args(["-sSN", "--http2", "--max-time", "10"])
        .arg("--cacert")
        .arg(&cert.cert_path)
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let out = curl.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The opening comment says the stream is open.
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), ": ssehub");
    hub.publish_ok("?topic=c", "to curl").await;
    let data = (0..5)
        .filter_map(|_| rx.recv_timeout(WAIT).ok())
        .find(|l| l.starts_with("data:"));
    assert_eq!(data.as_deref(), Some("data: to curl"));
    let _ = curl.kill();
    let _ = curl.wait();
    // The same over HTTP/2, checked by curl's own report on a plain request.
    let version = Command::new("curl")
        .args(["-s", "--http2", "-o", "/dev/null", "-w", "%{http_version}"])
        .arg("--cacert")
        .arg(&cert.cert_path)
        .arg(format!("https://localhost:{}/healthz", port(&hub)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout), "2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_and_open_streams_keep_going() {
    let dir = temp_dir("reload");
    let first = make_cert(&dir, "first");
    let second = make_cert(&dir, "second");
    // The hub reads the files at these paths; a renewal overwrites them.
    let cert_path = dir.join("live.crt");
    let key_path = dir.join("live.key");
    std::fs::copy(&first.cert_path, &cert_path).unwrap();
    std::fs::copy(&first.key_path, &key_path).unwrap();
    let hub = start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let both = [&first, &second];
    let (mut old, served) = h2_over_tls(&hub.addr, &both).await;
    assert_eq!(served, first.der);
    let response = h2_get(&mut old, "localhost", "https", "/events?topic=r").await;
    assert_eq!(response.status(), 200);
    let mut stream = Sse::from_hyper(response);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.publish_ok("?topic=r", "before").await;
    assert_eq!(stream.event().await.data, "before");

    std::fs::copy(&second.cert_path, &cert_path).unwrap();
    std::fs::copy(&second.key_path, &key_path).unwrap();
    let pid = hub.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, served) = h2_over_tls(&hub.addr, &both).await;
        if served == second.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client trusting only the old certificate is now refused.
    assert!(tls_connect(&hub.addr, &[&first], vec![]).await.is_err());
    hub.publish_ok("?topic=r", "after").await;
    assert_eq!(stream.event().await.data, "after", "the old stream goes on");

    // A broken file on reload: the certificate served stays, and the log says why.
    std::fs::write(&cert_path, "garbage\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !hub.stderr_text().contains("reload failed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            hub.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hub.stderr_text().contains("no CERTIFICATE block"));
    let (_, served) = h2_over_tls(&hub.addr, &both).await;
    assert_eq!(served, second.der);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn each_http2_stream_takes_a_slot() {
    let dir = temp_dir("slots");
    let cert = make_cert(&dir, "a");
    let mut args = tls_args(&cert);
    args.extend(["--max-clients".into(), "3".into()]);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // One connection, four streams: the fourth finds the hub full.
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
        assert_eq!(response.status(), 200);
        open.push(Sse::from_hyper(response));
    }
    let full = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
    assert_eq!(full.status(), 503);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 3);
    // Closing one stream (not the connection) frees its slot.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = h2_get(&mut h2, "localhost", "https", "/events?topic=s").await;
        if response.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn hub_metric(hub: &HubProcess, cert: &Cert, name: &str) -> u64 {
    let text = reqwest_client(cert, true)
        .get(format!("https://localhost:{}/metrics", port(hub)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn h2c_with_http2_cleartext_and_http1_on_the_same_port() {
    let hub = start(&["--http2-cleartext"]);
    let tcp = TcpStream::connect(&hub.addr).await.unwrap();
    let mut h2 = h2_handshake(TokioIo::new(tcp)).await;
    let response = h2_get(&mut h2, &hub.addr, "http", "/events?topic=h").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let mut stream = Sse::from_hyper(response);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.publish_ok("?topic=h", "cleartext").await;
    assert_eq!(stream.event().await.data, "cleartext");
    // An HTTP/1.1 client on the same port is served too.
    let mut plain = common::EventStream::open(&hub.url("/events?topic=h"), &[])
        .await
        .opened()
        .await;
    hub.publish_ok("?topic=h", "both").await;
    assert_eq!(plain.next_event().await.data, "both");
    assert_eq!(stream.event().await.data, "both");
}

#[test]
fn half_a_tls_pair_or_a_bad_file_is_refused_by_name() {
    let dir = temp_dir("flags");
    let cert = make_cert(&dir, "a");
    let run = |args: &[&str]| {
        let out = bare_command()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert_path = cert.cert_path.to_str().unwrap();
    let key_path = cert.key_path.to_str().unwrap();
    assert!(run(&["--tls-cert", cert_path]).contains("--tls-cert needs --tls-key"));
    assert!(run(&["--tls-key", key_path]).contains("--tls-key needs --tls-cert"));
    // The key given as the certificate, and the certificate as the key.
    let swapped = run(&["--tls-cert", key_path, "--tls-key", cert_path]);
    assert!(
        swapped.contains("--tls-cert") && swapped.contains(key_path),
        "{swapped}"
    );
    let other = make_cert(&dir, "b");
    let mismatched = run(&[
        "--tls-cert",
        cert_path,
        "--tls-key",
        other.key_path.to_str().unwrap(),
    ]);
    assert!(mismatched.contains("--tls-key"), "{mismatched}");
    let both = run(&[
        "--tls-cert",
        cert_path,
        "--tls-key",
        key_path,
        "--http2-cleartext",
    ]);
    assert!(both.contains("--http2-cleartext"), "{both}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deaf_http2_stream_is_cut_off_and_its_neighbour_gets_everything() {
    let dir = temp_dir("deaf");
    let cert = make_cert(&dir, "a");
    let hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // Two streams on one connection: one read, one never read (its window and the hub's buffer
    // for it fill up; only the backlog check can end it).
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let deaf = h2_get(&mut h2, "localhost", "https", "/events?topic=big").await;
    let mut reader =
        Sse::from_hyper(h2_get(&mut h2, "localhost", "https", "/events?topic=big").await);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 2);
    // 24 MiB in 64 KiB events: far more than flow-control windows and buffers hold.
    let chunk = "z".repeat(64 * 1024);
    const EVENTS: usize = 384;
    let publishing = {
        let url = hub.publish_url("/publish?topic=big");
        tokio::spawn(async move {
            let c = common::client();
            for _ in 0..EVENTS {
                let resp = c
                    .post(url.clone())
                    .body(chunk.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        })
    };
    for i in 0..EVENTS {
        let event = reader.try_event(WAIT).await;
        let event = event.unwrap_or_else(|| panic!("event {i}; hub said: {}", hub.stderr_text()));
        assert_eq!(event.data.len(), 64 * 1024, "event {i}");
    }
    publishing.await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub_metric(&hub, &cert, "ssehub_slow_disconnects_total").await < 1
        || hub_metric(&hub, &cert, "ssehub_clients").await != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deaf stream was cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(deaf);
    let _ = std::fs::remove_dir_all(&dir);
}

const INSIDE: &str = "SSEHUB_TEST_TLS_INSIDE_NETNS";

/// As `tests/vanish.rs`, over TLS: HTTP/1.1 and HTTP/2 clients whose packets stop (no FIN, no
/// RST) lose their streams within seconds. Runs itself again in a network namespace of its own,
/// so that dropping packets (iptables on that namespace's loopback) touches nothing else.
#[test]
fn vanished_tls_clients_lose_their_streams_soon() {
    if std::env::var_os(INSIDE).is_some() {
        return tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(vanish_inside());
    }
    let ns = format!("ssehub-tls-vanish-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &ns]);
    let outcome = std::panic::catch_unwind(|| {
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "vanished_tls_clients_lose_their_streams_soon",
                "--nocapture",
            ])
            .env(INSIDE, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "inside the namespace:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    ip(&["netns", "del", &ns]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn vanish_inside() {
    let dir = temp_dir("vanish");
    let cert = make_cert(&dir, "a");
    let mut args = tls_args(&cert);
    args.extend(["--heartbeat".into(), "1".into()]);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // One HTTP/2 connection with two streams, and one HTTP/1.1 connection with one.
    let mut gone_ports = Vec::new();
    let tls = tls_connect(&hub.addr, &[&cert], vec![b"h2".to_vec()])
        .await
        .unwrap();
    gone_ports.push(tls.get_ref().0.local_addr().unwrap().port());
    let mut h2 = h2_handshake(TokioIo::new(tls)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(h2_get(&mut h2, "localhost", "https", "/events?topic=v").await);
    }
    let tls = tls_connect(&hub.addr, &[&cert], vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    gone_ports.push(tls.get_ref().0.local_addr().unwrap().port());
    let (mut h1, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/events?topic=v")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h1.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut normal = Sse::from_reqwest(
        reqwest_client(&cert, true)
            .get(format!("https://localhost:{}/events?topic=v", port(&hub)))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 4);
    for port in &gone_ports {
        let out = Command::new("iptables")
            .args([
                "-A",
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                "--sport",
                &port.to_string(),
                "-j",
                "DROP",
            ])
            .output()
            .expect("iptables");
        assert!(
            out.status.success(),
            "iptables: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let start = std::time::Instant::now();
    while hub_metric(&hub, &cert, "ssehub_clients").await != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vanished clients still hold their slots"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.publish_ok("?topic=v", "still here").await;
    assert_eq!(normal.event().await.data, "still here");
    drop((held, response));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_ends_tls_streams_and_the_hub_exits() {
    let dir = temp_dir("shutdown");
    let cert = make_cert(&dir, "a");
    let mut hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let (mut h2, _) = h2_over_tls(&hub.addr, &[&cert]).await;
    let mut over_h2 =
        Sse::from_hyper(h2_get(&mut h2, "localhost", "https", "/events?topic=d").await);
    let url = format!("https://localhost:{}/events?topic=d", port(&hub));
    let response = reqwest_client(&cert, false).get(&url).send().await.unwrap();
    let mut over_h1 = Sse::from_reqwest(response);
    assert_eq!(hub_metric(&hub, &cert, "ssehub_clients").await, 2);
    let (took, code) = tokio::task::spawn_blocking(move || hub.signal_and_wait("TERM"))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Both bodies end (no event is left to come).
    assert!(over_h2.try_event(WAIT).await.is_none());
    assert!(over_h1.try_event(WAIT).await.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
