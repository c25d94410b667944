//! Subscribers over TLS and HTTP/2 (`--subscribe-tls`, `--subscribe-http2`): the same checks as
//! the plain subscribers (`subscribers.rs`'s tally), over hyper's client instead of raw sockets,
//! with many streams per HTTP/2 connection. Publishing stays plain HTTP/1.1.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::http1::Url;
use super::subscribers::Tally;
use super::{lock, BenchError, Shared};
use crate::parse::{FrameRef, Parser};

/// How subscribers connect, when not over plain HTTP/1.1.
#[derive(Debug, Clone, Args)]
pub struct TlsBenchArgs {
    /// Subscribers speak TLS to --url's address (still written http://HOST:PORT/...), trusting
    /// this CA certificate (PEM); the server name is --url's host.
    #[arg(
        long,
        env = "SSEHUB_BENCH_SUBSCRIBE_TLS",
        value_name = "CA_PEM",
        help_heading = "TLS"
    )]
    pub subscribe_tls: Option<PathBuf>,

    /// Subscribers speak HTTP/2: by ALPN over --subscribe-tls, or h2c (prior knowledge) without
    /// it; --streams-per-connection streams share each connection.
    #[arg(long, env = "SSEHUB_BENCH_SUBSCRIBE_HTTP2", help_heading = "TLS")]
    pub subscribe_http2: bool,

    /// With --subscribe-http2: streams opened on one connection before the next is opened.
    #[arg(long, env = "SSEHUB_BENCH_STREAMS_PER_CONNECTION", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "TLS")]
    pub streams_per_connection: u64,
}

impl TlsBenchArgs {
    /// The connector, if subscribers do not speak plain HTTP/1.1. `--reuse-connection` is the
    /// plain subscribers' only.
    pub(super) fn pool(&self, reuse_connection: bool) -> Result<Option<Arc<Pool>>, BenchError> {
        if self.subscribe_tls.is_none() && !self.subscribe_http2 {
            return Ok(None);
        }
        if reuse_connection {
            return Err(BenchError::Flag(
                "--reuse-connection is for plain HTTP/1.1 subscribers, not with --subscribe-tls or --subscribe-http2".into(),
            ));
        }
        let tls = match &self.subscribe_tls {
            Some(path) => {
                let flag = |why: String| {
                    BenchError::Flag(format!("--subscribe-tls {}: {why}", path.display()))
                };
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| flag(e.to_string()))? {
                    roots
                        .add(cert.map_err(|e| flag(e.to_string()))?)
                        .map_err(|e| flag(e.to_string()))?;
                }
                let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
                let mut config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| flag(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = if self.subscribe_http2 {
                    vec![b"h2".to_vec()]
                } else {
                    vec![b"http/1.1".to_vec()]
                };
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            None => None,
        };
        Ok(Some(Arc::new(Pool {
            tls,
            http2: self.subscribe_http2,
            per_connection: self.streams_per_connection as usize,
            current: Mutex::new(None),
        })))
    }
}

/// Where subscribers get their connections: one each (HTTP/1.1), or shared (HTTP/2).
pub(super) struct Pool {
    tls: Option<tokio_rustls::TlsConnector>,
    http2: bool,
    per_connection: usize,
    /// The HTTP/2 connection being filled, and its streams so far.
    current: Mutex<Option<(http2::SendRequest<Empty<Bytes>>, usize)>>,
}

type Io = Box<dyn IoStream>;
trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

impl Pool {
    async fn connect(&self, url: &Url) -> Result<TokioIo<Io>, String> {
        let tcp = TcpStream::connect(&url.authority)
            .await
            .map_err(|e| format!("{} on connect", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(TokioIo::new(Box::new(tcp)));
        };
        let host = url
            .authority
            .rsplit_once(':')
            .map_or(&*url.authority, |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| format!("server name {host}: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(TokioIo::new(Box::new(stream)))
    }

    async fn get(&self, url: &Url) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let request = hyper::Request::get(&url.target)
            .header("host", &url.authority)
            .header("accept", "text/event-stream")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        if !self.http2 {
            let (mut sender, connection) = http1::handshake(self.connect(url).await?)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(connection);
            return sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string());
        }
        let mut sender = {
            let mut current = self.current.lock().await;
            let full = current
                .as_ref()
                .is_none_or(|(_, n)| *n >= self.per_connection);
            if full {
                let (sender, connection) =
                    http2::handshake(TokioExecutor::new(), self.connect(url).await?)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                tokio::spawn(connection);
                *current = Some((sender, 0));
            }
            let Some((sender, n)) = current.as_mut() else {
                return Err("no connection".into());
            };
            *n += 1;
            sender.clone()
        };
        // HTTP/2 wants an absolute URI (its :scheme and :authority).
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("{scheme}://{}{}", url.authority, url.target)
            .parse()
            .map_err(|e| format!("{e}"))?;
        sender.ready().await.map_err(|e| e.to_string())?;
        sender
            .send_request(hyper::Request::from_parts(parts, body))
            .await
            .map_err(|e| e.to_string())
    }
}

/// One subscriber over the pool: opens its stream, then checks every delivery.
pub(super) async fn subscriber(
    shared: Arc<Shared>,
    url: Url,
    topic: usize,
    gate: Arc<Semaphore>,
    pool: Arc<Pool>,
) {
    let opened = {
        let _permit = gate.acquire().await;
        pool.get(&url).await
    };
    let response = match opened {
        Ok(response) => response,
        Err(why) => {
            *lock(&shared.failed).entry(why).or_default() += 1;
            shared.resolved.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if response.status() != 200 || media_type.as_deref() != Some("text/event-stream") {
        let answer = format!(
            "{} {}",
            response.status().as_u16(),
            media_type.as_deref().unwrap_or("(no content type)")
        );
        *lock(&shared.refused).entry(answer).or_default() += 1;
        shared.resolved.fetch_add(1, Ordering::AcqRel);
        return;
    }
    shared.on_topic[topic].fetch_add(1, Ordering::AcqRel);
    shared.connected.fetch_add(1, Ordering::AcqRel);
    shared.resolved.fetch_add(1, Ordering::AcqRel);
    let mut parser = Parser::new();
    let mut tally = Tally::new(&shared);
    let mut body = response.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now_us = shared.start.elapsed().as_micros() as u64;
        parser.feed_ref(&data, &mut |frame| {
            if let FrameRef::Event { data, .. } = frame {
                tally.event(data, &shared, now_us);
            }
        });
        tally.flush(&shared, now_us);
    }
    shared.ended_by_server.fetch_add(1, Ordering::Relaxed);
}
