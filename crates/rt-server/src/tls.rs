//! HTTPS: with `--tls-cert` and `--tls-key` the port speaks TLS through rt-http's
//! [`Tls`](rt_http::Tls) (rustls, ALPN `h2` and `http/1.1`).

use std::path::PathBuf;

use rt_http::Tls;

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

impl TlsArgs {
    /// The TLS configuration, or `None` to serve cleartext.
    pub(crate) fn tls(&self) -> Result<Option<Tls>, Error> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let tls = Tls::from_pem_files(cert, key);
        let tls = tls.map_err(|e| Error::Config(format!("--tls-cert/--tls-key: {e}")))?;
        Ok(Some(tls))
    }
}
