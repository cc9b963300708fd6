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
    // The held poll, answered 200 at shutdown (polls log at debug, which the tests enable).
    assert!(
        closed.iter().any(|v| v["fields"]["transport"] == "poll"
            && v["fields"]["close"] == "200"
            && v["fields"]["duration_ms"].as_u64().is_some()),
        "{closed:?}"
    );
}

/// Every event of `channel` that `server` can read from history, paging with the poll cursor.
async fn history(server: &Server, channel: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = "earliest".to_owned();
    loop {
        let url = server.url(&format!(
            "/poll?channel={channel}&timeout=0&cursor={}",
            cursor.replace(',', "%2C").replace('=', "%3D")
        ));
        let (status, _, body) = rt_tests::http::get(&url).await.unwrap();
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["recovered"], true, "{answer}");
        let page = answer["events"].as_array().unwrap().clone();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
        cursor = answer["cursor"].as_str().unwrap().to_owned();
    }
}

/// "Flush the backplane" needs nothing at shutdown: a publish is acknowledged only once the
/// backplane has stored it (the Redis script ran), and nothing is buffered in the node. So
/// publishes racing a SIGTERM either fail (the node stopped accepting) or were stored: every
/// one the node acknowledged is readable from another node right after it exited, and from
/// the same node after it restarts.
#[tokio::test]
async fn publishes_acknowledged_up_to_sigterm_are_in_redis_for_other_nodes_and_after_restart() {
    use std::sync::{Arc, Mutex};

    let redis = rt_tests::redis_url();
    let prefix = rt_tests::unique("flush");
    let args = [
        "--backplane",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
        "--history-size",
        "100000",
    ];
    let mut a = Server::start(&args).await;
    let b = Server::start(&args).await;

    // Four publishers on node A, each until A stops answering.
    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let (url, acked) = (a.url("/api/publish"), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let body = json!({"channel": "flush", "data": format!("p{p}-{i}")});
                    let sent = rt_tests::http::send(
                        http::Method::POST,
                        &url,
                        &[
                            ("x-api-key", "test-key"),
                            ("content-type", "application/json"),
                        ],
                        body.to_string(),
                    )
                    .await;
                    match sent {
                        Ok((status, _, body)) if status == 200 => {
                            let mut ack: Value = serde_json::from_slice(&body).unwrap();
                            ack["data"] = format!("p{p}-{i}").into();
                            acked.lock().unwrap().push(ack);
                        }
                        // Refused or cut: not acknowledged, so nothing is promised.
                        Ok(_) | Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes are too slow"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = tokio::task::spawn_blocking(move || {
        let status = a.terminate(Duration::from_secs(20));
        (a, status)
    });
    let (mut a, status) = exit.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    for p in publishers {
        tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("a publisher did not stop after the node exited")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40, "{}", acked.len());

    let stored = |events: &[Value]| -> std::collections::HashMap<u64, (String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e["offset"].as_u64().unwrap(),
                    (
                        e["epoch"].as_str().unwrap().to_owned(),
                        e["data"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect()
    };
    let check = |from: &str, events: &[Value]| {
        let stored = stored(events);
        for ack in &acked {
            let offset = ack["offset"].as_u64().unwrap();
            let expected = (
                ack["epoch"].as_str().unwrap().to_owned(),
                ack["data"].as_str().unwrap().to_owned(),
            );
            assert_eq!(
                stored.get(&offset),
                Some(&expected),
                "acknowledged {ack} is not in history read from {from}"
            );
        }
    };
    check("node B", &history(&b, "flush").await);
    a.restart().await;
    check("node A after its restart", &history(&a, "flush").await);
}
