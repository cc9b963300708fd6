//! A real Redis for the tests: `REDIS_URL` when set, otherwise a `redis-server` of the test's
//! own on a free port (installed with apt when missing and running as root), stopped on drop.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis to test against.
pub struct Redis {
    url: String,
    own: Option<Own>,
}

struct Own {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistent: bool,
}

impl Redis {
    /// `REDIS_URL` if set, else a fresh server of our own.
    pub fn any() -> Redis {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Redis { url, own: None },
            _ => Redis::own(false),
        }
    }

    /// A server of our own (so it can be stopped), without persistence unless `persistent`
    /// (append-only file, so a restart keeps the data).
    pub fn own(persistent: bool) -> Redis {
        ensure_installed();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("rt-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut own = Own {
            child: None,
            port,
            dir,
            persistent,
        };
        own.start();
        Redis {
            url: format!("redis://127.0.0.1:{port}"),
            own: Some(own),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills our server (as a crash would: no final save).
    pub fn stop(&mut self) {
        self.own
            .as_mut()
            .expect("only our own Redis can be stopped")
            .stop();
    }

    /// Starts our server again on the same port.
    pub fn restart(&mut self) {
        self.own
            .as_mut()
            .expect("only our own Redis can be restarted")
            .start();
    }

    /// Sends one command with `redis-cli`-like inline syntax and returns the raw reply.
    pub fn cmd(&self, args: &[&str]) -> String {
        let addr = self
            .url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let mut s = TcpStream::connect(&addr).unwrap();
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
}

impl Own {
    fn start(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--dir", self.dir.to_str().unwrap()])
        .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
        .args(["--appendfsync", "always"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server could not be started"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ensure_installed() {
    let found = || {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return;
    }
    // Tests never skip for want of Redis: install it the way CI's machines can.
    let _ = Command::new("apt-get")
        .args(["install", "-y", "redis-server"])
        .status();
    if !found() {
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "redis-server"])
            .status();
    }
    assert!(
        found(),
        "redis-server is not installed and apt-get could not install it; install Redis or set REDIS_URL"
    );
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn prefix(test: &str) -> String {
    format!("rt-test-{test}-{:x}", rt_core::Epoch::random().0)
}
