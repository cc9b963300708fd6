//! A real Redis for tests, the one implementation for the workspace (rt-tests and
//! rt-backplane's tests): `REDIS_URL`, the machine's own, or a `redis-server` started here.
//! `redis-server` is a system package that `cargo xtask test` installs; when it is needed and
//! missing, the test fails saying so (in CI and out of it: tests never skip for want of Redis).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, target_dir};

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

/// The path of `redis-server` (see `tests/system-packages.txt`).
fn redis_server_binary() -> PathBuf {
    crate::system::binary("redis-server")
}

/// Where the Redis servers started here keep their files: `target/rt-tests-redis`.
fn redis_dir() -> PathBuf {
    let dir = target_dir().join("rt-tests-redis");
    std::fs::create_dir_all(&dir).expect("create target/rt-tests-redis");
    dir
}

/// The Redis URL tests share: `REDIS_URL` if set, else the machine's Redis on 6379 if it
/// answers, else a `redis-server` of this target directory, started (daemonized) by the
/// first test process that needs it and reused by the next ones while it answers. Never
/// skips: a test that needs Redis and cannot have one fails. Tests sharing it keep apart
/// by key prefix ([`crate::unique`]).
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
        format!("redis://127.0.0.1:{}", shared_daemon())
    })
    .clone()
}

/// The port of this target directory's shared `redis-server`, started when none answers.
/// Test binaries run side by side, so the check and the start are under a file lock.
fn shared_daemon() -> u16 {
    let dir = redis_dir();
    let lock = std::fs::File::create(dir.join("shared.lock")).expect("create Redis lock file");
    lock.lock().expect("lock the shared Redis");
    let port_file = dir.join("shared.port");
    let known = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    if let Some(port) = known.filter(|&p| answers(p)) {
        return port;
    }
    let port = free_port();
    // Daemonized: it outlives this test process (and a crashed test) for the next ones.
    let status = Command::new(redis_server_binary())
        .args(server_args(port))
        .args(["--appendonly", "no", "--daemonize", "yes", "--pidfile"])
        .arg(dir.join("shared.pid"))
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .status()
        .expect("start redis-server");
    assert!(status.success(), "redis-server --daemonize failed");
    wait_until_up(port);
    std::fs::write(&port_file, port.to_string()).expect("write target/rt-tests-redis/shared.port");
    port
}

/// The arguments every Redis started here has: `port` on 127.0.0.1, no RDB snapshots.
fn server_args(port: u16) -> [String; 6] {
    [
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
    ]
}

/// A `redis-server` owned by a test, which it can stop and start again on the same port
/// (for fault tests). Without persistence ([`RedisServer::start`]) a restart loses all data;
/// with it ([`RedisServer::start_persistent`]) the data survives. Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Its working directory (the append-only file), removed when dropped.
    dir: PathBuf,
    persistent: bool,
}

impl RedisServer {
    /// Starts a fresh `redis-server` without persistence on a free port and waits until it
    /// answers.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// Starts a fresh `redis-server` with an append-only file synced on every write, so a
    /// kill and [`RedisServer::resume`] keep the data.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    fn launch(persistent: bool) -> RedisServer {
        let port = free_port();
        let dir = redis_dir().join(format!("{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Redis directory");
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            persistent,
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command to this server; see [`redis_cmd`].
    pub fn cmd(&self, args: &[&str]) -> String {
        redis_cmd(&self.url(), args)
    }

    /// Kills the server (like a crash: no final save).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if it runs).
    pub fn resume(&mut self) {
        self.stop();
        let child = Command::new(redis_server_binary())
            .args(server_args(self.port))
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command (its arguments as given) to the Redis at `url`
/// (`redis://[user:pass@]host:port[/db]`, no AUTH sent) and returns the raw RESP reply (one
/// read, up to 64 KiB).
pub fn redis_cmd(url: &str, args: &[&str]) -> String {
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
