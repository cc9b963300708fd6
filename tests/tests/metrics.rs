//! `/metrics` of the real binary: Prometheus text whose series follow what clients do
//! (connections by transport, held polls, subscriptions, publishes by result, deliveries,
//! history, backplane state, errors), and the per-connection log lines.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use rt_tests::http::{get, post_json};
use rt_tests::Server;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The scraped exposition.
async fn scrape(server: &Server) -> String {
    let (status, headers, body) = get(&server.url("/metrics")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the sample `series` (name with its labels exactly as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Waits until `series` has `value` (connections close asynchronously).
async fn wait_for(server: &Server, series: &str, value: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(server).await;
        if sample(&text, series) == Some(value) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never became {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish(server: &Server, body: Value) -> (StatusCode, Value) {
    post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "test-key")],
        &body,
    )
    .await
}

#[tokio::test]
async fn metrics_follow_connections_publishes_and_deliveries() {
    let server = Server::start(&["--max-payload", "1000"]).await;
    let text = scrape(&server).await;
    assert!(text.contains("# TYPE rt_backplane_up gauge"), "{text}");
    assert_eq!(sample(&text, "rt_backplane_up"), Some(1.0), "{text}");

    // One WebSocket, one SSE stream and one held long poll on channel m.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws"))
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "subscribe", "channels": ["m"]}).to_string(),
    ))
    .await
    .unwrap();
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "heartbeat" {
                return v;
            }
        }
    };
    assert_eq!(next(&mut ws).await["type"], "subscribed");

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let sse = client
        .get(server.url("/sse?channel=m").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);

    let poll_url = server.url("/poll?channel=other&timeout=30");
    let poll = tokio::spawn(async move { get(&poll_url).await.unwrap() });

    wait_for(&server, "rt_connections{transport=\"poll\"}", 1.0).await;
    // A poll is a connection before its subscription has joined its channel.
    let text = wait_for(&server, "rt_channels", 2.0).await;
    assert_eq!(
        sample(&text, "rt_connections{transport=\"ws\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rt_connections{transport=\"sse\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "rt_subscriptions"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "rt_channels"), Some(2.0), "{text}");

    // Publishes: stored, an idempotent duplicate, and one too large.
    let msg = json!({"channel": "m", "data": "x", "id": "once"});
    assert_eq!(publish(&server, msg.clone()).await.0, StatusCode::OK);
    assert_eq!(publish(&server, msg).await.1["duplicate"], true);
    let big = json!({"channel": "m", "data": "y".repeat(2000)});
    assert_eq!(publish(&server, big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(next(&mut ws).await["data"], "x");

    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, "rt_publishes_total{result=\"stored\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rt_publishes_total{result=\"duplicate\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "rt_history_events"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "rt_errors_total{kind=\"payload_too_large\"}"),
        Some(1.0),
        "one refused publish is one error of its kind: {text}"
    );
    assert!(
        sample(&text, "rt_deliveries_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("rt_publish_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rt_http_responses_total{route=\"api_publish\",status=\"413\"}")),
        "{text}"
    );

    // Closing each client brings its gauge back to 0 and counts the close.
    ws.close(None).await.unwrap();
    drop(sse);
    drop(client);
    let text = wait_for(&server, "rt_connections{transport=\"ws\"}", 0.0).await;
    assert!(
        text.contains("rt_connections_closed_total{transport=\"ws\""),
        "{text}"
    );
    wait_for(&server, "rt_connections{transport=\"sse\"}", 0.0).await;
    poll.abort();
    assert_eq!(
        sample(
            &scrape(&server).await,
            "rt_connections_opened_total{transport=\"sse\"}"
        ),
        Some(1.0)
    );

    // Every connection got an open and a close line with transport, duration and code.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    for transport in ["ws", "sse"] {
        assert!(
            log.lines().any(|l| l.contains("connection opened")
                && l.contains(&format!("transport=\"{transport}\""))),
            "no open line for {transport}:\n{log}"
        );
        assert!(
            log.lines().any(|l| l.contains("connection closed")
                && l.contains(&format!("transport=\"{transport}\""))
                && l.contains("duration_ms=")
                && l.contains("close=")),
            "no close line for {transport}:\n{log}"
        );
    }
}

#[tokio::test]
async fn no_metrics_turns_the_endpoint_off() {
    let server = Server::start(&["--no-metrics"]).await;
    let (status, _, body) = get(&server.url("/metrics")).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
