//! A real Redis for tests: `REDIS_URL`, the machine's own, or one started here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::apt::Package;
use crate::free_port;

/// Whether a Redis answers PING at `127.0.0.1:port`.
fn answers(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The path of `redis-server`, installed with apt when missing.
fn redis_server_binary() -> PathBuf {
    Package {
        name: "redis-server",
        paths: &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
        recommends: false,
    }
    .binary()
}

/// The Redis URL tests share: `REDIS_URL` if set, else the machine's Redis on 6379 if it
/// answers, else a `redis-server` started for this test process. Never skips: a test that
/// needs Redis and cannot have one fails.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("REDIS_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        if answers(6379) {
            return "redis://127.0.0.1:6379".into();
        }
        // Lives for the whole test process; daemonized so it also outlives a crashed test.
        let server = RedisServer::start_daemon();
        server.url()
    })
    .clone()
}

/// A `redis-server` owned by a test, which it can stop and start again on the same port
/// (for fault tests). It keeps nothing on disk, so a restart loses all data.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh `redis-server` on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.resume();
        server
    }

    fn start_daemon() -> RedisServer {
        let port = free_port();
        let pidfile = crate::target_dir().join(format!("redis-{port}.pid"));
        let _ = std::fs::create_dir_all(crate::target_dir());
        let status = Command::new(redis_server_binary())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "yes", "--pidfile"])
            .arg(&pidfile)
            .status()
            .expect("start redis-server");
        assert!(status.success(), "redis-server --daemonize failed");
        wait_until_up(port);
        RedisServer { port, child: None }
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (like a crash); its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) {
        self.stop();
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        wait_until_up(self.port);
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
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
