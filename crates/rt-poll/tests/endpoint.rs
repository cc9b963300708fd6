//! The endpoint in-process over real sockets, where the hub itself can be inspected.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rt_core::{
    Channel, ChannelPattern, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Permissions,
    Retention,
};
use rt_http::{Authenticator, Edge, Origins};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The options of an endpoint open to everyone.
fn open() -> rt_poll::Config {
    rt_poll::Config::default().edge(Edge::default().allow_anonymous())
}

/// Serves the endpoint with `config` on a free port.
async fn serve(config: rt_poll::Config) -> (Hub, SocketAddr) {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let poll = rt_poll::Poll::new(hub.clone(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(poll.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (hub, addr)
}

/// Grants every request that presents no token the same permissions; refuses any token.
#[derive(Debug)]
struct Fixed(Permissions);

impl Authenticator for Fixed {
    fn authenticate(&self, token: Option<&str>) -> Result<Permissions, rt_core::Error> {
        match token {
            None => Ok(self.0.clone()),
            Some(_) => Err(rt_core::Error::Unauthorized("unknown token".into())),
        }
    }
}

async fn send_get(addr: SocketAddr, path: &str) -> TcpStream {
    send(addr, "GET", path, &[], "").await
}

/// Sends a request with `headers` besides `Host: test` and `Connection: close`.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads a whole `Connection: close` answer: status and JSON body.
async fn status_and_body(stream: TcpStream) -> (u16, Value) {
    let (status, _, body) = whole_answer(stream).await;
    (status, body)
}

/// Reads a whole `Connection: close` answer: status, head (lowercased) and JSON body.
async fn whole_answer(mut stream: TcpStream) -> (u16, String, Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap(),
    )
}

async fn answer(stream: TcpStream) -> Value {
    let (status, body) = status_and_body(stream).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_subscriptions(hub: &Hub, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while hub.stats().subscriptions != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{:?}, expected {n} subscriptions", hub.stats()));
}

#[tokio::test]
async fn an_abandoned_poll_drops_its_waiter() {
    let (hub, addr) = serve(open()).await;
    let mut held = Vec::new();
    for i in 0..50 {
        held.push(send_get(addr, &format!("/poll?channel=c{},all&timeout=30", i % 5)).await);
    }
    wait_subscriptions(&hub, 50).await;
    assert_eq!(hub.stats().channels, 6);
    drop(held);
    wait_subscriptions(&hub, 0).await;
    assert_eq!(hub.stats().channels, 0);
}

#[tokio::test]
async fn shutdown_answers_held_polls_at_once() {
    let (hub, addr) = serve(open()).await;
    let held = send_get(addr, "/poll?channel=c&timeout=30").await;
    wait_subscriptions(&hub, 1).await;
    hub.begin_shutdown();
    let answer = answer(held).await;
    assert_eq!(answer["events"], serde_json::json!([]));
    assert!(answer["cursor"].as_str().unwrap().ends_with(",c=0"));
    wait_subscriptions(&hub, 0).await;
}

#[tokio::test]
async fn a_batch_stops_at_the_limit_with_the_cursor_after_its_last_event() {
    let (hub, addr) = serve(open().batch(3)).await;
    let c = Channel::new("c").unwrap();
    for i in 0..5 {
        hub.publish(NewEvent::new(c.clone(), Payload::text(i.to_string())))
            .await
            .unwrap();
    }
    let first = answer(send_get(addr, "/poll?channel=c&cursor=earliest&timeout=5").await).await;
    let offsets: Vec<_> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2, 3]);
    let cursor = first["cursor"].as_str().unwrap();
    assert!(cursor.ends_with(",c=3"), "{cursor}");
    let rest =
        answer(send_get(addr, &format!("/poll?channel=c&cursor={cursor}&timeout=5")).await).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 2);
    assert!(rest["cursor"].as_str().unwrap().ends_with(",c=5"));
}

#[tokio::test]
async fn polls_and_publishes_keep_to_the_request_permissions() {
    let anonymous = Permissions::anonymous()
        .allow_subscribe(ChannelPattern::parse_list("public:*").unwrap())
        .allow_publish(ChannelPattern::parse_list("public:chat").unwrap());
    let edge = Edge::default().authenticator(Arc::new(Fixed(anonymous)));
    let (hub, addr) = serve(rt_poll::Config::default().edge(edge)).await;
    let ok = answer(send_get(addr, "/poll?channel=public:news&timeout=0").await).await;
    assert_eq!(ok["events"], serde_json::json!([]));
    let (status, denied) =
        status_and_body(send_get(addr, "/poll?channel=public:news,private&timeout=0").await).await;
    assert_eq!(status, 401, "{denied}");
    assert_eq!(denied["error"]["code"], "unauthorized");

    let post = |body: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /poll/publish HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        status_and_body(stream).await
    };
    let (status, ack) = post(r#"{"channel":"public:chat","data":"hi"}"#).await;
    assert_eq!((status, ack["offset"].as_u64()), (200, Some(1)), "{ack}");
    let (status, denied) = post(r#"{"channel":"public:news","data":"hi"}"#).await;
    assert_eq!(status, 401, "{denied}");
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn without_an_authenticator_every_request_is_refused() {
    let (hub, addr) = serve(rt_poll::Config::default()).await;
    let publish = r#"{"channel":"c","data":"hi"}"#;
    for stream in [
        send_get(addr, "/poll?channel=c&timeout=0").await,
        send(
            addr,
            "GET",
            "/poll?channel=c&timeout=0",
            &[("Authorization", "Bearer any")],
            "",
        )
        .await,
        send(addr, "POST", "/poll/publish", &[], publish).await,
    ] {
        let (status, refused) = status_and_body(stream).await;
        assert_eq!(status, 401, "{refused}");
        assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("allow_anonymous"), "{message}");
    }
    assert_eq!(hub.stats().subscriptions, 0);
    // The refused publish was not stored: this one is the channel's first event.
    let first = hub
        .publish(NewEvent::new(
            Channel::new("c").unwrap(),
            Payload::text("x"),
        ))
        .await
        .unwrap();
    assert_eq!(first.event.offset(), 1);
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let listed = rt_poll::Config::default().edge(
        Edge::default()
            .allow_anonymous()
            .origins(Origins::parse("https://app.example")),
    );
    let (hub, addr) = serve(listed).await;
    let poll = "/poll?channel=c&timeout=0";
    let publish = r#"{"channel":"c","data":"hi"}"#;
    // `send` says `Host: test`: `http://test` is the endpoint's own origin.
    for origin in ["https://evil.example", "http://test:8080", "null"] {
        for stream in [
            send(addr, "GET", poll, &[("Origin", origin)], "").await,
            send(
                addr,
                "POST",
                "/poll/publish",
                &[("Origin", origin)],
                publish,
            )
            .await,
        ] {
            let (status, refused) = status_and_body(stream).await;
            assert_eq!(status, 403, "{origin}: {refused}");
            assert_eq!(refused["error"]["code"], "origin_not_allowed", "{refused}");
        }
    }
    let preflight = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let (status, _) =
        status_and_body(send(addr, "OPTIONS", "/poll/publish", &preflight, "").await).await;
    assert_eq!(status, 403);
    assert_eq!(hub.stats().subscriptions, 0);

    // The endpoint's own pages need no listing and get no CORS headers; listed ones get them.
    let (status, head, body) =
        whole_answer(send(addr, "GET", poll, &[("Origin", "http://test")], "").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let (status, head, body) =
        whole_answer(send(addr, "GET", poll, &[("Origin", "https://app.example")], "").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    let (status, ack) = status_and_body(
        send(
            addr,
            "POST",
            "/poll/publish",
            &[("Origin", "https://app.example")],
            publish,
        )
        .await,
    )
    .await;
    // Only this publish was stored: the refused ones never reached the hub.
    assert_eq!((status, ack["offset"].as_u64()), (200, Some(1)), "{ack}");

    // The default is same-origin only.
    let (_, addr) = serve(open()).await;
    let (status, refused) =
        status_and_body(send(addr, "GET", poll, &[("Origin", "https://app.example")], "").await)
            .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, _) =
        status_and_body(send(addr, "GET", poll, &[("Origin", "http://test")], "").await).await;
    assert_eq!(status, 200);
}
