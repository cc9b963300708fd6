//! Request heads hyper refuses by itself (HTTP/1.1) get the JSON error body every other rt
//! error has (issue #16, item 6): `431` over `--max-header-bytes`, `400` for a malformed head.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use rt_tests::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and reads the answer until the server closes.
async fn raw(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server did not close in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line and the parsed JSON body of `answer`.
fn split(answer: &str) -> (&str, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    let status = head.lines().next().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (status, json)
}

#[tokio::test]
async fn an_oversized_head_is_431_with_a_json_body() {
    let server = Server::start(&["--max-header-bytes", "8192"]).await;
    let big = "x".repeat(12 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nhost: rt\r\nx-big: {big}\r\n\r\n");
    let answer = raw(&server, request.as_bytes()).await;
    let (status, json) = split(&answer);
    assert_eq!(
        status, "HTTP/1.1 431 Request Header Fields Too Large",
        "{answer}"
    );
    assert_eq!(json["error"]["code"], "header_too_large");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    // The server goes on serving.
    assert_eq!(server.health().await["status"], "ok");
}

#[tokio::test]
async fn a_malformed_head_is_400_with_a_json_body() {
    let server = Server::start(&[]).await;
    let answer = raw(&server, b"GET /health HTTP/1.1\r\nbad header line\r\n\r\n").await;
    let (status, json) = split(&answer);
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{answer}");
    assert_eq!(json["error"]["code"], "bad_request");
}
