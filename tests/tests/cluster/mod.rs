//! Helpers of the multi-node tests: several real `rt-server` processes on one real backplane
//! (Redis or NATS JetStream), reached with rt_tests' WebSocket and SSE readers; and the
//! scenarios every distributed backplane must pass ([`scenarios`]).

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

pub mod scenarios;

use std::time::Duration;

use http::StatusCode;
use rt_tests::http::post_json;
use rt_tests::sse::SseStream;
pub use rt_tests::ws::{self, recv as ws_recv, Ws};
use rt_tests::Server;
use serde_json::{json, Value};

pub const T: Duration = Duration::from_secs(15);

/// `n` nodes sharing the backplane at `url` (`redis://` or `nats://`) under one fresh prefix.
pub async fn nodes(n: usize, url: &str, name: &str) -> Vec<Server> {
    nodes_with(n, &["--backplane", url], name).await
}

/// `n` nodes started with `backplane` (`--backplane URL` and the options it needs, such as
/// `--redis-tls-ca`) under one fresh prefix.
pub async fn nodes_with(n: usize, backplane: &[&str], name: &str) -> Vec<Server> {
    let prefix = prefix(name);
    let mut args = backplane.to_vec();
    args.extend(["--redis-prefix", &prefix]);
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(Server::start(&args).await);
    }
    servers
}

/// A fresh prefix valid for every backplane: a NATS stream name is at most 32 characters of
/// `A-Z a-z 0-9 _ -` (the end of [`rt_tests::unique`] is what keeps it unique).
pub fn prefix(name: &str) -> String {
    let unique = rt_tests::unique(name).replace('-', "_");
    unique[unique.len().saturating_sub(32)..].to_owned()
}

/// Publishes through `server`'s `/api/publish`; returns the status and JSON answer.
pub async fn publish(server: &Server, channel: &str, data: &str) -> (StatusCode, Value) {
    publish_json(server, &json!({ "channel": channel, "data": data })).await
}

/// Publishes `body` (the shared publish shape, e.g. with an `id`) through `server`'s
/// `/api/publish`; returns the status and JSON answer.
pub async fn publish_json(server: &Server, body: &Value) -> (StatusCode, Value) {
    post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "test-key")],
        body,
    )
    .await
}

/// `GET /health` as JSON.
pub async fn health(server: &Server) -> Value {
    let (_, _, body) = rt_tests::http::get(&server.url("/health")).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Waits until `/health` reports `status` (`ok` or `degraded`).
pub async fn wait_health(server: &Server, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = health(server).await;
        if h["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} never became {status}: {h}",
            server.addr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket on `server`, subscribed to `channels` (from `cursor` if given).
pub async fn ws_subscribe(server: &Server, channels: &[&str], cursor: Option<&str>) -> (Ws, Value) {
    let mut ws = ws::connect(&server.ws_url("/ws"), &[]).await;
    let answer = ws::subscribe(&mut ws, channels, cursor).await;
    (ws, answer)
}

/// An SSE stream on `server`: `GET /sse?{query}`, with `Last-Event-ID` when given.
pub async fn open_sse(server: &Server, query: &str, last_event_id: Option<&str>) -> SseStream {
    let headers: Vec<_> = last_event_id
        .map(|id| ("last-event-id", id))
        .into_iter()
        .collect();
    SseStream::open_ok(&server.url(&format!("/sse?{query}")), &headers).await
}

/// The offset of `channel` in a cursor string (`epoch,channel=offset,...`), and its epoch.
pub fn position(cursor: &str, channel: &str) -> (String, u64) {
    let mut parts = cursor.split(',');
    let epoch = parts.next().unwrap().to_owned();
    let offset = parts
        .find_map(|p| p.strip_prefix(&format!("{channel}=")))
        .unwrap_or_else(|| panic!("{channel} not in cursor {cursor}"))
        .parse()
        .unwrap();
    (epoch, offset)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /poll?{query}` as JSON, expecting `200`.
pub async fn poll(server: &Server, query: &str) -> Value {
    let (status, _, body) = rt_tests::http::get(&server.url(&format!("/poll?{query}")))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A `redis-server` speaking only TLS on a free port, with a fresh self-signed certificate for
/// `localhost`; stopped on drop.
pub struct TlsRedis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl TlsRedis {
    pub fn start() -> TlsRedis {
        // Makes sure redis-server is installed (the shared URL may start one).
        let _ = rt_tests::redis_url();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let port = rt_tests::free_port();
        let dir = rt_tests::target_dir().join(format!("redis-tls-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("key.pem"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-server with TLS");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "TLS redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis { child, dir, port }
    }

    /// The CA file clients must trust (the self-signed certificate itself).
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.join("cert.pem")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
