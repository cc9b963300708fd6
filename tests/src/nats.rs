//! A real NATS with JetStream for tests, the one implementation for the workspace (rt-tests
//! and rt-backplane-nats' tests): `NATS_URL`, the machine's own on 4222, or a
//! `nats-server -js` started here. `nats-server` is a system package that `cargo xtask test`
//! installs; when it is needed and missing, the test fails saying so (tests never skip).

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, target_dir};

/// Whether a NATS server greets with `INFO` at `127.0.0.1:port`.
fn answers(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}

/// Where the NATS servers started here keep their stores: `target/rt-tests-nats`.
fn nats_dir() -> PathBuf {
    let dir = target_dir().join("rt-tests-nats");
    std::fs::create_dir_all(&dir).expect("create target/rt-tests-nats");
    dir
}

/// The NATS URL tests share: `NATS_URL` if set, else the machine's NATS on 4222 if it
/// answers, else a `nats-server -js` of this target directory, started by the first test
/// process that needs it and reused by the next ones while it answers. Never skips. Tests
/// sharing it keep apart by prefix ([`crate::unique`], with `_` for `-`).
pub fn nats_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("NATS_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        if answers(4222) {
            return "nats://127.0.0.1:4222".into();
        }
        format!("nats://127.0.0.1:{}", shared_server())
    })
    .clone()
}

/// The port of this target directory's shared `nats-server`, started when none answers.
fn shared_server() -> u16 {
    let dir = nats_dir();
    let lock = std::fs::File::create(dir.join("shared.lock")).expect("create NATS lock file");
    lock.lock().expect("lock the shared NATS");
    let port_file = dir.join("shared.port");
    let known = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    if let Some(port) = known.filter(|&p| answers(p)) {
        return port;
    }
    let port = free_port();
    // Not killed when this process ends: the next test processes reuse it.
    let child = spawn(port, &dir.join("shared-store"));
    std::mem::forget(child);
    wait_until_up(port);
    std::fs::write(&port_file, port.to_string()).expect("write target/rt-tests-nats/shared.port");
    port
}

fn spawn(port: u16, store: &std::path::Path) -> Child {
    Command::new(crate::system::binary("nats-server"))
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server")
}

/// A `nats-server -js` owned by a test, which it can stop and start again on the same port
/// with the same store (so JetStream data survives), or with its store wiped. Killed when
/// dropped.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a fresh `nats-server -js` on a free port and waits until it answers.
    pub fn start() -> NatsServer {
        let port = free_port();
        let dir = nats_dir().join(format!("{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the NATS store directory");
        let mut server = NatsServer {
            port,
            child: None,
            dir,
        };
        server.resume();
        server
    }

    /// `nats://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (like a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn resume(&mut self) {
        self.stop();
        self.child = Some(spawn(self.port, &self.dir));
        wait_until_up(self.port);
    }

    /// Kills the server, deletes its store (all JetStream data) and starts it again.
    pub fn wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("create the NATS store directory");
        self.resume();
    }
}

fn wait_until_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if answers(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nats-server on port {port} did not answer within 10 s");
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
