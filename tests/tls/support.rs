//! Helpers for the TLS tests: certificates made here (rcgen), a hub started with TLS flags, TLS
//! and HTTP/2 clients, and a stream body read through our parser.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyDataStream, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::parse::{Frame, ParsedEvent, Parser};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::{HubProcess, WAIT};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files in `dir`.
pub struct Cert {
    pub der: CertificateDer<'static>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

pub fn make_cert(dir: &Path, name: &str) -> Cert {
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

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssehub-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts a hub with `args` and waits for its "listening on <scheme>://" line.
pub fn start(args: &[&str]) -> HubProcess {
    HubProcess::start(args)
}

pub fn tls_args(cert: &Cert) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.cert_path.display().to_string(),
        "--tls-key".into(),
        cert.key_path.display().to_string(),
    ]
}

pub fn port(hub: &HubProcess) -> &str {
    hub.addr.rsplit(':').next().unwrap()
}

/// A reqwest client trusting `cert`, HTTP/1.1 only or HTTP/2 by ALPN.
pub fn reqwest_client(cert: &Cert, h2: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_der(&cert.der).unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .pool_max_idle_per_host(0);
    let builder = if h2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

pub type Chunks = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A stream's body read through our parser.
pub struct Sse {
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

    pub fn from_reqwest(response: reqwest::Response) -> Sse {
        Sse::new(Box::pin(
            response
                .bytes_stream()
                .filter_map(|r| std::future::ready(r.ok())),
        ))
    }

    pub fn from_hyper(response: hyper::Response<hyper::body::Incoming>) -> Sse {
        let body = BodyDataStream::new(response.into_body());
        Sse::new(Box::pin(body.filter_map(|r| std::future::ready(r.ok()))))
    }

    /// The next event within `within`; `None` on timeout or end.
    pub async fn try_event(&mut self, within: Duration) -> Option<ParsedEvent> {
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

    pub async fn event(&mut self) -> ParsedEvent {
        self.try_event(WAIT).await.expect("an event")
    }
}

/// One TLS connection to the hub trusting `roots`, offering only `h2`; returns the HTTP/2 sender
/// and the certificate the hub served.
pub async fn h2_over_tls(
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

pub async fn tls_connect(
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

pub async fn h2_handshake<I>(io: TokioIo<I>) -> SendRequest<Empty<Bytes>>
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
pub async fn h2_get(
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

pub async fn hub_metric(hub: &HubProcess, cert: &Cert, name: &str) -> u64 {
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
