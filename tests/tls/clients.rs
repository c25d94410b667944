//! `ssehub listen`, `ssehub publish` and the upstream relay over `https://`: the hub's
//! certificate is checked against the roots `SSL_CERT_FILE` names (here the test's self-signed
//! one); against other roots, the handshake fails and says why.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use crate::common::{bare_command, EventStream, HubProcess, WAIT};
use crate::support::*;

/// A client process trusting only `ca`; its stdout and stderr lines as they come.
struct Client {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Client {
    fn start(args: &[&str], ca: &Path) -> Client {
        let mut child = bare_command()
            .args(args)
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the client");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Client {
            child,
            stdout,
            stderr,
        }
    }

    /// The first stderr line containing `text`, within WAIT.
    fn stderr_line(&self, text: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_publish_over_https() {
    let dir = temp_dir("clients");
    let cert = make_cert(&dir, "hub");
    let mut args = tls_args(&cert);
    args.extend(["--publish-token".to_string(), "tok".to_string()]);
    let hub = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let base = format!("https://localhost:{}", port(&hub));

    let listen = Client::start(&["listen", &base, "--topic", "t"], &cert.cert_path);
    // Published once the stream is open (a fresh stream starts at "now").
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub_metric(&hub, &cert, "ssehub_clients").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listen never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // By address: the certificate's IP name is checked (no SNI is sent for an address).
    let by_address = format!("https://127.0.0.1:{}", port(&hub));
    let publish = |data: &'static str| {
        let base = by_address.clone();
        let ca = cert.cert_path.clone();
        tokio::task::spawn_blocking(move || {
            bare_command()
                .args(["publish", &base, "--topic", "t", "--token", "tok", data])
                .env("SSL_CERT_FILE", ca)
                .env_remove("SSL_CERT_DIR")
                .output()
                .expect("run publish")
        })
    };
    let out = publish("hello over tls").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = tokio::task::block_in_place(|| listen.stdout.recv_timeout(WAIT));
    assert_eq!(got.as_deref(), Ok("hello over tls"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_certificate_from_an_untrusted_issuer_is_refused_and_named() {
    let dir = temp_dir("clients-untrusted");
    let cert = make_cert(&dir, "hub");
    let other = make_cert(&dir, "other");
    let hub = start(
        &tls_args(&cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let url = format!("https://localhost:{}/events", port(&hub));
    let listen = Client::start(&["listen", &url], &other.cert_path);
    let line = listen.stderr_line("certificate");
    let line = line.expect("no certificate error from listen");
    assert!(line.contains("TLS with localhost"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reads_an_https_upstream() {
    let dir = temp_dir("clients-relay");
    let cert = make_cert(&dir, "up");
    let mut args = tls_args(&cert);
    args.extend(["--publish-token".to_string(), "tok".to_string()]);
    let upstream = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let source = format!("dev=https://localhost:{}/events?topic=t", port(&upstream));
    let mut cmd = HubProcess::command(&["--upstream", &source, "--listen", "127.0.0.1:0"]);
    cmd.env("SSL_CERT_FILE", &cert.cert_path)
        .env_remove("SSL_CERT_DIR");
    let hub = HubProcess::spawn(cmd);
    let mut stream = EventStream::open(&hub.url("/events?topic=dev"), &[])
        .await
        .opened()
        .await;
    let client = reqwest_client(&cert, false);
    // Until the relay is connected, what is published upstream is not relayed: try again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = client
            .post(format!(
                "https://localhost:{}/publish?topic=t",
                port(&upstream)
            ))
            .bearer_auth("tok")
            .body("relayed")
            .send()
            .await
            .expect("publish upstream");
        assert_eq!(answer.status(), 200);
        // The relay's own `upstream` events (connected, lost) come on the same topic.
        let mut relayed = false;
        while let Ok(event) = stream.try_next_event(Duration::from_millis(300)).await {
            if event.event != "upstream" {
                assert_eq!(event.data, "relayed");
                relayed = true;
            }
        }
        if relayed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing relayed: {}",
            hub.stderr_text()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
