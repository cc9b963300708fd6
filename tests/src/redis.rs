//! A real Redis for tests, the one implementation for the workspace (rt-tests and
//! rt-backplane's tests): `REDIS_URL`, the machine's own, or a `redis-server` started here.
//! `redis-server` is a system package that `cargo xtask test` installs; when it is needed and
//! missing, the test fails saying so (in CI and out of it: tests never skip for want of Redis).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::service::{Owned, Service};

/// Redis: a server answers PING; its files are under `target/rt-tests-redis`.
static REDIS: Service = Service {
    name: "Redis",
    program: "redis-server",
    env: "REDIS_URL",
    scheme: "redis",
    default_port: 6379,
    dir: "rt-tests-redis",
    hello: b"PING\r\n",
    reply: b"+PONG\r\n",
    awaited: "answer PING",
    start_shared: |redis, port, dir| {
        // Daemonized: it outlives this test process (and a crashed test) for the next ones.
        let status = Command::new(redis.binary())
            .args(server_args(port))
            .args(["--appendonly", "no", "--daemonize", "yes", "--pidfile"])
            .arg(dir.join("shared.pid"))
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .expect("start redis-server");
        assert!(status.success(), "redis-server --daemonize failed");
    },
    url: OnceLock::new(),
};

/// The Redis URL tests share: `REDIS_URL` if set, else the machine's Redis on 6379 if it
/// answers, else a `redis-server` of this target directory, started (daemonized) by the
/// first test process that needs it and reused by the next ones while it answers. Never
/// skips: a test that needs Redis and cannot have one fails. Tests sharing it keep apart
/// by key prefix ([`crate::unique`]).
pub fn redis_url() -> String {
    REDIS.url()
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
/// with it ([`RedisServer::start_persistent`]) the data survives. Killed when dropped (its
/// working directory, with the append-only file, then removed).
#[derive(Debug)]
pub struct RedisServer {
    server: Owned,
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
        let mut server = RedisServer {
            server: Owned::new(&REDIS),
            persistent,
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Whether its data survives a [`stop`](Self::stop) and [`resume`](Self::resume).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Sends one command to this server; see [`redis_cmd`].
    pub fn cmd(&self, args: &[&str]) -> String {
        redis_cmd(&self.url(), args)
    }

    /// Kills the server (like a crash: no final save).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same port (killing it first if it runs).
    pub fn resume(&mut self) {
        let mut cmd = Command::new(REDIS.binary());
        cmd.args(server_args(self.server.port))
            .arg("--dir")
            .arg(&self.server.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"]);
        self.server.run(&mut cmd);
    }
}

/// Sends one command (its arguments as given) to the Redis at `url`
/// (`redis://[user:pass@]host:port[/db]`, no AUTH sent) and returns the raw RESP reply, read
/// to its end (a long one, such as `INFO`, may come in several reads).
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
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 65536];
    while resp_len(&reply).is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{addr} closed the connection mid-reply: {reply:?}");
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The length of the complete RESP value at the start of `buf`, `None` while it is partial.
fn resp_len(buf: &[u8]) -> Option<usize> {
    let line = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&buf[1..line]).ok()?;
    let after = line + 2;
    match buf[0] {
        b'$' => match head.parse::<i64>().ok()? {
            n if n < 0 => Some(after),
            n => {
                let end = after + usize::try_from(n).ok()? + 2;
                (buf.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut end = after;
            for _ in 0..head.parse::<i64>().ok()?.max(0) {
                end += resp_len(&buf[end..])?;
            }
            Some(end)
        }
        _ => Some(after),
    }
}
