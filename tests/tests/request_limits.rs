//! Limits on what a request may send, answered with the JSON error body every rt error has
//! (issue #16, items 5 and 6): request heads hyper refuses by itself (HTTP/1.1: `431` over
//! `--max-header-bytes`, `400` for a malformed head), and publish bodies that arrive too
//! slowly (`408` after `--body-read-timeout`).
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

/// Sends a publish whose body trickles in a byte at a time, every 200 ms, on `path`.
async fn trickle(server: &Server, path: &str, headers: &str) -> (String, Duration) {
    let body = br#"{"channel":"slow","data":"one byte at a time"}"#;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: rt\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in body {
        // Bounded: the body takes 10 s at this pace, the server must answer well before.
        tokio::select! {
            n = s.read(&mut buf) => {
                let n = n.unwrap();
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                // The server may close its side once it answered; a failed write is fine.
                let _ = s.write_all(&[*byte]).await;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer)).await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_publish_body_that_trickles_in_is_cut_with_408() {
    let server = Server::start(&["--body-read-timeout", "1s"]).await;
    for (path, headers) in [
        ("/poll/publish", ""),
        ("/api/publish", "x-api-key: test-key\r\n"),
    ] {
        let (answer, took) = trickle(&server, path, headers).await;
        let (status, json) = split(&answer);
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{path}: {answer}");
        assert_eq!(json["error"]["code"], "request_timeout", "{path}");
        assert!(
            took < Duration::from_secs(5),
            "{path}: answered after {took:?}"
        );
    }
    let cut = "rt_connections_cut_off_total{reason=\"body_timeout\"}";
    assert_eq!(server.metric(cut).await, 2.0);
    // Nothing was published.
    let (_, _, body) =
        rt_tests::http::get(&server.url("/poll?channel=slow&cursor=earliest&timeout=0"))
            .await
            .unwrap();
    let poll: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(poll["events"], serde_json::json!([]), "{poll}");
}
