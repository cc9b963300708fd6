//! The transports embedded in an application, in-process: rt-ws, rt-sse and rt-poll mounted on
//! one hub, once in an axum 0.8 `Router` (`route_service`, served by `axum::serve` over a
//! `StallListener`) and once in plain hyper (`hyper_util`'s auto builder with upgrades,
//! `TowerToHyperService`, every connection in a `StallGuard`). The same scenarios, with the
//! same assertions, run against both mounts (the `mounts!` table at the bottom), with real
//! clients: the npm `eventsource` and `ws` packages (tests/js/embed-*.mjs), curl, and for the
//! half-open cases the relay of `rt_tests::relay` as in tests/half_open.rs.
//!
//! - exact resume on every channel, per transport;
//! - a token that does not allow the channel is refused (403 `forbidden`, WebSocket 1008);
//! - an endpoint without an authenticator refuses everyone (401 `unauthorized`, 1008 with the
//!   reason), unless built with `allow_anonymous`;
//! - a half-open client is cut by the write-stall bound (SSE, WebSocket); a held long poll of
//!   one ends at its poll timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_http::{Edge, StallGuard, StallListener, TokenVerifier};
use rt_tests::mount::Routes;
use rt_tests::relay::Relay;
use rt_tests::sse::SseStream;
use rt_tests::ws;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// The HS256 secret of the token-verifying mounts.
const SECRET: &[u8] = b"rt embedding test secret";
/// The write-stall bound of every mount: `StallListener`/`StallGuard` and the WebSocket's
/// `stall_timeout` (and its close timeout, so a close that cannot be written is not waited for).
const STALL: Duration = Duration::from_secs(1);
/// Events per poll answer: small, so a poller catches up over several polls.
const POLL_BATCH: usize = 3;

/// Where the transports are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mount {
    /// An axum `Router` with `route_service`, served by `axum::serve(StallListener)`.
    Axum,
    /// hyper_util's auto builder with upgrades over a path router, each connection guarded.
    Hyper,
}

/// The edge of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// HS256 tokens (`TokenVerifier`), nothing without one.
    Tokens,
    /// `Edge::default()`: no authenticator, refuses everything.
    Default,
    /// `Edge::default().allow_anonymous()`.
    Anonymous,
}

impl Access {
    fn edge(self) -> Edge {
        match self {
            Access::Tokens => Edge::default()
                .authenticator(Arc::new(TokenVerifier::hs256(SECRET).expect("HS256 key"))),
            Access::Default => Edge::default(),
            Access::Anonymous => Edge::default().allow_anonymous(),
        }
    }
}

/// The three transports over one hub, served on 127.0.0.1 by `mount`: `/ws`, `/sse`, `/poll`
/// and `/poll/publish`. Stops serving when dropped.
struct App {
    addr: SocketAddr,
    hub: Hub,
    server: JoinHandle<()>,
}

impl App {
    async fn start(mount: Mount, access: Access) -> App {
        let hub = Hub::new(
            Arc::new(MemoryBackplane::new(Retention::default())),
            HubConfig::default(),
        );
        let routes = Routes::new(
            &hub,
            access.edge(),
            rt_ws::Config::default()
                .stall_timeout(STALL)
                .close_timeout(STALL),
            rt_sse::Config::default().retry(Duration::from_millis(200)),
            rt_poll::Config::default().batch(POLL_BATCH),
        );
        let (tcp, addr) = rt_tests::mount::listen().await;
        let server = match mount {
            Mount::Axum => {
                let Routes { ws, sse, poll } = routes;
                let app = axum::Router::new()
                    .route_service("/ws", ws)
                    .route_service("/sse", sse)
                    .route_service("/poll", poll.clone())
                    .route_service("/poll/publish", poll);
                tokio::spawn(async move {
                    let _ = axum::serve(StallListener::new(tcp, STALL), app).await;
                })
            }
            Mount::Hyper => tokio::spawn(rt_tests::mount::serve(tcp, routes, |stream| {
                StallGuard::new(stream, STALL)
            })),
        };
        App { addr, hub, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn subscriptions(&self) -> usize {
        self.hub.stats().subscriptions
    }

    /// Waits until the hub holds `want` subscriptions; panics after `within`.
    async fn wait_subscriptions(&self, want: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.subscriptions();
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {now} subscriptions after {within:?}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes on the hub directly, as the application's own code would.
    async fn publish(&self, channel: &str, data: &str) {
        let event = NewEvent::new(
            Channel::new(channel).unwrap(),
            Payload::text(data.to_owned()),
        );
        self.hub.publish(event).await.expect("publish");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Tokens and clients

/// An HS256 token with rt's claims, valid for 10 minutes.
fn token_for(subscribe: &[&str], publish: &[&str], secret: &[u8]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": "embedder", "exp": exp, "subscribe": subscribe, "publish": publish});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign a token")
}

/// May subscribe and publish on every `emb:` channel.
fn full_token() -> String {
    token_for(&["emb:*"], &["emb:*"], SECRET)
}

/// May only subscribe to `emb:public`, and publish nowhere.
fn narrow_token() -> String {
    token_for(&["emb:public"], &[], SECRET)
}

/// What curl received: the status, the head as text, and the body.
#[derive(Debug)]
struct Curl {
    status: u16,
    head: String,
    body: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.body))
    }

    /// Asserts an rt JSON error answer with `status` and `code`.
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}{}", self.head, self.body);
        assert_eq!(self.json()["error"]["code"], code, "{what}: {}", self.body);
        assert!(
            self.head.contains("application/json"),
            "{what}: {}",
            self.head
        );
    }
}

/// Runs `curl -sS -i` with `args`; `max_time` seconds bound the transfer (a stream is cut
/// then, which is not an error here).
async fn curl(max_time: u64, args: &[&str]) -> Curl {
    let out = timeout(
        Duration::from_secs(max_time + 10),
        tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", &max_time.to_string()])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl did not finish")
    .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // 28: the --max-time ended a stream.
    assert!(
        out.status.success() || out.status.code() == Some(28),
        "curl {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = stdout
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("curl {args:?}: no HTTP head in {stdout:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl {args:?}: no status in {head:?}"));
    Curl {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `Authorization: Bearer <token>` as curl arguments (none for an empty token).
fn bearer(token: &str) -> Vec<String> {
    if token.is_empty() {
        Vec::new()
    } else {
        vec!["-H".into(), format!("Authorization: Bearer {token}")]
    }
}

/// `GET /sse?channel=<channel>` with curl, cut after `max_time` seconds.
async fn curl_sse(app: &App, token: &str, channel: &str, max_time: u64) -> Curl {
    let url = app.url(&format!("/sse?channel={channel}"));
    let mut args = bearer(token);
    args.extend(["-N".into(), url]);
    curl(
        max_time,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await
}

/// A poll with curl: `GET /poll` with the channels, `cursor` and `timeout` (seconds)
/// url-encoded by curl.
async fn curl_poll(app: &App, token: &str, channels: &[&str], cursor: &str, wait: u32) -> Curl {
    let mut args = bearer(token);
    args.push("-G".into());
    for c in channels {
        args.extend(["--data-urlencode".into(), format!("channel={c}")]);
    }
    if !cursor.is_empty() {
        args.extend(["--data-urlencode".into(), format!("cursor={cursor}")]);
    }
    args.extend([
        "--data-urlencode".into(),
        format!("timeout={wait}"),
        app.url("/poll"),
    ]);
    curl(10, &args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// `POST /poll/publish` with curl.
async fn curl_publish(app: &App, token: &str, channel: &str, data: &str) -> Curl {
    let mut args = bearer(token);
    args.extend([
        "-H".into(),
        "Content-Type: application/json".into(),
        "--data-binary".into(),
        json!({"channel": channel, "data": data}).to_string(),
        app.url("/poll/publish"),
    ]);
    curl(10, &args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// Runs `node tests/js/<script> <args>` and parses the JSON line it prints.
async fn node(script: &str, args: &[&str]) -> Value {
    let dir = tokio::task::spawn_blocking(rt_tests::node_modules)
        .await
        .unwrap();
    let out = timeout(
        Duration::from_secs(45),
        tokio::process::Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("node {script} timed out"))
    .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node {script} failed:\n{stdout}\n{stderr}"
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("node {script} printed {stdout} ({e})"))
}

/// With the `ws` package: opens a WebSocket, subscribes to `channel`, and reports the first
/// answer (`message`) or the server's close (`closed`).
async fn ws_subscribe(app: &App, token: &str, channel: &str) -> Value {
    node(
        "embed-ws.mjs",
        &["subscribe", &app.ws_url(), token, channel],
    )
    .await
}

/// Asserts the WebSocket was accepted and then closed with 1008 and `reason`.
fn assert_ws_refused(outcome: &Value, reason: &str, what: &str) {
    assert_eq!(outcome["opened"], true, "{what}: {outcome}");
    assert_eq!(
        outcome["closed"],
        json!({"code": 1008, "reason": reason}),
        "{what}: {outcome}"
    );
}

/// Asserts the WebSocket subscribed to `channel`.
fn assert_ws_subscribed(outcome: &Value, channel: &str, what: &str) {
    let message = &outcome["message"];
    assert_eq!(message["type"], "subscribed", "{what}: {outcome}");
    assert_eq!(message["channels"], json!([channel]), "{what}: {outcome}");
}

// ---------------------------------------------------------------------------------------
// Exact resume

const A: &str = "emb:a";
const B: &str = "emb:b";
/// Published while the client reads.
const BEFORE: [(&str, &str); 4] = [(A, "a1"), (B, "b1"), (A, "a2"), (B, "b2")];
/// Published while it is away.
const AFTER: [(&str, &str); 5] = [(A, "a3"), (B, "b3"), (A, "a4"), (B, "b4"), (A, "a5")];
/// Published live once it is back: everything replayed comes before it.
const SENTINEL: (&str, &str) = (B, "sentinel");

/// The resume plan the Node scripts follow.
fn plan() -> String {
    json!({"channels": [A, B], "before": BEFORE, "after": AFTER, "sentinel": SENTINEL}).to_string()
}

/// Asserts that `got` (channel, data) holds exactly the events of `want`: each once, in
/// publish order per channel (the order across channels is free).
fn assert_exactly(got: &[(String, String)], want: &[(&str, &str)], what: &str) {
    fn per_channel<'a>(
        events: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> HashMap<&'a str, Vec<&'a str>> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for (c, d) in events {
            map.entry(c).or_default().push(d);
        }
        map
    }
    assert_eq!(
        per_channel(got.iter().map(|(c, d)| (c.as_str(), d.as_str()))),
        per_channel(want.iter().copied()),
        "{what}: got {got:?}"
    );
}

/// The channel `data` was published on (data are unique across the plan).
fn channel_of(data: &str) -> String {
    BEFORE
        .iter()
        .chain(&AFTER)
        .chain([&SENTINEL])
        .find(|(_, d)| *d == data)
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| panic!("{data:?} was never published"))
}

/// A cursor names both channels of the plan: `<epoch>,emb:a=<n>,emb:b=<m>` in any order.
fn assert_cursor_of_both(cursor: &str, what: &str) {
    let mut parts = cursor.split(',');
    let epoch = parts.next().unwrap_or_default();
    assert!(
        !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_hexdigit()),
        "{what}: {cursor}"
    );
    let mut channels: Vec<&str> = parts.map(|p| p.split('=').next().unwrap()).collect();
    channels.sort_unstable();
    assert_eq!(channels, [A, B], "{what}: {cursor}");
}

/// SSE with the npm `eventsource`: reads `BEFORE`, is cut off, reconnects by itself with
/// `Last-Event-ID`, and gets exactly `AFTER` (then the live sentinel), nothing twice.
async fn sse_resumes_exactly(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let out = node("embed-sse.mjs", &[&app.url(""), &full_token(), &plan()]).await;
    assert_eq!(out["opens"], 2, "{out}");
    assert_eq!(out["resyncs"], json!([]), "{out}");
    let last = out["lastIdBeforeCut"].as_str().unwrap();
    assert_cursor_of_both(last, "the id of the last event before the cut");
    assert_eq!(
        out["resumedWith"].as_str(),
        Some(last),
        "the reconnection resumes with Last-Event-ID: {out}"
    );
    let on = |connection: u64| -> Vec<(String, String)> {
        out["received"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["connection"] == connection)
            .map(|r| r["data"].as_str().unwrap())
            .filter(|d| *d != SENTINEL.1)
            .map(|d| (channel_of(d), d.to_owned()))
            .collect()
    };
    assert_exactly(&on(1), &BEFORE, "first connection");
    assert_exactly(&on(2), &AFTER, "after Last-Event-ID");
    let sentinels = out["received"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["data"] == SENTINEL.1)
        .count();
    assert_eq!(sentinels, 1, "{out}");
}

/// WebSocket with the npm `ws`: subscribes, processes `BEFORE`, leaves; a new connection
/// subscribes with the cursor it built and gets exactly `AFTER`.
async fn ws_resumes_exactly(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let out = node(
        "embed-ws.mjs",
        &["resume", &app.ws_url(), &full_token(), &plan()],
    )
    .await;
    assert_eq!(out["unexpected"], json!([]), "{out}");
    assert_eq!(out["subscribed"]["type"], "subscribed", "{out}");
    let events = |key: &str| -> Vec<(String, String)> {
        out[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let (c, d) = (e["channel"].as_str(), e["data"].as_str());
                (c.unwrap().to_owned(), d.unwrap().to_owned())
            })
            .filter(|(_, d)| d != SENTINEL.1)
            .collect()
    };
    assert_exactly(&events("first"), &BEFORE, "live");
    assert_cursor_of_both(out["cursor"].as_str().unwrap(), "the client's cursor");
    let again = &out["resubscribed"];
    assert_eq!(again["type"], "subscribed", "{out}");
    assert_eq!(again["recovered"], true, "{out}");
    assert_eq!(again["resynced"], json!([]), "{out}");
    assert_exactly(&events("second"), &AFTER, "resumed from the cursor");
    let second = out["second"].as_array().unwrap();
    assert_eq!(second.last().unwrap()["data"], SENTINEL.1, "{out}");
}

/// Long polling with curl: each poll a new connection with the previous answer's cursor, at
/// most `POLL_BATCH` events per answer: exactly every event, across the pause, nothing twice.
async fn poll_resumes_exactly(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let token = full_token();
    let channels = [A, B];
    // The first poll starts live: its cursor is the position now.
    let start = curl_poll(&app, &token, &channels, "", 0).await;
    assert_eq!(start.status, 200, "{start:?}");
    assert_eq!(start.json()["events"], json!([]), "{start:?}");
    let mut cursor = start.json()["cursor"].as_str().unwrap().to_owned();
    assert_cursor_of_both(&cursor, "the live cursor");

    // Polls until an answer has no events (bounded), collecting (channel, data).
    async fn drain(app: &App, token: &str, cursor: &mut String) -> (Vec<(String, String)>, usize) {
        let mut got = Vec::new();
        for polls in 1..=10 {
            let answer = curl_poll(app, token, &[A, B], cursor, 0).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let v = answer.json();
            assert_eq!(v["recovered"], true, "{v}");
            assert_eq!(v["resynced"], json!([]), "{v}");
            *cursor = v["cursor"].as_str().unwrap().to_owned();
            let events = v["events"].as_array().unwrap();
            assert!(events.len() <= POLL_BATCH, "{v}");
            if events.is_empty() {
                return (got, polls);
            }
            for e in events {
                let (c, d) = (e["channel"].as_str(), e["data"].as_str());
                got.push((c.unwrap().to_owned(), d.unwrap().to_owned()));
            }
        }
        panic!("still events after 10 polls: {got:?}");
    }

    for (channel, data) in BEFORE {
        let ack = curl_publish(&app, &token, channel, data).await;
        assert_eq!(ack.status, 200, "{ack:?}");
    }
    // A long poll answers as soon as events exist: part of them (one batch).
    let some = curl_poll(&app, &token, &channels, &cursor, 5).await;
    assert_eq!(some.status, 200, "{some:?}");
    let v = some.json();
    let first: Vec<(String, String)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (c, d) = (e["channel"].as_str(), e["data"].as_str());
            (c.unwrap().to_owned(), d.unwrap().to_owned())
        })
        .collect();
    assert!(
        !first.is_empty() && first.len() < BEFORE.len(),
        "one batch of {POLL_BATCH}: {v}"
    );
    cursor = v["cursor"].as_str().unwrap().to_owned();
    // Away: more events, then back with the cursor.
    for (channel, data) in AFTER {
        let ack = curl_publish(&app, &token, channel, data).await;
        assert_eq!(ack.status, 200, "{ack:?}");
    }
    let (rest, polls) = drain(&app, &token, &mut cursor).await;
    assert!(polls > 2, "caught up over several polls: {polls}");
    let all: Vec<(String, String)> = first.into_iter().chain(rest).collect();
    let want: Vec<(&str, &str)> = BEFORE.iter().chain(&AFTER).copied().collect();
    assert_exactly(&all, &want, "every poll resumed from the previous cursor");
    // Nothing more after the last cursor, and a new event comes next, alone.
    let ack = curl_publish(&app, &token, SENTINEL.0, SENTINEL.1).await;
    assert_eq!(ack.status, 200, "{ack:?}");
    let (last, _) = drain(&app, &token, &mut cursor).await;
    assert_eq!(last, [(B.to_owned(), SENTINEL.1.to_owned())]);
}

// ---------------------------------------------------------------------------------------
// Refusals

/// A token that does not allow the channel: 403 `forbidden` on SSE and polls (and a publish
/// outside its grants), WebSocket close 1008; no token or a bad one: 401 `unauthorized`.
async fn permission_refused(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let narrow = narrow_token();

    let sse = curl_sse(&app, &narrow, "emb:secret", 10).await;
    sse.assert_error(
        403,
        "forbidden",
        "SSE on a channel the token does not allow",
    );
    let poll = curl_poll(&app, &narrow, &["emb:secret"], "", 0).await;
    poll.assert_error(
        403,
        "forbidden",
        "poll on a channel the token does not allow",
    );
    let publish = curl_publish(&app, &narrow, "emb:public", "x").await;
    publish.assert_error(403, "forbidden", "publish the token does not allow");
    let outcome = ws_subscribe(&app, &narrow, "emb:secret").await;
    assert_ws_refused(&outcome, "forbidden", "WS subscribe outside the token");

    // The same token on its own channel is fine: it is the channel that is refused.
    let sse = curl_sse(&app, &narrow, "emb:public", 1).await;
    assert_eq!(sse.status, 200, "{sse:?}");
    assert!(sse.body.contains("event: rt.open"), "{sse:?}");
    let poll = curl_poll(&app, &narrow, &["emb:public"], "", 0).await;
    assert_eq!(poll.status, 200, "{poll:?}");
    let outcome = ws_subscribe(&app, &narrow, "emb:public").await;
    assert_ws_subscribed(&outcome, "emb:public", "WS subscribe within the token");

    // No token: the verifier grants nothing anonymous.
    let sse = curl_sse(&app, "", "emb:public", 10).await;
    sse.assert_error(401, "unauthorized", "SSE without a token");
    let poll = curl_poll(&app, "", &["emb:public"], "", 0).await;
    poll.assert_error(401, "unauthorized", "poll without a token");
    let outcome = ws_subscribe(&app, "", "emb:public").await;
    let reason = "token_required";
    assert_ws_refused(&outcome, reason, "WS without a token");

    // A token signed with another secret.
    let forged = token_for(&["emb:*"], &["emb:*"], b"another secret");
    let sse = curl_sse(&app, &forged, "emb:public", 10).await;
    sse.assert_error(401, "unauthorized", "SSE with a forged token");
    let poll = curl_poll(&app, &forged, &["emb:public"], "", 0).await;
    poll.assert_error(401, "unauthorized", "poll with a forged token");
    let outcome = ws_subscribe(&app, &forged, "emb:public").await;
    assert_ws_refused(&outcome, "invalid_token", "WS with a forged token");
    assert_eq!(app.subscriptions(), 0);
}

/// `Edge::default()` refuses everyone, saying how to configure it; `allow_anonymous()`
/// opens every transport.
async fn refused_without_authenticator(mount: Mount) {
    let app = App::start(mount, Access::Default).await;
    let sse = curl_sse(&app, "", "emb:any", 10).await;
    sse.assert_error(401, "unauthorized", "SSE without an authenticator");
    let message = sse.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("allow_anonymous"), "{message}");
    let poll = curl_poll(&app, "", &["emb:any"], "", 0).await;
    poll.assert_error(401, "unauthorized", "poll without an authenticator");
    let publish = curl_publish(&app, "", "emb:any", "x").await;
    publish.assert_error(401, "unauthorized", "publish without an authenticator");
    // A token does not help when nothing verifies it.
    let sse = curl_sse(&app, &full_token(), "emb:any", 10).await;
    sse.assert_error(401, "unauthorized", "SSE with a token, no authenticator");
    let outcome = ws_subscribe(&app, "", "emb:any").await;
    let reason = "no_authenticator";
    assert_ws_refused(&outcome, reason, "WS without an authenticator");
    assert_eq!(app.subscriptions(), 0);
    drop(app);

    let app = App::start(mount, Access::Anonymous).await;
    let sse = curl_sse(&app, "", "emb:any", 1).await;
    assert_eq!(sse.status, 200, "{sse:?}");
    assert!(sse.head.contains("text/event-stream"), "{sse:?}");
    assert!(sse.body.contains("event: rt.open"), "{sse:?}");
    let publish = curl_publish(&app, "", "emb:any", "x").await;
    assert_eq!(publish.status, 200, "{publish:?}");
    assert_eq!(publish.json()["offset"], 1, "{publish:?}");
    let poll = curl_poll(&app, "", &["emb:any"], "earliest", 0).await;
    assert_eq!(poll.status, 200, "{poll:?}");
    assert_eq!(poll.json()["events"][0]["data"], "x", "{poll:?}");
    let outcome = ws_subscribe(&app, "", "emb:any").await;
    assert_ws_subscribed(&outcome, "emb:any", "anonymous WS");
}

// ---------------------------------------------------------------------------------------
// Half-open clients

/// Publishes far more than the socket buffers hold (6 MiB; the relay's server-side receive
/// buffer is 16 KiB, loopback send buffers up to 4 MiB), so the server's writes stall.
async fn flood(app: &App, channel: &str) {
    let big = "x".repeat(32 * 1024);
    for _ in 0..200 {
        app.publish(channel, &big).await;
    }
}

/// An SSE stream through a relay that then vanishes: the stall guard of the mount
/// (`StallListener` / `StallGuard`) cuts the connection, which frees the subscription.
async fn sse_half_open_cut(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let auth = format!("Bearer {}", full_token());
    let relay = Relay::start(app.addr).await;
    let url = relay.url("/sse?channel=emb:stall");
    let mut sse = SseStream::open_ok(&url, &[("authorization", &auth)]).await;
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));
    app.publish("emb:stall", "before").await;
    assert_eq!(sse.event().await.data.as_deref(), Some("before"));
    assert_eq!(app.subscriptions(), 1);

    relay.blackhole();
    let vanished = Instant::now();
    flood(&app, "emb:stall").await;
    app.wait_subscriptions(0, Duration::from_secs(15)).await;
    let took = vanished.elapsed();
    assert!(
        took >= STALL,
        "released before any write could stall: {took:?}"
    );
    drop(sse);
    // The app goes on serving.
    let mut sse = SseStream::open_ok(
        &app.url("/sse?channel=emb:stall"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));
}

/// A WebSocket through a relay that then vanishes: the write-stall bound (the endpoint's
/// `stall_timeout` and the connection's guard) ends it well before any ping timeout (25 s).
async fn ws_half_open_cut(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let auth = format!("Bearer {}", full_token());
    let relay = Relay::start(app.addr).await;
    let mut client = ws::connect(&relay.ws_url("/ws"), &[("authorization", &auth)]).await;
    ws::subscribe(&mut client, &["emb:stall"], None).await;
    app.publish("emb:stall", "before").await;
    assert_eq!(ws::recv(&mut client).await["data"], "before");
    assert_eq!(app.subscriptions(), 1);

    relay.blackhole();
    let vanished = Instant::now();
    flood(&app, "emb:stall").await;
    app.wait_subscriptions(0, Duration::from_secs(15)).await;
    let took = vanished.elapsed();
    assert!(
        took >= STALL,
        "released before any write could stall: {took:?}"
    );
    drop(client);
}

/// A long poll held for a client that vanishes ends at its poll timeout (nothing is written
/// before then), and holds nothing afterwards.
async fn held_poll_half_open_ends(mount: Mount) {
    let app = App::start(mount, Access::Tokens).await;
    let relay = Relay::start(app.addr).await;
    let mut client = TcpStream::connect(relay.addr()).await.unwrap();
    let sent = Instant::now();
    let head = format!(
        "GET /poll?channel=emb:held&timeout=2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        full_token()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    app.wait_subscriptions(1, Duration::from_secs(10)).await;

    relay.blackhole();
    app.wait_subscriptions(0, Duration::from_secs(15)).await;
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "released before its timeout: {took:?}"
    );
    app.publish("emb:held", "after").await;
    assert_eq!(app.subscriptions(), 0);
    drop(client);
}

// ---------------------------------------------------------------------------------------
// WebSocket over HTTP/2

/// An extended CONNECT (RFC 8441) on a cleartext h2 connection opens the endpoint's
/// WebSocket: `axum::serve` announces the setting by itself, plain hyper once told
/// (`http2().enable_connect_protocol()`, see `rt_tests::mount::serve`).
async fn ws_over_h2(mount: Mount) {
    let app = App::start(mount, Access::Anonymous).await;
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // A first request, so that the client knows the server's SETTINGS.
    let req = http::Request::get(app.url("/poll?channel=h2&timeout=0"))
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let mut ws = rt_tests::ws::connect_h2(&mut sender, &app.url("/ws"), "websocket", &[])
        .await
        .unwrap();
    rt_tests::ws::subscribe(&mut ws, &["h2"], None).await;
    app.publish("h2", "over h2").await;
    let event = rt_tests::ws::recv(&mut ws).await;
    assert_eq!(
        (&event["type"], &event["data"]),
        (&json!("event"), &json!("over h2")),
        "{event}"
    );
}

// ---------------------------------------------------------------------------------------
// The table: every scenario against every mount.

macro_rules! mounts {
    ($($module:ident => $mount:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sse_resumes_exactly_on_every_channel() {
                sse_resumes_exactly($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws_resumes_exactly_on_every_channel() {
                ws_resumes_exactly($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn poll_resumes_exactly_on_every_channel() {
                poll_resumes_exactly($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_websocket_opens_over_http2() {
                ws_over_h2($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_token_without_the_channel_is_refused() {
                permission_refused($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn no_authenticator_refuses_unless_anonymous() {
                refused_without_authenticator($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_half_open_sse_client_is_cut_by_the_write_stall_bound() {
                sse_half_open_cut($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_half_open_ws_client_is_cut_by_the_write_stall_bound() {
                ws_half_open_cut($mount).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_held_poll_of_a_half_open_client_ends_at_its_timeout() {
                held_poll_half_open_ends($mount).await;
            }
        }
    )*};
}

mounts!(in_axum => Mount::Axum, in_hyper => Mount::Hyper);
