//! TLS for tests: a self-signed certificate and clients that trust only it.

use std::path::{Path, PathBuf};

use crate::{target_dir, unique};

/// A self-signed certificate for `localhost`, written as PEM files for a TLS server (nginx,
/// rt-server with `--tls-cert`/`--tls-key`), and TLS connectors for clients that trust it.
#[derive(Debug)]
pub struct TlsCert {
    /// The certificate (PEM).
    pub cert_pem: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TlsCert {
    /// Generates a fresh certificate for `localhost` under the target directory.
    pub fn localhost() -> TlsCert {
        let dir = target_dir().join("rt-tests-tls").join(unique("cert"));
        std::fs::create_dir_all(&dir).expect("create certificate dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("generate a self-signed certificate");
        let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_pem, cert.cert.pem()).expect("write cert.pem");
        std::fs::write(&key_pem, cert.key_pair.serialize_pem()).expect("write key.pem");
        TlsCert {
            cert_pem,
            key_pem,
            der: cert.cert.der().clone(),
        }
    }

    /// The directory holding the PEM files (to remove when done).
    pub fn dir(&self) -> &Path {
        self.cert_pem
            .parent()
            .expect("the PEM files live in a directory")
    }

    /// A client that trusts only this certificate and offers `alpn` (e.g. `[b"h2",
    /// b"http/1.1"]`, or `[b"http/1.1"]` as a browser opening a WebSocket does).
    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("a valid certificate");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }
}
