//! HTTPS for [`Listener`](crate::Listener) (feature `tls`): rustls with the `ring` provider,
//! offering ALPN `h2` and `http/1.1`, so that browsers get HTTP/2 (many SSE streams on one
//! connection) and older clients HTTP/1.1 with WebSocket upgrades.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS server configuration, to serve HTTPS with [`Listener::tls`](crate::Listener::tls).
///
/// ```no_run
/// # fn run() -> std::io::Result<()> {
/// let tls = rt_http::Tls::from_pem_files("chain.pem".as_ref(), "key.pem".as_ref())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Serves the certificate chain in the PEM file `cert` (leaf first) with the private key in
    /// the PEM file `key` (PKCS#8, PKCS#1 or SEC1), offering ALPN `h2` and `http/1.1`. The
    /// error says which file is at fault, or that the key does not belong to the certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<Tls> {
        let unreadable = |what: &str, path: &Path, e: rustls::pki_types::pem::Error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot read {what} {}: {e}", path.display()),
            )
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| unreadable("the certificate chain", cert, e))?;
        if chain.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no PEM certificate", cert.display()),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable("the private key", key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{e}; check that the key belongs to the certificate"),
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls::new(Arc::new(config)))
    }

    /// Serves with a rustls configuration built by the caller (client certificates, a
    /// certificate resolver...). Set its `alpn_protocols` to offer `h2` for HTTP/2.
    pub fn new(config: Arc<ServerConfig>) -> Tls {
        Tls {
            acceptor: TlsAcceptor::from(config),
        }
    }

    /// Runs the server side of the TLS handshake on `stream`, within 10 seconds.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> io::Result<Box<TlsStream<S>>> {
        // Boxed: inline, the handshake's state (a whole rustls connection) would size the task
        // of the connection for its whole life.
        let handshake = Box::pin(self.acceptor.accept(stream));
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(stream) => Ok(Box::new(stream?)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not completed in time",
            )),
        }
    }
}
