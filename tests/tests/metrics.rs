//! `/metrics` of the real binary: Prometheus text whose series follow what clients do
//! (connections by transport, held polls, subscriptions, publishes by result, deliveries,
//! history, backplane state, errors), and the per-connection log lines.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use http::StatusCode;
use rt_tests::http::{get, post_json};
use rt_tests::{ws, Server};
use serde_json::{json, Value};

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

/// Waits until a scrape satisfies `done` (connections close asynchronously, and one scrape
/// is not a snapshot: the exporter reads every counter before any gauge) and returns it.
async fn wait_until(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(server).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never came:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `series` has `value`.
async fn wait_for(server: &Server, series: &str, value: f64) -> String {
    let what = format!("{series} = {value}");
    wait_until(server, &what, |text| sample(text, series) == Some(value)).await
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
    let mut ws = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut ws, &["m"], None).await;

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
    assert_eq!(ws::recv(&mut ws).await["data"], "x");
    // The event written to the WebSocket client is counted for its transport.
    wait_for(&server, "rt_events_sent_total{transport=\"ws\"}", 1.0).await;

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
    wait_for(&server, "rt_connections{transport=\"ws\"}", 0.0).await;
    wait_until(&server, "the WebSocket's close counted", |text| {
        text.contains("rt_connections_closed_total{transport=\"ws\"")
    })
    .await;
    wait_for(&server, "rt_connections{transport=\"sse\"}", 0.0).await;
    poll.abort();
    assert_eq!(
        sample(
            &scrape(&server).await,
            "rt_connections_opened_total{transport=\"sse\"}"
        ),
        Some(1.0)
    );

    // A short poll: one request, answered 200 (polls log at debug, which the tests enable).
    let (status, _, _) = get(&server.url("/poll?channel=m&timeout=0")).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // Every connection got an open and a close line with transport, duration and code
    // (written as connections end, so waited for).
    let opened = |log: &str, transport: &str| {
        log.lines().any(|l| {
            l.contains("connection opened") && l.contains(&format!("transport=\"{transport}\""))
        })
    };
    let closed = |log: &str, transport: &str, close: &str| {
        log.lines().any(|l| {
            l.contains("connection closed")
                && l.contains(&format!("transport=\"{transport}\""))
                && l.contains("duration_ms=")
                && l.contains(close)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(server.log_path()).unwrap();
        let complete = ["ws", "sse", "poll"].iter().all(|t| opened(&log, t))
            && closed(&log, "ws", "close=")
            && closed(&log, "sse", "close=\"client_gone\"")
            && closed(&log, "poll", "close=\"200\"");
        if complete {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing connection open/close lines (ws, sse, poll):\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn series_exist_at_zero_before_first_use_for_each_enabled_transport() {
    let server = Server::start(&["--disable", "ws"]).await;
    let text = scrape(&server).await;
    for series in [
        "rt_connections{transport=\"sse\"}",
        "rt_connections{transport=\"poll\"}",
        "rt_connections_opened_total{transport=\"sse\"}",
        "rt_events_sent_total{transport=\"poll\"}",
        "rt_auth_failures_total{transport=\"poll_publish\",reason=\"missing\"}",
        "rt_auth_failures_total{transport=\"api_publish\",reason=\"invalid\"}",
        "rt_deliveries_total",
        "rt_publishes_total{result=\"stored\"}",
        "rt_lagged_total",
        "rt_resyncs_total",
        "rt_subscriptions",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series}:\n{text}");
    }
    // A disabled transport has no series.
    assert!(!text.contains("transport=\"ws\""), "{text}");
}

#[tokio::test]
async fn no_metrics_turns_the_endpoint_off() {
    let server = Server::start(&["--no-metrics"]).await;
    let (status, _, body) = get(&server.url("/metrics")).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Waits until `series` is at least `value` (counters reported in batches).
async fn wait_at_least(server: &Server, series: &str, value: f64) -> String {
    let what = format!("{series} >= {value}");
    wait_until(server, &what, |text| {
        sample(text, series).is_some_and(|v| v >= value)
    })
    .await
}

/// The same series with the Redis backplane: the history gauge follows what Redis retains
/// (from the publish script's answer and from history reads, without scanning Redis) and
/// decays once the history age has passed; publishes, their latency and deliveries across
/// nodes are counted; a Redis outage shows as `rt_backplane_up 0` and `unavailable` errors.
#[tokio::test]
async fn metrics_with_the_redis_backplane() {
    // Our own Redis, which this test stops and starts again.
    let mut redis = rt_tests::RedisServer::start();
    let url = redis.url();
    let prefix = rt_tests::unique("metrics");
    let args = [
        "--backplane",
        url.as_str(),
        "--redis-prefix",
        prefix.as_str(),
        "--history-size",
        "3",
    ];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    assert_eq!(sample(&scrape(&a).await, "rt_backplane_up"), Some(1.0));
    let mut ws = ws::connect(&b.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut ws, &["h"], None).await;

    for i in 1..=5 {
        let (status, ack) = publish(&a, json!({"channel": "h", "data": format!("h{i}")})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    for i in 1..=2 {
        let (status, ack) = publish(&a, json!({"channel": "g", "data": i})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    let text = scrape(&a).await;
    // h keeps its last 3 events (--history-size 3), g both of its 2.
    assert_eq!(sample(&text, "rt_history_events"), Some(5.0), "{text}");
    assert_eq!(
        sample(&text, "rt_publishes_total{result=\"stored\"}"),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rt_publish_duration_seconds_count"),
        Some(7.0),
        "one Redis round trip timed per publish: {text}"
    );

    // Node B delivers A's publishes from Redis, and counts them.
    let mut got = Vec::new();
    while got.len() < 5 {
        let v = ws::recv(&mut ws).await;
        if v["type"] == "event" {
            got.push(v["data"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(got, ["h1", "h2", "h3", "h4", "h5"]);
    wait_at_least(&b, "rt_deliveries_total", 5.0).await;
    // B published nothing; reading h's history shows it what Redis retains.
    let (status, _, body) = get(&b.url("/poll?channel=h&cursor=earliest&timeout=0"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["events"].as_array().unwrap().len(), 3, "{answer}");
    wait_for(&b, "rt_history_events", 3.0).await;

    // Redis goes away: the state gauge drops and refused publishes count as errors.
    redis.stop();
    wait_for(&a, "rt_backplane_up", 0.0).await;
    let (status, err) = publish(&a, json!({"channel": "h", "data": "lost"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    let text = scrape(&a).await;
    assert_eq!(
        sample(&text, "rt_errors_total{kind=\"unavailable\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rt_publishes_total{result=\"unavailable\"}"),
        Some(1.0),
        "{text}"
    );
    redis.resume();
    wait_for(&a, "rt_backplane_up", 1.0).await;
    drop(ws);

    // With a short history age the gauge goes back to 0 by itself once the events aged out.
    let short = rt_tests::unique("metrics-age");
    let c = Server::start(&[
        "--backplane",
        url.as_str(),
        "--redis-prefix",
        short.as_str(),
        "--history-age",
        "1s",
    ])
    .await;
    for i in 1..=2 {
        let (status, ack) = publish(&c, json!({"channel": "aged", "data": i})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    assert_eq!(sample(&scrape(&c).await, "rt_history_events"), Some(2.0));
    // Swept on the link's 5 s ping timer: within 1 s + 5 s, waited for up to 10 s.
    wait_for(&c, "rt_history_events", 0.0).await;
}
