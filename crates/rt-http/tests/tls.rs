//! `Listener::tls` over real sockets: a rustls client completes the handshake, gets the ALPN
//! protocol it offers and an answer; bad PEM files are refused with the file named.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rt_http::{ConnectionLimits, Listener, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A self-signed certificate for `localhost` written as PEM files in a fresh directory.
struct Cert {
    dir: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Cert {
    fn new(name: &str) -> Cert {
        let dir = std::env::temp_dir().join(format!("rt-http-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let der = cert.cert.der().clone();
        Cert { dir, der }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A client trusting only this certificate, offering `alpn`.
    fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn serves_https_with_alpn() {
    let cert = Cert::new("serve");
    let tls = Tls::from_pem_files(&cert.path("cert.pem"), &cert.path("key.pem")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(rt_http::full("ok")))
    });
    let listener = Listener::new(tcp, ConnectionLimits::default()).tls(tls);
    tokio::spawn(listener.serve(service, std::future::pending()));

    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = cert.connector(alpn).connect(name.clone(), tcp).await;
        let stream = stream.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        if alpn == b"http/1.1" {
            let mut stream = stream;
            let req = b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
            stream.write_all(req).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("ok"), "{answer}");
        }
    }
    // A cleartext request on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn bad_pem_files_are_named() {
    let cert = Cert::new("bad");
    let (chain, key) = (cert.path("cert.pem"), cert.path("key.pem"));
    let missing = cert.path("missing.pem");
    let e = Tls::from_pem_files(&missing, &key).unwrap_err().to_string();
    assert!(
        e.contains("certificate chain") && e.contains("missing.pem"),
        "{e}"
    );
    let e = Tls::from_pem_files(&chain, &missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("private key") && e.contains("missing.pem"),
        "{e}"
    );
    // The key file holds no certificate.
    let e = Tls::from_pem_files(&key, &key).unwrap_err().to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");
    // A key of another certificate.
    let other = Cert::new("other");
    let e = Tls::from_pem_files(&chain, &other.path("key.pem"));
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("check that the key belongs to the certificate"),
        "{e}"
    );
}
