//! HTTPS: with `--tls-cert` and `--tls-key` the port speaks TLS (rustls, `ring` provider) and
//! offers ALPN `h2` and `http/1.1`, so browsers get HTTP/2 (many SSE streams on one
//! connection) and older clients HTTP/1.1 with WebSocket upgrades.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::error::Error;

/// TLS options.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM file with the certificate chain (leaf first): serve HTTPS, with HTTP/2 via ALPN
    /// `h2` and HTTP/1.1, instead of cleartext. Needs --tls-key.
    #[arg(long, env = "RT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration for `args`, or `None` to serve cleartext.
pub(crate) fn server_config(args: &TlsArgs) -> Result<Option<Arc<ServerConfig>>, Error> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::unreadable("--tls-cert", cert, e))?;
    if chain.is_empty() {
        return Err(Error::Config(format!(
            "--tls-cert: {} holds no PEM certificate",
            cert.display()
        )));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| Error::unreadable("--tls-key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| {
            Error::Config(format!(
                "--tls-cert/--tls-key: {e}; check that the key belongs to the certificate"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// A connection's byte stream: as accepted, or inside TLS (boxed: cleartext connections do
/// not pay for the size of a TLS session).
pub(crate) type Io<S> = Either<S, Box<TlsStream<S>>>;

/// Runs the TLS handshake when `tls` is set.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    tls: Option<&Arc<ServerConfig>>,
    stream: S,
) -> io::Result<Io<S>> {
    let Some(tls) = tls else {
        return Ok(Either::Left(stream));
    };
    // Boxed: inline, the handshake's state (a whole rustls connection) would size the task
    // of every connection, TLS or not, for its whole life.
    let handshake = Box::pin(TlsAcceptor::from(tls.clone()).accept(stream));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(stream) => Ok(Either::Right(Box::new(stream?))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not completed in time",
        )),
    }
}
