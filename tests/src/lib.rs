//! Support for rt's end-to-end tests: the real `rt-server` binary as a child process, a real
//! Redis, the Node packages of `tests/js`, a small HTTP client, and SSE and WebSocket readers.
//!
//! Tests never build or install anything: `cargo xtask test` first builds the `rt-server`
//! binary and installs the system packages of `tests/system-packages.txt` (nginx,
//! redis-server, Chromium), then runs the tests. A test that finds one of them missing fails
//! with the command that prepares it. What is started per test (rt-server, Redis, nginx) is
//! started here, and the Node packages and Python venvs are installed on first use.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

pub mod browser;
pub mod hook;
pub mod http;
pub mod mount;
mod nats;
pub mod nginx;
mod node;
pub mod python;
mod redis;
pub mod relay;
mod server;
mod service;
mod signals;
pub mod sse;
mod system;
mod tls;
pub mod ws;

pub use nats::{nats_url, NatsServer};
pub use node::node_modules;
pub use redis::{redis_cmd, redis_url, RedisCluster, RedisServer};
pub use server::{server_binary, server_binary_of, Profile, Server};
pub use signals::{signals_reach_every_node, SignalLog};
pub use tls::{TlsCert, TlsServer};

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Whether we run in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A free TCP port on 127.0.0.1 (free when asked; callers retry if they lose a race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A process-unique name, e.g. a Redis key prefix per test.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
