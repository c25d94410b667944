//! The clients' `https://`: TLS over the TCP connection, checked against the system's trusted
//! roots (`rustls-native-certs`: the distribution's CA bundle, or the PEM file `SSL_CERT_FILE`
//! / the directory `SSL_CERT_DIR` names instead), with rustls and `ring` like the hub's own
//! listener. HTTP/1.1 only, as over plain TCP.

use std::sync::{Arc, OnceLock};

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Opens TLS to `host` over `tcp`, checking its certificate names `host`.
pub(crate) async fn connect(tcp: TcpStream, host: &str) -> Result<TlsStream<TcpStream>, String> {
    let config = config().await?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} cannot be checked against a certificate: {e}"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

/// The roots are read once per process, off the async threads (files, a few hundred KiB to
/// parse: the relay runs inside the hub).
async fn config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    if let Some(made) = CONFIG.get() {
        return made.clone();
    }
    tokio::task::spawn_blocking(|| CONFIG.get_or_init(build).clone())
        .await
        .map_err(|e| format!("TLS: {e}"))?
}

fn build() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(format!(
            "no trusted certificates to check https:// with ({why}); install ca-certificates or set SSL_CERT_FILE"
        ));
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
