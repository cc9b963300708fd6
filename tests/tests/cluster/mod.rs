//! Helpers of the multi-node tests: several real `rt-server` processes on one real Redis, and
//! small WebSocket and SSE readers.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use rt_tests::http::post_json;
use rt_tests::Server;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

pub const T: Duration = Duration::from_secs(15);

/// `n` nodes sharing `redis_url` under one fresh key prefix.
pub async fn nodes(n: usize, redis_url: &str, name: &str) -> Vec<Server> {
    let prefix = rt_tests::unique(name);
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(Server::start(&["--backplane", redis_url, "--redis-prefix", &prefix]).await);
    }
    servers
}

/// Publishes through `server`'s `/api/publish`; returns the status and JSON answer.
pub async fn publish(server: &Server, channel: &str, data: &str) -> (StatusCode, Value) {
    post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "test-key")],
        &json!({ "channel": channel, "data": data }),
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

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket on `server`, subscribed to `channels` (from `cursor` if given).
pub async fn ws_subscribe(server: &Server, channels: &[&str], cursor: Option<&str>) -> (Ws, Value) {
    let (mut ws, _) = timeout(T, tokio_tungstenite::connect_async(server.ws_url("/ws")))
        .await
        .unwrap()
        .unwrap();
    let mut m = json!({"type": "subscribe", "channels": channels});
    if let Some(c) = cursor {
        m["cursor"] = json!(c);
    }
    ws.send(Message::text(m.to_string())).await.unwrap();
    let answer = ws_recv(&mut ws).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    (ws, answer)
}

/// The next WebSocket JSON message that is not a heartbeat.
pub async fn ws_recv(ws: &mut Ws) -> Value {
    loop {
        let msg = timeout(T, ws.next())
            .await
            .expect("no WebSocket message in time");
        match msg.expect("socket ended").expect("socket error") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "heartbeat" {
                    return v;
                }
            }
            Message::Close(f) => panic!("unexpected close {f:?}"),
            _ => {}
        }
    }
}

/// An SSE stream read over plain HTTP, block by block.
pub struct Sse {
    body: hyper::body::Incoming,
    buffer: String,
}

impl Sse {
    /// `GET /sse?{query}`, with `Last-Event-ID` when given.
    pub async fn open(server: &Server, query: &str, last_event_id: Option<&str>) -> Sse {
        use hyper_util::client::legacy::Client;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let mut req = http::Request::get(server.url(&format!("/sse?{query}")));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let req = req.body(http_body_util::Empty::new()).unwrap();
        let res = timeout(T, client.request(req)).await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        Sse {
            body: res.into_body(),
            buffer: String::new(),
        }
    }

    /// The next block (without comments) as `field -> value`.
    pub async fn block(&mut self) -> HashMap<String, String> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let fields: HashMap<String, String> = block
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(':'))
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()))
                    .collect();
                if !fields.is_empty() {
                    return fields;
                }
                continue;
            }
            let frame = timeout(T, self.body.frame())
                .await
                .expect("no SSE data in time")
                .expect("SSE stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
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
