//! TLS for the main listener: a certificate and key from PEM files, re-read on demand (SIGHUP in
//! the binary) without touching open connections, and ALPN offering `h2` and `http/1.1`.
//!
//! The served certificate sits behind a lock that each handshake reads once: a reload swaps it,
//! so new connections get the new one while open ones (and their streams) carry on with the
//! session they already have.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A certificate or key that could not be used: the file and the reason, on one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file (`--tls-cert`) cannot be read or holds no usable certificate.
    #[error("--tls-cert {0}: {1}")]
    Cert(PathBuf, String),
    /// The key file (`--tls-key`) cannot be read or holds no usable private key.
    #[error("--tls-key {0}: {1}")]
    Key(PathBuf, String),
    /// The rustls configuration could not be built.
    #[error("TLS: {0}")]
    Config(String),
}

/// The main listener's TLS: the PEM files it was loaded from and the certificate served now.
/// Cheap to clone (clones share the certificate, so a [`reload`](Tls::reload) on one is seen by
/// all).
///
/// ```no_run
/// # fn run() -> Result<(), ssehub::http::TlsError> {
/// let tls = ssehub::http::Tls::from_pem_files("/etc/ssehub/cert.pem", "/etc/ssehub/key.pem")?;
/// // Later, after the files were renewed: new connections get the new certificate.
/// tls.reload()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    served: Arc<Served>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The certificate handshakes get, swapped by a reload.
#[derive(Debug)]
struct Served(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Served {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Tls {
    /// Loads a certificate chain (PEM, the server's certificate first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1). Fails, naming the file, if either cannot be read, holds
    /// nothing usable, or the key does not belong to the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Tls, TlsError> {
        let (cert, key) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let provider = Arc::new(ring::default_provider());
        let served = Arc::new(Served(RwLock::new(Arc::new(load(&cert, &key, &provider)?))));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(served.clone());
        // HTTP/2 first: a browser that speaks it opens every stream of an origin on one
        // connection instead of at most 6.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            cert,
            key,
            served,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and serves the new certificate to new connections; open ones keep
    /// theirs. On failure the certificate served before stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let provider = ring::default_provider();
        let fresh = load(&self.cert, &self.key, &provider)?;
        *self
            .served
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// Reloads on every SIGHUP, for as long as the runtime runs, logging the outcome (a bad file
    /// keeps the old certificate). Call it from within a tokio runtime. Does nothing off unix.
    ///
    /// ```no_run
    /// # async fn run(tls: ssehub::http::Tls) {
    /// tls.reload_on_sighup();
    /// # }
    /// ```
    pub fn reload_on_sighup(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangup = match signal(SignalKind::hangup()) {
                Ok(hangup) => hangup,
                Err(e) => {
                    tracing::warn!("TLS: cannot watch SIGHUP, no certificate reloads: {e}");
                    return;
                }
            };
            let tls = self.clone();
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    match tls.reload() {
                        Ok(()) => {
                            tracing::info!("TLS: certificate reloaded from {}", tls.cert.display())
                        }
                        Err(e) => {
                            tracing::warn!(
                                "TLS: reload failed, still serving the old certificate: {e}"
                            )
                        }
                    }
                }
            });
        }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// Reads and checks a certificate chain and its key.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_error = |why: String| TlsError::Cert(cert.to_path_buf(), why);
    let key_error = |why: String| TlsError::Key(key.to_path_buf(), why);
    let cert_pem = std::fs::read(cert).map_err(|e| cert_error(format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| key_error(format!("cannot read: {e}")))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_error(format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| key_error(format!("unusable with the certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_invalid_files_name_the_flag_and_the_file() {
        let dir = std::env::temp_dir().join(format!("ssehub-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = Tls::from_pem_files(&missing, &missing).unwrap_err();
        assert!(e.to_string().starts_with("--tls-cert "), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let e = Tls::from_pem_files(&junk, &junk).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
