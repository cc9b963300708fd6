//! Several real `rt-server` processes on one real Redis: one stream per channel across nodes,
//! exact resume on any node with any transport, one order under concurrent publishers,
//! idempotent retries on any node (the scenarios of tests/tests/cluster/scenarios.rs), and
//! Redis over TLS.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use cluster::{publish, ws_recv, ws_subscribe};
use http::StatusCode;
use rt_tests::Server;

#[tokio::test]
async fn websocket_and_sse_on_two_nodes_get_what_a_third_publishes() {
    cluster::scenarios::fanout(&rt_tests::redis_url()).await;
}

#[tokio::test]
async fn websocket_and_sse_cut_from_one_node_resume_on_another_and_poll_cursors_travel() {
    cluster::scenarios::resume(&rt_tests::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_every_node_give_one_order() {
    cluster::scenarios::order(&rt_tests::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_on_other_nodes_is_stored_once() {
    cluster::scenarios::idempotent_retry(&rt_tests::redis_url()).await;
}

#[tokio::test]
async fn nodes_reach_redis_over_tls() {
    let redis = cluster::TlsRedis::start();
    let url = format!("rediss://localhost:{}", redis.port);
    let ca = redis.ca();
    let prefix = rt_tests::unique("mn-tls");
    let args = [
        "--backplane",
        &url,
        "--redis-prefix",
        &prefix,
        "--redis-tls-ca",
        ca.to_str().unwrap(),
    ];
    let a = rt_tests::Server::start(&args).await;
    let b = rt_tests::Server::start(&args).await;
    cluster::wait_health(&a, "ok").await;
    cluster::wait_health(&b, "ok").await;
    let (mut ws, _) = ws_subscribe(&a, &["secure"], None).await;
    let (status, ack) = publish(&b, "secure", "over TLS").await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let e = ws_recv(&mut ws).await;
    assert_eq!(
        (e["data"].as_str(), e["offset"].as_u64()),
        (Some("over TLS"), Some(1))
    );

    // Without the CA, the server's certificate is not trusted: the node stays degraded.
    let untrusted =
        rt_tests::Server::start(&["--backplane", &url, "--redis-prefix", &prefix]).await;
    let health = cluster::health(&untrusted).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let (status, _) = publish(&untrusted, "secure", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_websocket_burst_of_publishes_is_stored_and_answered_in_the_order_sent() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let url = rt_tests::redis_url();
    let prefix = rt_tests::unique("mn-pipeline");
    let args = ["--backplane", &url, "--redis-prefix", &prefix];
    // The burst is above the default per-connection rate limit.
    let publisher = [
        &args[..],
        &["--ws-rate-limit", "100000", "--ws-rate-burst", "100000"],
    ]
    .concat();
    let (a, b) = (Server::start(&publisher).await, Server::start(&args).await);
    let (mut sub, _) = ws_subscribe(&b, &["burst"], None).await;
    let mut ws = cluster::ws::connect(&a.ws_url("/ws"), &[]).await;
    // Sent without waiting for any answer (the server has many publishes in flight to
    // Redis at once), with a ping in the middle.
    const N: u64 = 400;
    for i in 1..=N {
        let publish = serde_json::json!({
            "type": "publish", "channel": "burst", "data": format!("m{i}"), "id": format!("p{i}"),
        });
        ws.feed(Message::text(publish.to_string())).await.unwrap();
        if i == N / 2 {
            let ping = serde_json::json!({"type": "ping", "id": "mid"});
            ws.feed(Message::text(ping.to_string())).await.unwrap();
        }
    }
    ws.flush().await.unwrap();
    // Acks in the order sent, with offsets in that order; the pong after exactly the
    // publishes sent before it.
    for i in 1..=N {
        let ack = ws_recv(&mut ws).await;
        assert_eq!(ack["type"], "published", "{ack}");
        assert_eq!(ack["id"], format!("p{i}"), "{ack}");
        assert_eq!(ack["offset"], i, "{ack}");
        if i == N / 2 {
            let pong = ws_recv(&mut ws).await;
            assert_eq!(
                (&pong["type"], &pong["id"]),
                (&"pong".into(), &"mid".into())
            );
        }
    }
    // Stored in that order: the subscriber on the other node gets them so.
    for i in 1..=N {
        let e = ws_recv(&mut sub).await;
        assert_eq!(
            (e["offset"].as_u64(), e["data"].as_str()),
            (Some(i), Some(format!("m{i}").as_str())),
            "{e}"
        );
    }
}
