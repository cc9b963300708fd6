//! The conformance suite (issue #17, part 1): every scenario is written once, as data plus one
//! function over a [`Session`], and runs over every transport mode: WebSocket, SSE over
//! HTTP/1.1, SSE over HTTP/2 (h2c prior knowledge), long polling and short polling. The
//! transports are mounted in-process on `127.0.0.1:0` through their tower Services (plain
//! hyper, as in tests/embedding.rs), one fresh hub per cell.
//!
//! Each driver maps what it observed to short canonical words (`1013 + resume`,
//! `400 invalid_cursor`, ...). The expected words are not in this file: they are the
//! "Conformance" table of docs/protocol.md, which the test parses and compares cell by cell,
//! so the documentation and the behaviour cannot drift apart.
//!
//! The test runs on a current-thread runtime: a burst of publishes through the in-memory hub
//! never yields, so "the reader fell behind" is deterministic, not a race.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rt_core::{Backplane, Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_http::{Edge, TokenVerifier};
use rt_tests::mount::Routes;
use rt_tests::ws;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

// ---------------------------------------------------------------------------------------
// The server under test

const SECRET: &[u8] = b"rt conformance secret";
/// Live events a subscription may fall behind (`--queue-capacity`).
const QUEUE: usize = 8;
/// Retained events per channel (`--history-size`).
const HISTORY: usize = 16;
/// Most channels per subscription (`--max-channels`).
const MAX_CHANNELS: usize = 4;
/// Largest payload (`--max-payload`).
const MAX_PAYLOAD: usize = 1024;
/// Events per poll answer (`--poll-batch`).
const POLL_BATCH: usize = 5;
/// How long any single wait of the suite may take.
const WAIT: Duration = Duration::from_secs(5);

/// The three transports over one hub, served by plain hyper on 127.0.0.1:0.
struct App {
    addr: SocketAddr,
    hub: Hub,
    backplane: Arc<MemoryBackplane>,
    server: JoinHandle<()>,
}

impl App {
    async fn start() -> App {
        let backplane = Arc::new(MemoryBackplane::new(Retention {
            max_len: HISTORY,
            max_age: Duration::from_secs(300),
        }));
        App::on(backplane).await
    }

    /// A node on `backplane` (a second one shares the first one's history).
    async fn on(backplane: Arc<MemoryBackplane>) -> App {
        let hub = Hub::new(
            backplane.clone() as Arc<dyn Backplane>,
            HubConfig {
                queue_capacity: QUEUE,
                max_channels: MAX_CHANNELS,
                page_size: 4,
                max_payload: MAX_PAYLOAD,
            },
        );
        let edge =
            Edge::default().authenticator(Arc::new(TokenVerifier::hs256(SECRET).expect("key")));
        let routes = Routes::new(
            &hub,
            edge,
            rt_ws::Config::default().close_timeout(Duration::from_secs(1)),
            rt_sse::Config::default().retry(Duration::from_millis(200)),
            rt_poll::Config::default().batch(POLL_BATCH),
        );
        let (tcp, addr) = rt_tests::mount::listen().await;
        let server = tokio::spawn(rt_tests::mount::serve(tcp, routes, |stream| stream));
        App {
            addr,
            hub,
            backplane,
            server,
        }
    }

    /// Publishes through the hub, as the application's own code would; the event's offset.
    async fn publish(&self, channel: &str, payload: Payload) -> u64 {
        let event = NewEvent::new(Channel::new(channel).unwrap(), payload);
        self.hub
            .publish(event)
            .await
            .expect("publish")
            .event
            .offset()
    }

    async fn text(&self, channel: &str, data: &str) -> u64 {
        self.publish(channel, Payload::text(data.to_owned())).await
    }

    fn epoch(&self) -> String {
        self.backplane.epoch().to_string()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An HS256 token for every `c:` channel, valid for `secs` seconds.
fn token(secs: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims = json!({"sub": "conformance", "exp": now.as_secs() + secs,
        "subscribe": ["c:*"], "publish": ["c:*"]});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign a token")
}

// ---------------------------------------------------------------------------------------
// The drivers: one session type, one branch per transport mode

/// A transport mode: one column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ws,
    SseH1,
    SseH2,
    LongPoll,
    ShortPoll,
}

/// The columns of the table, in order, with their headings.
const MODES: [(Mode, &str); 5] = [
    (Mode::Ws, "WebSocket"),
    (Mode::SseH1, "SSE HTTP/1.1"),
    (Mode::SseH2, "SSE HTTP/2"),
    (Mode::LongPoll, "long poll"),
    (Mode::ShortPoll, "short poll"),
];

impl Mode {
    fn is_sse(self) -> bool {
        matches!(self, Mode::SseH1 | Mode::SseH2)
    }
}

/// Where a session starts.
#[derive(Debug, Clone)]
enum Start {
    Live,
    Earliest,
    Cursor(String),
}

/// An SSE block: `id:`, `event:`, `data:`.
type Block = (Option<String>, Option<String>, Option<String>);

/// One event as a client received it: `form` says how the payload travelled.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    channel: String,
    offset: u64,
    data: Vec<u8>,
    form: &'static str,
}

/// What a session yields.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event(Ev),
    /// A resync notice naming channels (SSE `rt.resync`, WebSocket `resync`, a poll
    /// answer's `resynced` after the first).
    Resync(Vec<String>),
    /// A poll answered with nothing.
    Empty,
    /// The transport's end signal, in canonical words (`1001`, `rt.shutdown`, `401 token_expired`).
    End(String),
}

/// The SSE side of a session: the body of one `GET /sse`.
struct Sse {
    body: Incoming,
    buf: String,
    /// Keeps an HTTP/2 connection's sender alive.
    _h2: Option<hyper::client::conn::http2::SendRequest<Empty<Bytes>>>,
}

/// The polling side of a session: the request parameters and the answers not yet handed out.
struct Polls {
    channels: String,
}

enum Inner {
    /// SSE before its request is answered.
    Unopened,
    Ws(Box<ws::Ws>),
    Sse(Sse),
    Poll(Polls),
}

/// One client of one transport.
struct Session {
    mode: Mode,
    addr: SocketAddr,
    token: String,
    inner: Inner,
    /// The session's cursor: epoch and offset per channel, in the order the server gave.
    epoch: String,
    offsets: Vec<(String, u64)>,
    /// SSE and polls: the server's own cursor string (the last `id:`, the last answer's).
    cursor_text: Option<String>,
    /// WebSocket `subscribed` / the first poll answer: `recovered` and `resynced`.
    joined: Option<(bool, Vec<String>)>,
    pending: VecDeque<Item>,
    /// Polls: how many answers carried events.
    answers: usize,
}

fn channels_of(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("(no JSON error: {})", String::from_utf8_lossy(body)))
}

/// An event object (WebSocket text, poll answer) as an [`Ev`].
fn json_event(v: &Value, text_form: &'static str) -> Ev {
    let data = v["data"].as_str().unwrap_or_default();
    let (data, form) = if v["encoding"] == "base64" {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|_| b"(bad base64)".to_vec());
        (bytes, "encoding:base64")
    } else {
        (data.as_bytes().to_vec(), text_form)
    };
    Ev {
        channel: v["channel"].as_str().unwrap_or_default().to_owned(),
        offset: v["offset"].as_u64().unwrap_or_default(),
        data,
        form,
    }
}

impl Session {
    /// Opens a session on `channels` from `start`; `Err` is the refusal in canonical words.
    async fn open(
        app: &App,
        mode: Mode,
        token: &str,
        channels: &[&str],
        start: Start,
    ) -> Result<Session, String> {
        let inner = match mode {
            Mode::Ws => {
                let url = format!("ws://{}/ws", app.addr);
                let auth = format!("Bearer {token}");
                let ws = ws::try_connect(&url, &[("authorization", &auth)])
                    .await
                    .map_err(|status| format!("{status}"))?;
                Inner::Ws(Box::new(ws))
            }
            Mode::SseH1 | Mode::SseH2 => Inner::Unopened,
            Mode::LongPoll | Mode::ShortPoll => Inner::Poll(Polls {
                channels: channels.join(","),
            }),
        };
        let mut s = Session {
            mode,
            addr: app.addr,
            token: token.to_owned(),
            inner,
            epoch: String::new(),
            offsets: Vec::new(),
            cursor_text: None,
            joined: None,
            pending: VecDeque::new(),
            answers: 0,
        };
        s.join(channels, start).await?;
        Ok(s)
    }

    async fn join(&mut self, channels: &[&str], start: Start) -> Result<(), String> {
        match self.mode {
            Mode::Ws => {
                let mut m = json!({"type": "subscribe", "channels": channels});
                match &start {
                    Start::Live => {}
                    Start::Earliest => m["cursor"] = json!("earliest"),
                    Start::Cursor(c) => m["cursor"] = json!(c),
                }
                let Inner::Ws(w) = &mut self.inner else {
                    unreachable!()
                };
                ws::send(w, m).await;
                let answer = timeout(WAIT, ws::next(w))
                    .await
                    .map_err(|_| "no answer to subscribe".to_owned())?;
                match answer {
                    Ok(v) if v["type"] == "subscribed" => {
                        self.set_cursor(v["cursor"].as_str().unwrap_or_default());
                        self.joined = Some((
                            v["recovered"].as_bool().unwrap_or(false),
                            channels_of(&v["resynced"]),
                        ));
                        Ok(())
                    }
                    Ok(v) if v["type"] == "error" => {
                        Err(format!("error {}", v["code"].as_str().unwrap_or("?")))
                    }
                    Ok(v) => Err(format!("unexpected {v}")),
                    Err((code, reason)) => Err(format!("{code} {reason}")),
                }
            }
            Mode::SseH1 | Mode::SseH2 => {
                let mut path = format!("/sse?channel={}", channels.join(","));
                let mut req =
                    Request::builder().header("authorization", format!("Bearer {}", self.token));
                match &start {
                    Start::Live => {}
                    Start::Earliest => path.push_str("&lastEventId=earliest"),
                    Start::Cursor(c) => req = req.header("last-event-id", c.as_str()),
                }
                let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                let (res, h2) = if self.mode == Mode::SseH1 {
                    let req = req.uri(path).header("host", self.addr.to_string());
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    let req = req.body(Empty::<Bytes>::new()).unwrap();
                    (timeout(WAIT, sender.send_request(req)).await, None)
                } else {
                    let req = req.uri(format!("http://{}{path}", self.addr));
                    let (mut sender, conn) = hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(tcp),
                    )
                    .await
                    .unwrap();
                    tokio::spawn(conn);
                    let req = req.body(Empty::<Bytes>::new()).unwrap();
                    let res = timeout(WAIT, sender.send_request(req)).await;
                    (res, Some(sender))
                };
                let res = res
                    .map_err(|_| "no SSE answer".to_owned())?
                    .map_err(|e| format!("SSE request failed: {e}"))?;
                let want = if self.mode == Mode::SseH1 {
                    http::Version::HTTP_11
                } else {
                    http::Version::HTTP_2
                };
                assert_eq!(res.version(), want, "the SSE stream's HTTP version");
                let status = res.status();
                let body = res.into_body();
                if status != StatusCode::OK {
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    return Err(format!("{} {}", status.as_u16(), error_code(&bytes)));
                }
                self.inner = Inner::Sse(Sse {
                    body,
                    buf: String::new(),
                    _h2: h2,
                });
                // The first block is `rt.open`.
                match self.sse_block(WAIT).await {
                    Some(Some((id, Some(event), _))) if event == "rt.open" => {
                        if let Some(id) = id {
                            self.set_cursor(&id);
                            self.cursor_text = Some(id);
                        }
                        Ok(())
                    }
                    other => Err(format!("no rt.open first: {other:?}")),
                }
            }
            Mode::LongPoll | Mode::ShortPoll => {
                let cursor = match &start {
                    Start::Live => String::new(),
                    Start::Earliest => "earliest".to_owned(),
                    Start::Cursor(c) => c.clone(),
                };
                self.cursor_text = Some(cursor);
                match self.poll_once(Duration::ZERO).await {
                    Ok((recovered, resynced)) => {
                        self.joined = Some((recovered, resynced));
                        Ok(())
                    }
                    Err(refusal) => Err(refusal),
                }
            }
        }
    }

    /// One poll with `wait`: queues its events, returns `recovered` and `resynced`.
    async fn poll_once(&mut self, wait: Duration) -> Result<(bool, Vec<String>), String> {
        let Inner::Poll(p) = &self.inner else {
            unreachable!()
        };
        let mut url = format!(
            "http://{}/poll?channel={}&timeout={}",
            self.addr,
            p.channels,
            wait.as_secs_f64()
        );
        if let Some(c) = self.cursor_text.as_deref().filter(|c| !c.is_empty()) {
            url.push_str(&format!("&cursor={c}"));
        }
        let auth = format!("Bearer {}", self.token);
        let (status, _, body) =
            rt_tests::http::send(Method::GET, &url, &[("authorization", &auth)], Bytes::new())
                .await
                .map_err(|e| format!("poll failed: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("{} {}", status.as_u16(), error_code(&body)));
        }
        let v: Value = serde_json::from_slice(&body).expect("a JSON poll answer");
        if v["events"].as_array().is_some_and(|e| !e.is_empty()) {
            self.answers += 1;
        }
        for e in v["events"].as_array().expect("events") {
            self.pending.push_back(Item::Event(json_event(e, "text")));
        }
        self.cursor_text = v["cursor"].as_str().map(str::to_owned);
        Ok((
            v["recovered"].as_bool().unwrap_or(false),
            channels_of(&v["resynced"]),
        ))
    }

    /// The next SSE block: `(id, event, data)`; `None` at `within`, `Some(None)` when the
    /// stream ended.
    async fn sse_block(&mut self, within: Duration) -> Option<Option<Block>> {
        let Inner::Sse(s) = &mut self.inner else {
            unreachable!()
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = s.buf.find("\n\n") {
                let block: String = s.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None::<String>);
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "id" => id = Some(value),
                        "event" => event = Some(value),
                        "data" => {
                            data = Some(match data {
                                None => value,
                                Some(d) => format!("{d}\n{value}"),
                            })
                        }
                        _ => {} // retry, comments
                    }
                }
                if id.is_none() && event.is_none() && data.is_none() {
                    continue;
                }
                return Some(Some((id, event, data)));
            }
            match tokio::time::timeout_at(deadline, s.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        s.buf.push_str(&String::from_utf8_lossy(d));
                    }
                }
                Ok(_) => return Some(None),
                Err(_) => return None,
            }
        }
    }

    /// The next item, or `None` when nothing comes within `within`. A poll session polls
    /// once per call (long: held up to `within`; short: `timeout=0`, after a short pause).
    async fn next(&mut self, within: Duration) -> Option<Item> {
        if let Some(item) = self.pending.pop_front() {
            self.track(&item);
            return Some(item);
        }
        let item = match self.mode {
            Mode::Ws => {
                let Inner::Ws(w) = &mut self.inner else {
                    unreachable!()
                };
                let v = timeout(within, ws::next(w)).await.ok()?;
                match v {
                    Err((1008, reason)) => Item::End(format!("1008 {reason}")),
                    // `1013 too slow` (a stalled write), not a bare code.
                    Err((1013, reason)) => {
                        Item::End(format!("1013 {}", reason.split(':').next().unwrap_or("")))
                    }
                    Err((code, _)) => Item::End(code.to_string()),
                    Ok(v) => self.ws_item(v)?,
                }
            }
            Mode::SseH1 | Mode::SseH2 => {
                let (id, event, data) = match self.sse_block(within).await? {
                    Some(block) => block,
                    None => return Some(Item::End("end".into())),
                };
                if let Some(id) = id {
                    self.cursor_text = Some(id);
                }
                let data = data.unwrap_or_default();
                let event = event.unwrap_or_else(|| "message".into());
                match event.as_str() {
                    "rt.resync" => {
                        let v: Value = serde_json::from_str(&data).unwrap_or_default();
                        Item::Resync(channels_of(&v["channels"]))
                    }
                    e if e.starts_with("rt.") => Item::End(e.to_owned()),
                    e => {
                        let (data, form) = match e.strip_suffix(";base64") {
                            Some(_) => (
                                base64::engine::general_purpose::STANDARD
                                    .decode(&data)
                                    .unwrap_or_else(|_| b"(bad base64)".to_vec()),
                                "event: message;base64",
                            ),
                            None => (data.into_bytes(), "text"),
                        };
                        // The channel and offset are those the new `id:` moved.
                        let (channel, offset) = self.moved_by_id();
                        Item::Event(Ev {
                            channel,
                            offset,
                            data,
                            form,
                        })
                    }
                }
            }
            Mode::LongPoll | Mode::ShortPoll => {
                let wait = if self.mode == Mode::LongPoll {
                    within
                } else {
                    tokio::time::sleep(within.min(Duration::from_millis(50))).await;
                    Duration::ZERO
                };
                match self.poll_once(wait).await {
                    Err(e) => Item::End(e),
                    Ok((_, resynced)) if !resynced.is_empty() => Item::Resync(resynced),
                    Ok(_) => match self.pending.pop_front() {
                        Some(item) => item,
                        None => Item::Empty,
                    },
                }
            }
        };
        self.track(&item);
        Some(item)
    }

    fn ws_item(&mut self, v: Value) -> Option<Item> {
        if let Some(header) = v.get("binary") {
            let data: Vec<u8> = v["payload"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            return Some(Item::Event(Ev {
                channel: header["channel"].as_str().unwrap_or_default().to_owned(),
                offset: header["offset"].as_u64().unwrap_or_default(),
                data,
                form: "binary frame",
            }));
        }
        Some(match v["type"].as_str() {
            Some("event") => Item::Event(json_event(&v, "text")),
            Some("resync") => {
                self.set_cursor(v["cursor"].as_str().unwrap_or_default());
                Item::Resync(channels_of(&v["channels"]))
            }
            _ => Item::End(format!("unexpected {v}")),
        })
    }

    /// SSE: the channel whose offset the latest `id:` moved, and its offset.
    fn moved_by_id(&mut self) -> (String, u64) {
        let id = self.cursor_text.clone().unwrap_or_default();
        let before = self.offsets.clone();
        self.set_cursor(&id);
        for (c, o) in &self.offsets {
            if *o > 0 && !before.iter().any(|(b, bo)| b == c && bo == o) {
                return (c.clone(), *o);
            }
        }
        (String::new(), 0)
    }

    fn set_cursor(&mut self, cursor: &str) {
        let mut parts = cursor.split(',');
        self.epoch = parts.next().unwrap_or_default().to_owned();
        self.offsets = parts
            .filter_map(|p| p.rsplit_once('='))
            .map(|(c, o)| (c.to_owned(), o.parse().unwrap_or_default()))
            .collect();
    }

    /// The WebSocket client keeps its own cursor, from the events it processed.
    fn track(&mut self, item: &Item) {
        if self.mode != Mode::Ws {
            return;
        }
        if let Item::Event(e) = item {
            match self.offsets.iter_mut().find(|(c, _)| *c == e.channel) {
                Some(slot) => slot.1 = e.offset,
                None => self.offsets.push((e.channel.clone(), e.offset)),
            }
        }
    }

    /// The cursor to resume from: the server's (SSE `id:`, poll answer) or the client's own
    /// (WebSocket).
    fn cursor(&self) -> String {
        if self.mode != Mode::Ws {
            return self.cursor_text.clone().unwrap_or_default();
        }
        let mut c = self.epoch.clone();
        for (ch, o) in &self.offsets {
            c.push_str(&format!(",{ch}={o}"));
        }
        c
    }

    /// Publishes `body` (the shared publish JSON) over this transport: the `published`
    /// answer, or the refusal in canonical words. SSE cannot publish.
    async fn publish(&mut self, body: Value) -> Result<Value, String> {
        match &mut self.inner {
            Inner::Sse(_) => Err("no publish".into()),
            Inner::Unopened => unreachable!(),
            Inner::Ws(w) => {
                let mut m = body;
                m["type"] = json!("publish");
                ws::send(w, m).await;
                self.publish_wait().await
            }
            Inner::Poll(_) => {
                let url = format!("http://{}/poll/publish", self.addr);
                let auth = format!("Bearer {}", self.token);
                let (status, _, bytes) = rt_tests::http::send(
                    Method::POST,
                    &url,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.to_string(),
                )
                .await
                .map_err(|e| format!("publish failed: {e}"))?;
                if status != StatusCode::OK {
                    return Err(format!("{} {}", status.as_u16(), error_code(&bytes)));
                }
                Ok(serde_json::from_slice(&bytes).expect("a JSON answer"))
            }
        }
    }

    /// Publishes binary `bytes` on `channel` the transport's own way (WebSocket: a binary
    /// frame; polls: `encoding: base64`): how it was sent, or the refusal.
    async fn publish_binary(
        &mut self,
        channel: &str,
        bytes: &[u8],
    ) -> Result<&'static str, String> {
        match &mut self.inner {
            Inner::Ws(w) => {
                use futures_util::SinkExt;
                let header = json!({"type": "publish", "channel": channel}).to_string();
                let mut frame = (header.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(header.as_bytes());
                frame.extend_from_slice(bytes);
                let msg = tokio_tungstenite::tungstenite::Message::Binary(frame.into());
                timeout(WAIT, w.send(msg))
                    .await
                    .map_err(|_| "send timed out".to_owned())?
                    .map_err(|e| format!("send failed: {e}"))?;
                self.publish_wait().await.map(|_| "binary frame")
            }
            _ => {
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                self.publish(json!({"channel": channel, "data": data, "encoding": "base64"}))
                    .await
                    .map(|_| "encoding:base64")
            }
        }
    }

    /// WebSocket: keeps reading (queuing events) until the publish is answered.
    async fn publish_wait(&mut self) -> Result<Value, String> {
        loop {
            let Inner::Ws(w) = &mut self.inner else {
                unreachable!()
            };
            let v = timeout(WAIT, ws::next(w))
                .await
                .map_err(|_| "no publish answer".to_owned())?
                .map_err(|(code, reason)| format!("{code} {reason}"))?;
            match v["type"].as_str() {
                Some("published") => return Ok(v),
                Some("error") => {
                    return Err(format!("error {}", v["code"].as_str().unwrap_or("?")))
                }
                _ => {
                    if let Some(item) = self.ws_item(v) {
                        self.pending.push_back(item);
                    }
                }
            }
        }
    }

    /// Reads events until `n` have come (skipping empty poll answers), or an end signal, or
    /// `WAIT` has passed: the events, and what stopped the read (`None`: `n` events came).
    async fn events(&mut self, n: usize) -> (Vec<Ev>, Option<String>) {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (got, Some("timeout".into()));
            }
            match self.next(left.min(Duration::from_secs(2))).await {
                Some(Item::Event(e)) => got.push(e),
                Some(Item::End(sig)) => return (got, Some(sig)),
                Some(Item::Resync(c)) => return (got, Some(format!("resync {c:?}"))),
                Some(Item::Empty) | None => {}
            }
        }
        (got, None)
    }
}

/// `(channel, data)` of events, for comparisons.
fn pairs(events: &[Ev]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.channel.clone(),
                String::from_utf8_lossy(&e.data).into_owned(),
            )
        })
        .collect()
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(c, d)| ((*c).to_owned(), (*d).to_owned()))
        .collect()
}

/// Groups `(channel, data)` by channel, keeping each channel's order.
fn per_channel(pairs: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (c, d) in pairs {
        m.entry(c.clone()).or_default().push(d.clone());
    }
    m
}

/// Whether `got` are exactly `want`, in order per channel.
fn same_events(got: &[Ev], want_: &[(&str, &str)]) -> bool {
    per_channel(&pairs(got)) == per_channel(&want(want_))
}

fn describe(got: &[Ev], stop: &Option<String>) -> String {
    format!("got {:?}, then {stop:?}", pairs(got))
}

/// `recovered:<bool>, ` where the transport says it (WebSocket `subscribed`, poll answers).
fn recovered_words(s: &Session) -> String {
    match &s.joined {
        Some((r, _)) => format!("recovered:{r}, "),
        None => String::new(),
    }
}

/// A list of channels: `[lost]` when it is exactly the lost ones.
fn names(list: &[String], lost: &[&str]) -> String {
    let mut l = list.to_vec();
    l.sort();
    let mut w: Vec<String> = lost.iter().map(|c| (*c).to_owned()).collect();
    w.sort();
    if l == w {
        "[lost]".into()
    } else {
        format!("{l:?}")
    }
}

/// How a successful publish is answered over each transport.
fn published_word(mode: Mode) -> &'static str {
    if mode == Mode::Ws {
        "published"
    } else {
        "200 published"
    }
}

const A: &str = "c:a";
const B: &str = "c:b";
const C: &str = "c:c";

macro_rules! open {
    ($app:expr, $mode:expr, $token:expr, $channels:expr, $start:expr) => {
        match Session::open($app, $mode, $token, $channels, $start).await {
            Ok(s) => s,
            Err(refusal) => return format!("refused: {refusal}"),
        }
    };
}

/// After `s` has read what it should, a new event comes next, alone: nothing was
/// delivered twice.
async fn then_only(app: &App, s: &mut Session, channel: &str) -> Result<(), String> {
    app.text(channel, "sentinel").await;
    let (got, stop) = s.events(1).await;
    if stop.is_some() || pairs(&got) != want(&[(channel, "sentinel")]) {
        return Err(format!("after: {}", describe(&got, &stop)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The scenarios: each written once, over any mode

/// Live events on several channels arrive, each channel in order.
async fn live(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A, B, C], Start::Live);
    let sent = [(A, "a1"), (B, "b1"), (A, "a2"), (C, "c1"), (B, "b2")];
    for (c, d) in sent {
        app.text(c, d).await;
    }
    let (got, stop) = s.events(sent.len()).await;
    if stop.is_some() || !same_events(&got, &sent) {
        return describe(&got, &stop);
    }
    "in order".into()
}

/// A client reads, is cut, misses events, and resumes from its cursor: exactly the missed ones.
async fn resume(mode: Mode) -> String {
    let app = App::start().await;
    let t = token(600);
    let mut s = open!(&app, mode, &t, &[A, B], Start::Live);
    let before = [(A, "a1"), (B, "b1")];
    for (c, d) in before {
        app.text(c, d).await;
    }
    let (got, stop) = s.events(2).await;
    if stop.is_some() || !same_events(&got, &before) {
        return format!("before the cut: {}", describe(&got, &stop));
    }
    let cursor = s.cursor();
    drop(s);
    let missed = [(A, "a2"), (B, "b2"), (A, "a3")];
    for (c, d) in missed {
        app.text(c, d).await;
    }
    let mut s = open!(&app, mode, &t, &[A, B], Start::Cursor(cursor));
    let (got, stop) = s.events(3).await;
    if stop.is_some() || !same_events(&got, &missed) {
        return format!("resumed: {}", describe(&got, &stop));
    }
    if let Err(e) = then_only(&app, &mut s, B).await {
        return e;
    }
    format!("{}exact", recovered_words(&s))
}

/// `earliest`: everything retained, then live.
async fn earliest(mode: Mode) -> String {
    let app = App::start().await;
    let retained = [(A, "a1"), (B, "b1"), (A, "a2")];
    for (c, d) in retained {
        app.text(c, d).await;
    }
    let mut s = open!(&app, mode, &token(600), &[A, B], Start::Earliest);
    let (got, stop) = s.events(3).await;
    if stop.is_some() || !same_events(&got, &retained) {
        return describe(&got, &stop);
    }
    if let Err(e) = then_only(&app, &mut s, A).await {
        return e;
    }
    format!("{}all retained", recovered_words(&s))
}

/// Resumes from `cursor` on `channels`, where continuity is lost on `lost` only: how the loss
/// is told, and that the other channels are replayed (`replayed`) and every channel goes on
/// live.
async fn resync(
    app: &App,
    mode: Mode,
    channels: &[&str],
    cursor: String,
    lost: &[&str],
    replayed: &[(&str, &str)],
) -> String {
    let mut s = open!(app, mode, &token(600), channels, Start::Cursor(cursor));
    for c in channels {
        app.text(c, "next").await;
    }
    let mut expected: Vec<(&str, &str)> = replayed.to_vec();
    expected.extend(channels.iter().map(|c| (*c, "next")));
    let mut notices = Vec::new();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < expected.len() && Instant::now() < deadline {
        match s.next(Duration::from_millis(500)).await {
            Some(Item::Event(e)) => got.push(e),
            Some(Item::Resync(c)) => notices.push(c),
            Some(Item::End(sig)) => return format!("ended: {sig}"),
            Some(Item::Empty) | None => {}
        }
    }
    let mut words = Vec::new();
    if let Some((recovered, resynced)) = &s.joined {
        words.push(format!(
            "recovered:{recovered}, resynced={}",
            names(resynced, lost)
        ));
    }
    let notice = match mode {
        Mode::Ws => "resync",
        Mode::SseH1 | Mode::SseH2 => "rt.resync",
        _ => "resynced",
    };
    for n in &notices {
        words.push(format!("{notice} {}", names(n, lost)));
    }
    if !same_events(&got, &expected) {
        words.push(format!("events {:?}", pairs(&got)));
    }
    words.join(" + ")
}

/// A cursor older than the retained history on one channel.
async fn resync_old(mode: Mode) -> String {
    let app = App::start().await;
    for i in 0..HISTORY + 4 {
        app.text(A, &format!("a{i}")).await;
    }
    app.text(B, "b1").await;
    let cursor = format!("{},{A}=1,{B}=0", app.epoch());
    resync(&app, mode, &[A, B], cursor, &[A], &[(B, "b1")]).await
}

/// A cursor of another epoch (history was lost); a channel it does not name starts live.
async fn resync_epoch(mode: Mode) -> String {
    let app = App::start().await;
    for (c, d) in [(A, "a1"), (A, "a2"), (B, "b1")] {
        app.text(c, d).await;
    }
    let other = if app.epoch() == "1" { "2" } else { "1" };
    let cursor = format!("{other},{A}=1,{B}=1");
    resync(&app, mode, &[A, B, C], cursor, &[A, B], &[]).await
}

/// A cursor ahead of a channel's head.
async fn resync_future(mode: Mode) -> String {
    let app = App::start().await;
    for (c, d) in [(A, "a1"), (A, "a2"), (B, "b1")] {
        app.text(c, d).await;
    }
    let cursor = format!("{},{A}=99,{B}=0", app.epoch());
    resync(&app, mode, &[A, B], cursor, &[A], &[(B, "b1")]).await
}

/// A reader that falls more than the queue capacity behind a burst that history still holds
/// (issue #17, part 3): it is not closed, and gets the whole burst in order, on the same
/// connection, then live.
async fn lagged(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    app.text(A, "first").await;
    let (got, stop) = s.events(1).await;
    if stop.is_some() || got.len() != 1 {
        return format!("first: {}", describe(&got, &stop));
    }
    // A burst while the reader waits: the hub publishes without yielding, so the reader
    // cannot take anything before the burst is over.
    let burst: Vec<String> = (0..QUEUE + 4).map(|i| format!("burst {i}")).collect();
    let answers = s.answers;
    let ((got, stop), ()) = tokio::join!(s.events(burst.len()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for d in &burst {
            app.text(A, d).await;
        }
    });
    let all: Vec<(&str, &str)> = burst.iter().map(|d| (A, d.as_str())).collect();
    if stop.is_some() || !same_events(&got, &all) {
        return describe(&got, &stop);
    }
    let answers = s.answers - answers;
    if let Err(e) = then_only(&app, &mut s, A).await {
        return e;
    }
    if matches!(mode, Mode::LongPoll | Mode::ShortPoll) {
        return format!("caught up, {answers} answers");
    }
    "caught up in place".into()
}

/// A reader that falls behind a burst longer than history: told which channel has a hole,
/// in place, then live from the head.
async fn lagged_past_history(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A, B], Start::Live);
    app.text(A, "first").await;
    let (got, stop) = s.events(1).await;
    if stop.is_some() || got.len() != 1 {
        return format!("first: {}", describe(&got, &stop));
    }
    let burst: Vec<String> = (0..HISTORY + 4).map(|i| format!("burst {i}")).collect();
    let first_news = async {
        let deadline = Instant::now() + WAIT;
        loop {
            match s.next(Duration::from_millis(500)).await {
                // A short poll before the burst.
                Some(Item::Empty) | None if Instant::now() < deadline => {}
                other => return other,
            }
        }
    };
    let (item, ()) = tokio::join!(first_news, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for d in &burst {
            app.text(A, d).await;
        }
    });
    let notice = match mode {
        Mode::Ws => "resync",
        Mode::SseH1 | Mode::SseH2 => "rt.resync",
        _ => "resynced",
    };
    let said = match item {
        Some(Item::Resync(channels)) => format!("{notice} {}", names(&channels, &[A])),
        other => return format!("first after the burst: {other:?}"),
    };
    for c in [A, B] {
        if let Err(e) = then_only(&app, &mut s, c).await {
            return format!("{said}, then {e}");
        }
    }
    format!("{said} + live")
}

/// `hub.begin_shutdown()`: the transport's signal, with a cursor that resumes exactly on
/// another node of the same backplane.
async fn shutdown(mode: Mode) -> String {
    let app = App::start().await;
    let t = token(600);
    let mut s = open!(&app, mode, &t, &[A, B], Start::Live);
    app.text(A, "a1").await;
    let (got, stop) = s.events(1).await;
    if stop.is_some() || got.len() != 1 {
        return format!("first: {}", describe(&got, &stop));
    }
    let started = Instant::now();
    let (signal, ()) = tokio::join!(
        async {
            while started.elapsed() < WAIT {
                match s.next(Duration::from_secs(2)).await {
                    Some(Item::End(sig)) => return sig,
                    // A poll answered once the hub closes, before its timeout.
                    Some(Item::Empty) if app.hub.is_closing() => {
                        let held = started.elapsed() - Duration::from_millis(200);
                        return if held < Duration::from_secs(1) {
                            "answered".into()
                        } else {
                            format!("answered after {held:?}")
                        };
                    }
                    Some(Item::Empty) | None => {}
                    Some(other) => return format!("unexpected {other:?}"),
                }
            }
            "no signal".into()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.hub.begin_shutdown();
        }
    );
    let cursor = s.cursor();
    drop(s);
    let missed = [(B, "b1"), (A, "a2")];
    for (c, d) in missed {
        app.text(c, d).await;
    }
    let other = App::on(app.backplane.clone()).await;
    let mut s = open!(&other, mode, &t, &[A, B], Start::Cursor(cursor));
    let (got, stop) = s.events(2).await;
    if stop.is_some() || !same_events(&got, &missed) {
        return format!("{signal}, then {}", describe(&got, &stop));
    }
    format!("{signal} + resume")
}

/// A token that expires while the client is connected (or between polls).
async fn token_expiry(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(2), &[A], Start::Live);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match s.next(Duration::from_millis(500)).await {
            Some(Item::End(sig)) => return sig,
            Some(Item::Empty) | None => {}
            Some(other) => return format!("unexpected {other:?}"),
        }
    }
    "still open".into()
}

/// A channel the token does not grant, beside one it does.
async fn forbidden(mode: Mode) -> String {
    let app = App::start().await;
    match Session::open(&app, mode, &token(600), &[A, "x:secret"], Start::Live).await {
        Ok(_) => "accepted".into(),
        Err(refusal) => refusal,
    }
}

/// A cursor that does not parse.
async fn bad_cursor(mode: Mode) -> String {
    let app = App::start().await;
    let start = Start::Cursor("zz,c:a=x".into());
    match Session::open(&app, mode, &token(600), &[A], start).await {
        Ok(_) => "accepted".into(),
        Err(refusal) => refusal,
    }
}

/// One channel more than `--max-channels`.
async fn too_many_channels(mode: Mode) -> String {
    let app = App::start().await;
    let names: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("c:{i}")).collect();
    let channels: Vec<&str> = names.iter().map(String::as_str).collect();
    match Session::open(&app, mode, &token(600), &channels, Start::Live).await {
        Ok(_) => "accepted".into(),
        Err(refusal) => refusal,
    }
}

/// A payload of exactly `--max-payload` bytes: published over the transport where it can
/// publish (through the hub where it cannot), and delivered intact.
async fn payload_at_limit(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    let data = "x".repeat(MAX_PAYLOAD);
    let answer = match s.publish(json!({"channel": A, "data": data})).await {
        Ok(v) if v["type"] == "published" => published_word(mode).to_owned(),
        Ok(v) => format!("answer {v}"),
        Err(e) if e == "no publish" => {
            app.text(A, &data).await;
            e
        }
        Err(e) => return e,
    };
    let (got, stop) = s.events(1).await;
    if stop.is_some() || got.len() != 1 || got[0].data != data.as_bytes() {
        return format!("{answer}, not delivered: {stop:?}");
    }
    let sep = if mode.is_sse() { "; " } else { ", " };
    format!("{answer}{sep}delivered")
}

/// One byte over `--max-payload`.
async fn payload_over_limit(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    let data = "x".repeat(MAX_PAYLOAD + 1);
    match s.publish(json!({"channel": A, "data": data})).await {
        Ok(v) => format!("accepted {}", v["offset"]),
        Err(e) => e,
    }
}

/// A binary payload (bytes that are not UTF-8, and line breaks): how it travels, and that it
/// arrives byte for byte.
async fn binary(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    let bytes = vec![0u8, 1, 0xff, 0xfe, b'\n', b'\r', b'x'];
    app.publish(A, Payload::binary(bytes.clone())).await;
    let (got, stop) = s.events(1).await;
    match got.first() {
        Some(e) if e.data == bytes => e.form.to_owned(),
        _ => describe(&got, &stop),
    }
}

/// A client publishes a binary payload (where it can publish): how it sends it, and how
/// the event comes back to it, byte for byte.
async fn binary_publish(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    let bytes = [0u8, 0xc3, 0x28, b'\n', 0xff];
    let sent = match s.publish_binary(A, &bytes).await {
        Ok(how) => how,
        Err(e) => return e,
    };
    let (got, stop) = s.events(1).await;
    match got.first() {
        Some(e) if e.data == bytes => format!("{sent} → {}", e.form),
        _ => format!("{sent}, then {}", describe(&got, &stop)),
    }
}

/// A publish retried with the same id: not published again, the same position.
async fn idempotent(mode: Mode) -> String {
    let app = App::start().await;
    let mut s = open!(&app, mode, &token(600), &[A], Start::Live);
    let body = json!({"channel": A, "data": "once", "id": "m-1"});
    let first = match s.publish(body.clone()).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let again = match s.publish(body).await {
        Ok(v) => v,
        Err(e) => return format!("retry: {e}"),
    };
    if first["duplicate"] != false
        || first["offset"] != again["offset"]
        || first["epoch"] != again["epoch"]
    {
        return format!("{first} then {again}");
    }
    // Delivered once.
    let (got, stop) = s.events(1).await;
    if stop.is_some() || pairs(&got) != want(&[(A, "once")]) {
        return describe(&got, &stop);
    }
    if let Err(e) = then_only(&app, &mut s, A).await {
        return e;
    }
    format!("duplicate:{}, same offset", again["duplicate"])
}

/// The scenarios, by the name the table's first column gives them (in backticks).
const SCENARIOS: [&str; 18] = [
    "live",
    "resume",
    "earliest",
    "resync-old",
    "resync-epoch",
    "resync-future",
    "lagged",
    "lagged-past-history",
    "shutdown",
    "token-expiry",
    "forbidden",
    "bad-cursor",
    "too-many-channels",
    "payload-at-limit",
    "payload-over-limit",
    "binary",
    "binary-publish",
    "idempotent",
];

async fn run(scenario: &str, mode: Mode) -> String {
    match scenario {
        "live" => live(mode).await,
        "resume" => resume(mode).await,
        "earliest" => earliest(mode).await,
        "resync-old" => resync_old(mode).await,
        "resync-epoch" => resync_epoch(mode).await,
        "resync-future" => resync_future(mode).await,
        "lagged" => lagged(mode).await,
        "lagged-past-history" => lagged_past_history(mode).await,
        "shutdown" => shutdown(mode).await,
        "token-expiry" => token_expiry(mode).await,
        "forbidden" => forbidden(mode).await,
        "bad-cursor" => bad_cursor(mode).await,
        "too-many-channels" => too_many_channels(mode).await,
        "payload-at-limit" => payload_at_limit(mode).await,
        "payload-over-limit" => payload_over_limit(mode).await,
        "binary" => binary(mode).await,
        "binary-publish" => binary_publish(mode).await,
        "idempotent" => idempotent(mode).await,
        other => format!("no scenario {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The table

/// The "Conformance" table of docs/protocol.md: the column headings after the first, and per
/// row the scenario name and its cells (backticks stripped).
fn documented_table() -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let path = rt_tests::workspace_root().join("docs/protocol.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/protocol.md");
    let section = doc
        .split("\n## Conformance\n")
        .nth(1)
        .expect("docs/protocol.md has a \"## Conformance\" section");
    let section = section.split("\n## ").next().unwrap();
    let cells = |line: &str| -> Vec<String> {
        let line = line.trim().trim_start_matches('|').trim_end_matches('|');
        line.split('|')
            .map(|c| c.trim().trim_matches('`').trim().to_owned())
            .collect()
    };
    let mut lines = section.lines().filter(|l| l.trim_start().starts_with('|'));
    let header = cells(lines.next().expect("a table header"));
    lines.next().expect("the header's separator line");
    let rows = lines
        .map(|l| {
            let mut c = cells(l);
            // The first column: `name` then a description.
            let first = c.remove(0);
            let name = first
                .split('`')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            (name, c)
        })
        .collect();
    (header[1..].to_vec(), rows)
}

#[tokio::test(flavor = "current_thread")]
async fn every_transport_answers_as_the_conformance_table_says() {
    let (columns, rows) = documented_table();
    let headings: Vec<&str> = MODES.iter().map(|(_, h)| *h).collect();
    assert_eq!(
        columns, headings,
        "the table's columns are the transport modes"
    );
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, SCENARIOS,
        "the table's rows are the suite's scenarios"
    );

    let started = std::time::Instant::now();
    let cells: Vec<Pin<Box<dyn Future<Output = String>>>> = rows
        .iter()
        .flat_map(|(name, _)| {
            MODES.iter().map(move |(mode, _)| {
                let name = name.clone();
                let mode = *mode;
                Box::pin(async move {
                    timeout(Duration::from_secs(30), run(&name, mode))
                        .await
                        .unwrap_or_else(|_| "timed out".into())
                }) as Pin<Box<dyn Future<Output = String>>>
            })
        })
        .collect();
    let observed = futures_util::future::join_all(cells).await;

    let mut table = String::new();
    let mut wrong = Vec::new();
    for (r, (name, documented)) in rows.iter().enumerate() {
        let got = &observed[r * MODES.len()..(r + 1) * MODES.len()];
        table.push_str(&format!("| `{name}` |"));
        for (c, cell) in got.iter().enumerate() {
            table.push_str(&format!(" `{cell}` |"));
            if documented.get(c) != Some(cell) {
                wrong.push(format!(
                    "{name} over {}: documented {:?}, observed {cell:?}",
                    MODES[c].1,
                    documented.get(c)
                ));
            }
        }
        table.push('\n');
    }
    assert!(
        wrong.is_empty(),
        "docs/protocol.md's conformance table and the transports disagree:\n{}\n\nobserved:\n{table}",
        wrong.join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the suite took {:?}",
        started.elapsed()
    );
}
