//! A connection on the hyper path must send its first request within the head timeout, as on the
//! fast path. hyper bounds an HTTP/1.1 head itself (`header_read_timeout`), but not the wait
//! before an HTTP/2 preface, nor the sniffing of `--http2-cleartext` connections (h1 or h2c?):
//! a client that connects and sends nothing would hold its socket forever. This closes it
//! (`preface.rs` does for HTTP/2 over TLS).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// What every HTTP/2 client sends first.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits (without taking them) until the connection's first bytes tell HTTP/1.1 from h2c: the
/// whole preface, or bytes that cannot be its start. `false`: closed, or not within `within`.
pub(super) async fn sniffable(stream: &TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            if n == PREFACE.len() || !PREFACE.starts_with(&buf[..n]) {
                return Ok(true);
            }
            // Part of a preface: the rest is on its way (rare, so a short sleep will do).
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    matches!(
        tokio::time::timeout(within, wait).await,
        Ok(Ok::<_, io::Error>(true))
    )
}
