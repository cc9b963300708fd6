//! Graceful shutdown of the real binary with every transport connected at once: on SIGTERM
//! WebSockets get close 1001, SSE streams end with a `retry:` hint and their cursor, held
//! polls are answered with their cursor, the process exits by itself, and a connection that
//! never finishes does not hold it past `--shutdown-deadline`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use rt_tests::Server;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_ends_every_transport_its_own_way_and_exits_within_the_deadline() {
    let mut server = Server::start(&[
        "--shutdown-deadline",
        "2s",
        "--header-read-timeout",
        "120s",
        "--handshake-timeout",
        "120s",
        "--log-format",
        "json",
    ])
    .await;

    // A WebSocket subscriber.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws"))
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "subscribe", "channels": ["bye"]}).to_string(),
    ))
    .await
    .unwrap();
    // An SSE stream.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let sse = client
        .get(server.url("/sse?channel=bye").parse().unwrap())
        .await
        .unwrap();
    let mut sse = sse.into_body();
    // A held long poll.
    let poll_url = server.url("/poll?channel=bye&timeout=60");
    let poll = tokio::spawn(async move { rt_tests::http::get(&poll_url).await.unwrap() });
    // A client that never finishes its request: only the deadline ends it.
    let mut stuck = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stuck
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ws_reader = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    });
    let sse_reader = tokio::spawn(async move {
        let mut text = String::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(15), sse.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Ok(None | Some(Err(_))) => return text,
                Err(_) => panic!("the SSE stream did not end: {text}"),
            }
        }
    });

    let log = server.log_path().to_path_buf();
    let exit = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(
        exit.is_some_and(|s| s.success()),
        "rt-server did not exit by itself within 30 s despite --shutdown-deadline 2s: {exit:?}"
    );

    let close = ws_reader.await.unwrap().expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    let text = sse_reader.await.unwrap();
    assert!(text.contains("event: rt.shutdown"), "{text}");
    assert!(text.contains("\nretry: "), "no retry hint: {text}");
    let (status, _, body) = poll.await.unwrap();
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        answer["cursor"]
            .as_str()
            .is_some_and(|c| c.contains("bye=")),
        "{answer}"
    );

    // The JSON log has the WebSocket's close line with its code.
    let log = std::fs::read_to_string(log).unwrap();
    let closed: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "connection closed")
        .collect();
    assert!(
        closed
            .iter()
            .any(|v| v["fields"]["transport"] == "ws" && v["fields"]["close"] == "1001"),
        "{closed:?}"
    );
    assert!(
        closed
            .iter()
            .any(|v| v["fields"]["transport"] == "sse"
                && v["fields"]["duration_ms"].as_u64().is_some()),
        "{closed:?}"
    );
}
