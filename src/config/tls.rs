//! `--tls-cert`, `--tls-key` and `--http2-cleartext`: how the main listener speaks.

use std::path::PathBuf;

use clap::Args;

use crate::http::{Protocol, Tls};

/// TLS and HTTP/2 flags (flattened into `ssehub serve`).
///
/// ```
/// let cli = ssehub::config::load(["ssehub", "serve", "--http2-cleartext"]).unwrap();
/// let ssehub::config::Command::Serve(serve) = cli.command else { unreachable!() };
/// assert!(matches!(serve.tls.protocol(), Ok(ssehub::http::Protocol::Http2Cleartext)));
/// ```
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Serve --listen over TLS with this certificate chain (PEM, the server's certificate
    /// first); needs --tls-key. Clients that offer HTTP/2 (ALPN h2) get it, others HTTP/1.1.
    /// Re-read with the key on SIGHUP; open streams keep going.
    #[arg(
        long,
        env = "SSEHUB_TLS_CERT",
        value_name = "PATH",
        help_heading = "TLS"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "SSEHUB_TLS_KEY",
        value_name = "PATH",
        help_heading = "TLS"
    )]
    pub tls_key: Option<PathBuf>,

    /// Also speak HTTP/2 without TLS on --listen (h2c, prior knowledge), for a reverse proxy
    /// that talks h2c to its backends. HTTP/1.1 clients are still served.
    #[arg(long, env = "SSEHUB_HTTP2_CLEARTEXT", help_heading = "TLS")]
    pub http2_cleartext: bool,
}

impl TlsArgs {
    /// How --listen speaks; loads the certificate and key if given. Fails with the flag's name
    /// if only one of the pair is given, a file cannot be used, or TLS is combined with
    /// --http2-cleartext.
    pub fn protocol(&self) -> Result<Protocol, String> {
        match (&self.tls_cert, &self.tls_key, self.http2_cleartext) {
            (None, None, false) => Ok(Protocol::Http1),
            (None, None, true) => Ok(Protocol::Http2Cleartext),
            (Some(_), Some(_), true) => Err(
                "--http2-cleartext is for a listener without TLS: with --tls-cert, HTTP/2 is offered by ALPN already"
                    .into(),
            ),
            (Some(cert), Some(key), false) => Tls::from_pem_files(cert, key)
                .map(Protocol::Tls)
                .map_err(|e| e.to_string()),
            (Some(_), None, _) => Err("--tls-cert needs --tls-key (the certificate's private key)".into()),
            (None, Some(_), _) => Err("--tls-key needs --tls-cert (the certificate chain)".into()),
        }
    }
}
