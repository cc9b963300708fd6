//! `Listener` over real sockets: the limits it promises are seen by a raw TCP client.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rt_http::{ConnectionLimits, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Serves "ok" within `limits` on a free port; the sender stops accepting.
async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(rt_http::full("ok")))
    });
    tokio::spawn(async move {
        let connections = Listener::new(tcp, limits)
            .serve(service, async {
                let _ = stopped.await;
            })
            .await;
        connections.shutdown().await;
    });
    (addr, stop)
}

/// Sends `request` and reads until the server closes or 2 s pass.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn a_connection_over_the_limit_gets_503_json_and_the_first_keeps_working() {
    let (addr, _stop) = start(ConnectionLimits::default().max_connections(1)).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(GET).await.unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("ok"));

    let mut second = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut second, GET).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );

    // The admitted connection is untouched by the refusal.
    first.write_all(GET).await.unwrap();
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("ok"));
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let limits = ConnectionLimits::default().handshake_timeout(Duration::from_millis(200));
    let (addr, _stop) = start(limits).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "not closed: {read:?}");
}

#[tokio::test]
async fn an_oversized_head_gets_431_with_the_json_error_body() {
    let (addr, _stop) = start(ConnectionLimits::default().max_header_bytes(8192)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = exchange(&mut client, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains(r#""error""#), "{answer}");
}

#[tokio::test]
async fn after_shutdown_no_connection_is_accepted() {
    let (addr, stop) = start(ConnectionLimits::default()).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert!(exchange(
        &mut client,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .await
    .ends_with("ok"));
    stop.send(()).unwrap();
    let refused = async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), refused)
        .await
        .expect("the listener still accepts after shutdown");
}
