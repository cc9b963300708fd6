//! TLS for tests: a self-signed certificate, clients that trust only it, and rt-server
//! serving HTTPS with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{free_port, server_binary, target_dir, unique};

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

/// rt-server serving HTTPS (`--tls-cert`/`--tls-key`, ALPN `h2` and `http/1.1`) on 127.0.0.1
/// with `--api-key test-key --dev`. Killed when dropped. ([`crate::Server`] waits on
/// cleartext `/health`; this one waits until a TCP connect succeeds.)
pub struct TlsServer {
    child: std::process::Child,
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TlsServer {
    /// Starts rt-server with `cert` and the extra `args`.
    pub async fn start(cert: &TlsCert, args: &[&str]) -> TlsServer {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = std::process::Command::new(server_binary())
            .args([
                "--listen",
                &addr.to_string(),
                "--api-key",
                "test-key",
                "--dev",
            ])
            .arg("--tls-cert")
            .arg(&cert.cert_pem)
            .arg("--tls-key")
            .arg(&cert.key_pem)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn rt-server");
        let connector = cert.connector(&[b"h2"]);
        let mut server = TlsServer {
            child,
            addr,
            connector,
        };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return server;
            }
            assert!(
                server.child.try_wait().expect("rt-server status").is_none(),
                "rt-server exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("TLS rt-server did not listen");
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:port{path}` (the certificate's name).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// A new HTTP/2 connection over TLS (ALPN `h2`), trusting only the test certificate.
    pub async fn h2(&self) -> SendRequest<Empty<Bytes>> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("TCP connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender
    }

    /// The value of a Prometheus sample at `/metrics` (see [`crate::Server::metric`]).
    pub async fn metric(&self, sample: &str) -> f64 {
        let req = http::Request::get(self.url("/metrics"))
            .body(Empty::new())
            .expect("a valid request");
        let res = self
            .h2()
            .await
            .send_request(req)
            .await
            .expect("GET /metrics");
        let body = res.into_body().collect().await.expect("the metrics");
        crate::server::sample_of(&body.to_bytes(), sample)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
