//! A real nginx (the Debian package, which `cargo xtask test` installs) in front of a test
//! server, configured with the snippet of `docs/deployment.md`, so the documented settings
//! are the tested ones.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, target_dir, unique, workspace_root};

/// The certificate [`Nginx::start_tls`] serves (the crate's one TLS helper).
pub use crate::TlsCert;

/// The path of the nginx binary (see `tests/system-packages.txt`).
fn binary() -> PathBuf {
    crate::system::binary("nginx")
}

/// The fenced ```nginx block of `docs/deployment.md` between `<!-- {marker}:begin -->` and
/// `<!-- {marker}:end -->`.
fn documented_block(marker: &str) -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/deployment.md"))
        .expect("read docs/deployment.md");
    let start = doc
        .find(&format!("<!-- {marker}:begin -->"))
        .unwrap_or_else(|| panic!("docs/deployment.md has no <!-- {marker}:begin --> marker"));
    let end = doc
        .find(&format!("<!-- {marker}:end -->"))
        .unwrap_or_else(|| panic!("docs/deployment.md has no <!-- {marker}:end --> marker"));
    let block = &doc[start..end];
    let body = block
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(body, _)| body)
        .unwrap_or_else(|| {
            panic!("the {marker} block of docs/deployment.md is not a ```nginx fence")
        });
    body.to_owned()
}

/// The nginx snippet of `docs/deployment.md`: the fenced block between the
/// `<!-- nginx:begin -->` and `<!-- nginx:end -->` markers.
pub fn documented_snippet() -> String {
    documented_block("nginx")
}

/// The documented snippet terminating TLS with HTTP/2: its `listen 80;` line replaced by the
/// lines `docs/deployment.md` gives for that (between the `nginx-tls` markers), as the docs
/// tell readers to do. Start it with [`Nginx::start_tls`].
pub fn documented_tls_snippet() -> String {
    let snippet = documented_snippet();
    let line = "    listen 80;\n";
    assert!(
        snippet.contains(line),
        "the documented snippet has no `listen 80;` line for the TLS lines to replace"
    );
    snippet.replace(line, &documented_block("nginx-tls"))
}

/// Where the documented TLS lines expect the certificate chain and key.
const DOC_CERT: &str = "/etc/ssl/rt/fullchain.pem";
const DOC_KEY: &str = "/etc/ssl/rt/privkey.pem";
/// The documented TLS `listen` line (nginx terminating TLS with HTTP/2 on 443).
const DOC_TLS_LISTEN: &str = "listen 443 ssl http2;";

/// A running nginx. Stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Option<Child>,
    port: u16,
    prefix: PathBuf,
    tls: bool,
}

impl Nginx {
    /// Starts nginx with `snippet` (an `http {}` level configuration such as
    /// [`documented_snippet`]) proxying to `upstream` (`127.0.0.1:port`). The snippet's
    /// `server 127.0.0.1:8080` and `listen 80` are pointed at the test's ports.
    pub fn start(snippet: &str, upstream: std::net::SocketAddr) -> Nginx {
        Nginx::launch(false, |port| {
            let site = snippet
                .replace("server 127.0.0.1:8080", &format!("server {upstream}"))
                .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
            assert!(
                site.contains(&format!("127.0.0.1:{port}")),
                "the nginx snippet has no `listen 80;` to point at the test port"
            );
            site
        })
    }

    /// Starts nginx terminating TLS (and HTTP/2) with `cert`: like [`Nginx::start`], for a
    /// snippet such as [`documented_tls_snippet`] whose documented TLS `listen` line and
    /// certificate paths are pointed at the test's port and `cert`.
    pub fn start_tls(snippet: &str, upstream: std::net::SocketAddr, cert: &TlsCert) -> Nginx {
        Nginx::launch(true, |port| {
            let site = snippet
                .replace("server 127.0.0.1:8080", &format!("server {upstream}"))
                .replace(
                    DOC_TLS_LISTEN,
                    &DOC_TLS_LISTEN.replace("443", &format!("127.0.0.1:{port}")),
                )
                .replace(DOC_CERT, &cert.cert_pem.display().to_string())
                .replace(DOC_KEY, &cert.key_pem.display().to_string());
            assert!(
                site.contains(&format!("127.0.0.1:{port}"))
                    && site.contains(&cert.cert_pem.display().to_string())
                    && site.contains(&cert.key_pem.display().to_string()),
                "the nginx snippet has no `{DOC_TLS_LISTEN}` or certificate paths ({DOC_CERT}, \
                 {DOC_KEY}) to point at the test's:\n{snippet}"
            );
            site
        })
    }

    /// Starts nginx with the site `site(port)` on a free port, retrying if the port is taken.
    fn launch(tls: bool, site: impl Fn(u16) -> String) -> Nginx {
        let bin = binary();
        for _ in 0..5 {
            let port = free_port();
            let prefix = target_dir().join("rt-tests-nginx").join(unique("nginx"));
            std::fs::create_dir_all(prefix.join("tmp")).expect("create nginx prefix");
            let site = site(port);
            let p = prefix.display();
            let conf = format!(
                "master_process off;\n\
                 pid {p}/nginx.pid;\n\
                 error_log {p}/error.log info;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                   access_log {p}/access.log;\n\
                   client_body_temp_path {p}/tmp/body;\n\
                   proxy_temp_path {p}/tmp/proxy;\n\
                   fastcgi_temp_path {p}/tmp/fastcgi;\n\
                   uwsgi_temp_path {p}/tmp/uwsgi;\n\
                   scgi_temp_path {p}/tmp/scgi;\n\
                 {site}\n\
                 }}\n"
            );
            std::fs::write(prefix.join("nginx.conf"), conf).expect("write nginx.conf");
            let child = Command::new(&bin)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(prefix.join("stderr.log")).expect("nginx stderr log"))
                .spawn()
                .expect("spawn nginx");
            let mut nginx = Nginx {
                child: Some(child),
                port,
                prefix,
                tls,
            };
            if nginx.wait_listening() {
                return nginx;
            }
        }
        panic!("nginx did not start; see target/rt-tests-nginx/*/error.log");
    }

    /// Waits until nginx accepts connections; false if it exited (e.g. the port was taken).
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log =
                    std::fs::read_to_string(self.prefix.join("stderr.log")).unwrap_or_default();
                assert!(
                    log.contains("Address already in use") || log.is_empty(),
                    "nginx refused its configuration:\n{log}"
                );
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not listen within 10 s; see {}",
            self.prefix.display()
        );
    }

    /// `http://127.0.0.1:port{path}` through nginx (`https://localhost:port{path}` with TLS,
    /// the name of the test certificate).
    pub fn url(&self, path: &str) -> String {
        match self.tls {
            false => format!("http://127.0.0.1:{}{}", self.port, path),
            true => format!("https://localhost:{}{}", self.port, path),
        }
    }

    /// `ws://127.0.0.1:port{path}` through nginx (`wss://localhost:port{path}` with TLS).
    pub fn ws_url(&self, path: &str) -> String {
        match self.tls {
            false => format!("ws://127.0.0.1:{}{}", self.port, path),
            true => format!("wss://localhost:{}{}", self.port, path),
        }
    }

    /// The address nginx listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }

    /// The directory nginx runs in (configuration and logs).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
