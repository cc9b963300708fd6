//! The real `rt-server` binary as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{free_port, target_dir, workspace_root};

/// Which build of rt-server a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `target/debug/rt-server`: what almost every test runs.
    Debug,
    /// `target/release/rt-server`: for the tests that measure what rt-server does within a
    /// time (a reconnect storm of thousands of connections in one second), which a debug
    /// build, about ten times slower, cannot show on a shared 2-core machine.
    Release,
}

impl Profile {
    /// The directory under `target/`.
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    /// How to build the binary.
    fn build_it(self) -> &'static str {
        match self {
            Profile::Debug => {
                "run `cargo xtask test` (or `cargo build -p rt-server --features full`) first"
            }
            Profile::Release => {
                "run `cargo xtask test` (or `cargo build --release -p rt-server --features full`) first"
            }
        }
    }
}

/// The crates the rt-server binary is built from: a newer file under one of them means the
/// binary is stale.
const SERVER_SOURCES: &[&str] = &[
    "rt-core",
    "rt-http",
    "rt-api",
    "rt-ws",
    "rt-sse",
    "rt-poll",
    "rt-backplane",
    "rt-backplane-nats",
    "rt-server",
];

/// The `rt-server` binary with every feature, `target/debug/rt-server`, which `cargo xtask
/// test` builds before the tests run (tests never run cargo). Panics, saying how to build it,
/// when it is missing or older than a source file of rt-server or its rt-* crates, so no test
/// runs a stale binary.
pub fn server_binary() -> PathBuf {
    server_binary_of(Profile::Debug)
}

/// [`server_binary`] of the build `profile` (`cargo xtask test` builds both).
pub fn server_binary_of(profile: Profile) -> PathBuf {
    static BINS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let once = match profile {
        Profile::Debug => &BINS[0],
        Profile::Release => &BINS[1],
    };
    once.get_or_init(|| {
        let build_it = profile.build_it();
        let bin = target_dir().join(profile.dir()).join("rt-server");
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| {
                panic!("no rt-server binary at {}: {e}; {build_it}", bin.display())
            });
        let crates = workspace_root().join("crates");
        for krate in SERVER_SOURCES {
            let dir = crates.join(krate);
            for file in files_under(&dir.join("src")) {
                let modified = std::fs::metadata(&file).and_then(|m| m.modified());
                if modified.is_ok_and(|m| m > built) {
                    panic!(
                        "{} is older than {}; {build_it}",
                        bin.display(),
                        file.display()
                    );
                }
            }
        }
        bin
    })
    .clone()
}

/// Every source file (`.rs`, or `.lua` as rt-backplane includes) under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "lua") {
                files.push(path);
            }
        }
    }
    files
}

/// The value of a Prometheus `sample` (`name{labels}`, exactly as rendered) in a `/metrics`
/// answer, 0 when absent.
pub(crate) fn sample_of(metrics: &[u8], sample: &str) -> f64 {
    String::from_utf8_lossy(metrics)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A running `rt-server` on 127.0.0.1. Killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    profile: Profile,
    addr: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
}

/// The options that configure who may use which channel (see [`Server::start`]).
const AUTH_FLAGS: [&str; 6] = [
    "--jwt-hs256-secret",
    "--jwt-public-key",
    "--anonymous",
    "--anonymous-subscribe",
    "--anonymous-publish",
    "--dev",
];

impl Server {
    /// Starts the server with `args` (plus `--listen` on a free port, a test API key
    /// `test-key` unless `--api-key` is given, and `--dev` unless `args` configure
    /// authentication, so that tests may use any channel) and waits until `/health` answers.
    pub async fn start(args: &[&str]) -> Server {
        Server::start_built(Profile::Debug, args).await
    }

    /// [`Server::start`] with the build `profile` of rt-server.
    pub async fn start_built(profile: Profile, args: &[&str]) -> Server {
        let configures_auth = args.iter().any(|a| AUTH_FLAGS.contains(a));
        let mut all: Vec<&str> = args.to_vec();
        if !configures_auth {
            all.push("--dev");
        }
        Server::start_exactly_built(profile, &all).await
    }

    /// [`Server::start`] without `--dev`: the server's own authentication defaults.
    pub async fn start_exactly(args: &[&str]) -> Server {
        Server::start_exactly_built(Profile::Debug, args).await
    }

    async fn start_exactly_built(profile: Profile, args: &[&str]) -> Server {
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut server = Server {
                child: None,
                profile,
                addr,
                args: args.iter().map(|s| s.to_string()).collect(),
                log: target_dir()
                    .join("rt-tests-logs")
                    .join(format!("server-{}.log", addr.port())),
            };
            if server.spawn().await {
                return server;
            }
        }
        panic!("rt-server did not start; see target/rt-tests-logs/");
    }

    async fn spawn(&mut self) -> bool {
        std::fs::create_dir_all(self.log.parent().expect("log dir")).expect("create log dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let mut cmd = Command::new(server_binary_of(self.profile));
        cmd.arg("--listen").arg(self.addr.to_string());
        if !self.args.iter().any(|a| a == "--api-key") {
            cmd.args(["--api-key", "test-key"]);
        }
        cmd.args(&self.args)
            .env("RUST_LOG", "info,rt=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn rt-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: most likely the port was taken
            }
            if let Ok((status, _, _)) = crate::http::get(&self.url("/health")).await {
                if status.is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "rt-server did not answer /health within 15 s; see {}",
            self.log.display()
        );
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A new cleartext HTTP/2 connection (prior knowledge) to the server.
    pub async fn h2c(&self) -> SendRequest<Empty<Bytes>> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("TCP connect");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender
    }

    /// `ws://127.0.0.1:port{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// `GET /health` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        let (_, _, body) = crate::http::get(&self.url("/health")).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The value of a Prometheus sample (`name{labels}`, exactly as rendered) at `/metrics`,
    /// 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, _, body) = crate::http::get(&self.url("/metrics")).await.unwrap();
        sample_of(&body, sample)
    }

    /// Waits up to 10 s until [`Server::metric`] of `sample` satisfies `ok` (metrics move as
    /// connections end, asynchronously); returns its value.
    pub async fn wait_metric(&self, sample: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(sample).await;
            if ok(value) {
                return value;
            }
            assert!(Instant::now() < deadline, "{sample} is {value} after 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The file the server logs to.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Kills the server at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `deadline` for a graceful exit; returns the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the server and starts it again on the same port with `args` instead of the
    /// arguments it had (e.g. to turn a transport off mid-test).
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.restart().await;
    }

    /// Kills the server and starts it again on the same port with the same arguments.
    pub async fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rt-server did not restart on {}", self.addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
