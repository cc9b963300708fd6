//! The endpoint in-process over real sockets, where the hub itself can be inspected.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
            let poll = poll.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let poll = poll.clone();
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

async fn answer(mut stream: TcpStream) -> Value {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
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
