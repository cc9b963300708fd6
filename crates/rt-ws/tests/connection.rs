//! rt-ws embedded in a plain hyper server over real loopback sockets, for what the reference
//! server cannot stage: a failing backplane (1011), token permissions (1008), and the edge's
//! refusals (no authenticator, a foreign origin: 1008).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use rt_core::{
    Backplane, Channel, ChannelPattern, Epoch, Error, Health, Hub, HubConfig, MemoryBackplane,
    NewEvent, Permissions, Published, Read, Retention, Sink,
};
use rt_http::{Authenticator, Edge, Origins};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The memory backplane, except that publishing on channel `boom` hits a bug (a panic).
#[derive(Debug)]
struct Buggy(MemoryBackplane);

#[async_trait]
impl Backplane for Buggy {
    fn attach(&self, sink: Arc<dyn Sink>) {
        self.0.attach(sink)
    }
    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        assert_ne!(event.channel.as_str(), "boom", "a backplane bug");
        self.0.publish(event).await
    }
    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        self.0.read(channel, after, limit).await
    }
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        self.0.head(channel).await
    }
    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        self.0.watch(channel).await
    }
    fn unwatch(&self, channel: &Channel) {
        self.0.unwatch(channel)
    }
    fn health(&self) -> Health {
        self.0.health()
    }
}

/// Tokens: `reader` may subscribe to `public:*`; `short` expires 1 s after it is verified;
/// anything else is invalid.
#[derive(Debug)]
struct Tokens;

impl Authenticator for Tokens {
    fn authenticate(&self, token: Option<&str>) -> Result<Permissions, Error> {
        let expires = match token {
            None => return Ok(Permissions::anonymous()),
            Some("reader") => None,
            Some("short") => Some(SystemTime::now() + Duration::from_secs(1)),
            Some(_) => return Err(Error::Unauthorized("unknown token".into())),
        };
        Ok(Permissions::new(Some("tester".into()), expires)
            .allow_subscribe(ChannelPattern::parse_list("public:*").unwrap())
            .allow_publish(ChannelPattern::parse_list("public:*").unwrap()))
    }
}

/// The edge of an endpoint that verifies tokens with [`Tokens`], as rt-server's does.
fn tokens() -> Edge {
    Edge::default().authenticator(Arc::new(Tokens))
}

/// The edge of an endpoint open to everyone.
fn anonymous() -> Edge {
    Edge::default().allow_anonymous()
}

/// Serves rt-ws with `edge` on a free port.
async fn serve(edge: Edge) -> String {
    serve_hub(edge, HubConfig::default()).await.0
}

async fn serve_hub(edge: Edge, config: HubConfig) -> (String, Hub) {
    let hub = Hub::new(
        Arc::new(Buggy(MemoryBackplane::new(Retention::default()))),
        config,
    );
    let ws = rt_ws::WebSocket::new(hub.clone(), rt_ws::Config::default().edge(edge));
    let addr = support::serve(ws).await;
    (format!("ws://{addr}/ws"), hub)
}

async fn connect(url: &str) -> Ws {
    connect_from(url, None).await
}

/// Connects as a page of `origin` would (`None`: a client that sends no `Origin`).
async fn connect_from(url: &str, origin: Option<&str>) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .unwrap()
    .unwrap()
    .0
}

async fn recv(ws: &mut Ws) -> Message {
    loop {
        let m = timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s")
            .expect("socket ended")
            .unwrap();
        if !matches!(&m, Message::Text(t) if t.contains("\"heartbeat\"")) {
            return m;
        }
    }
}

async fn json(ws: &mut Ws) -> Value {
    match recv(ws).await {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

async fn close(ws: &mut Ws) -> (u16, String) {
    loop {
        match recv(ws).await {
            Message::Close(Some(f)) => return (f.code.into(), f.reason.to_string()),
            Message::Close(None) => panic!("close without code"),
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_bug_closes_with_1011_and_others_go_on() {
    let url = serve(anonymous()).await;
    let mut other = connect(&url).await;
    send(&mut other, json!({"type":"subscribe","channels":["fine"]})).await;
    assert_eq!(json(&mut other).await["type"], "subscribed");

    let mut victim = connect(&url).await;
    send(
        &mut victim,
        json!({"type":"publish","channel":"boom","data":"x"}),
    )
    .await;
    assert_eq!(
        close(&mut victim).await,
        (1011, "internal server error".into())
    );

    send(
        &mut other,
        json!({"type":"publish","channel":"fine","data":"still here"}),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(json(&mut other).await["type"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["event", "published"]);
}

#[tokio::test]
async fn tokens_decide_channels_and_end_connections() {
    let url = serve(tokens()).await;

    let mut bad = connect(&format!("{url}?token=forged")).await;
    assert_eq!(close(&mut bad).await, (1008, "invalid_token".into()));

    let mut anonymous = connect(&url).await;
    send(
        &mut anonymous,
        json!({"type":"subscribe","channels":["public:news"]}),
    )
    .await;
    assert_eq!(close(&mut anonymous).await, (1008, "token_required".into()));

    let mut reader = connect(&format!("{url}?token=reader")).await;
    send(
        &mut reader,
        json!({"type":"subscribe","channels":["public:news"]}),
    )
    .await;
    assert_eq!(json(&mut reader).await["type"], "subscribed");
    // A refused publish is an error for that publish only.
    send(
        &mut reader,
        json!({"type":"publish","channel":"private","data":"x","id":"p-1"}),
    )
    .await;
    let e = json(&mut reader).await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("forbidden"), Some("p-1"))
    );
    send(
        &mut reader,
        json!({"type":"subscribe","channels":["private"]}),
    )
    .await;
    assert_eq!(close(&mut reader).await, (1008, "forbidden".into()));

    // A connection does not outlive its token; an `auth` message can replace it.
    let mut short = connect(&format!("{url}?token=short")).await;
    send(&mut short, json!({"type":"auth","token":"reader"})).await;
    let a = json(&mut short).await;
    assert_eq!(
        (a["type"].as_str(), a["subject"].as_str()),
        (Some("authenticated"), Some("tester"))
    );
    // Issue #16, item 9: before any subscribe there is no position to resume from, so no
    // cursor (it used to be "0"); once subscribed, the reply's cursor names the channels.
    assert!(a.get("cursor").is_none(), "{a}");
    let mut subscribed = connect(&format!("{url}?token=reader")).await;
    send(
        &mut subscribed,
        json!({"type":"subscribe","channels":["public:news"]}),
    )
    .await;
    let s = json(&mut subscribed).await;
    send(&mut subscribed, json!({"type":"auth","token":"reader"})).await;
    let a = json(&mut subscribed).await;
    assert_eq!(a["type"], "authenticated", "{a}");
    assert_eq!(a["cursor"], s["cursor"], "{a}");
    assert!(
        a["cursor"].as_str().unwrap().ends_with(",public:news=0"),
        "{a}"
    );
    let mut expiring = connect(&format!("{url}?token=short")).await;
    send(
        &mut expiring,
        json!({"type":"subscribe","channels":["public:x"]}),
    )
    .await;
    assert_eq!(json(&mut expiring).await["type"], "subscribed");
    assert_eq!(close(&mut expiring).await, (1008, "token_expired".into()));
    // The refreshed connection is still open after the old token's expiry.
    send(&mut short, json!({"type":"ping"})).await;
    assert_eq!(json(&mut short).await["type"], "pong");
}

/// Issue #17, part 3: a connection that falls a whole queue behind is not closed: it gets
/// every event, from history, then live.
#[tokio::test]
async fn a_connection_that_lags_behind_the_live_stream_catches_up_in_place() {
    let (url, hub) = serve_hub(
        anonymous(),
        HubConfig {
            queue_capacity: 4,
            ..HubConfig::default()
        },
    )
    .await;
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type":"subscribe","channels":["fast"]})).await;
    assert_eq!(json(&mut ws).await["type"], "subscribed");
    // On this single-threaded runtime the connection cannot run while the burst is
    // published, so its live queue (4 events) overflows.
    let fast = Channel::new("fast").unwrap();
    for i in 0..20 {
        let event = NewEvent::new(fast.clone(), rt_core::Payload::text(i.to_string()));
        hub.publish(event).await.unwrap();
    }
    for offset in 1..=20 {
        assert_eq!(json(&mut ws).await["offset"], offset);
    }
    hub.publish(NewEvent::new(fast, rt_core::Payload::text("live")))
        .await
        .unwrap();
    let live = json(&mut ws).await;
    assert_eq!(
        (live["offset"].as_u64(), live["data"].as_str()),
        (Some(21), Some("live"))
    );
}

#[tokio::test]
async fn without_an_authenticator_every_connection_is_refused_with_1008() {
    let url = serve(Edge::default()).await;
    let reason = "no_authenticator";
    // The upgrade is accepted (a browser could not read a refused one's status), then closed.
    for url in [url.clone(), format!("{url}?token=reader")] {
        let mut ws = connect(&url).await;
        assert_eq!(close(&mut ws).await, (1008, reason.into()), "{url}");
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_with_1008() {
    let url = serve(anonymous().origins(Origins::parse("https://app.example"))).await;
    // tungstenite sends the URL's authority as `Host`, so this page is the endpoint's own.
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    let same = format!("http://{host}");
    for origin in ["https://evil.example", "https://app.example.evil", "null"] {
        let mut ws = connect_from(&url, Some(origin)).await;
        assert_eq!(
            close(&mut ws).await,
            (1008, "origin_not_allowed".into()),
            "{origin}"
        );
    }
    for origin in [Some(same.as_str()), Some("https://app.example"), None] {
        let mut ws = connect_from(&url, origin).await;
        send(&mut ws, json!({"type":"subscribe","channels":["news"]})).await;
        assert_eq!(json(&mut ws).await["type"], "subscribed", "{origin:?}");
    }

    // The default is same-origin only: the listed page of the endpoint above is foreign here.
    let url = serve(anonymous()).await;
    let mut ws = connect_from(&url, Some("https://app.example")).await;
    assert_eq!(close(&mut ws).await, (1008, "origin_not_allowed".into()));
}
