//! The endpoint in-process over real sockets, where the hub itself can be inspected.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rt_core::{
    Channel, ChannelPattern, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Permissions,
    Retention,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(config: rt_poll::Config) -> (Hub, SocketAddr) {
    serve_as(config, None).await
}

/// Serves with `permissions` put in every request's extensions, as an authenticating server
/// in front of the endpoint would.
async fn serve_as(config: rt_poll::Config, permissions: Option<Permissions>) -> (Hub, SocketAddr) {
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
            let poll = poll.clone();
            let permissions = permissions.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: http::Request<_>| {
                    let poll = poll.clone();
                    if let Some(p) = &permissions {
                        req.extensions_mut().insert(p.clone());
                    }
                    async move { Ok::<_, Infallible>(poll.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (hub, addr)
}

async fn send_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads a whole `Connection: close` answer: status and JSON body.
async fn status_and_body(mut stream: TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
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
    let (hub, addr) = serve(rt_poll::Config::default()).await;
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
    let (hub, addr) = serve(rt_poll::Config::default()).await;
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
    let mut config = rt_poll::Config::default();
    config.batch = 3;
    let (hub, addr) = serve(config).await;
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
    let (hub, addr) = serve_as(rt_poll::Config::default(), Some(anonymous)).await;
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
