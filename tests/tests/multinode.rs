//! Several real `rt-server` processes on one real Redis: one stream per channel across nodes,
//! exact resume on any node with any transport, one order under concurrent publishers,
//! idempotent retries on any node (the scenarios of tests/tests/cluster/scenarios.rs), and
//! Redis over TLS.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use cluster::{publish, ws_recv, ws_subscribe};
use http::StatusCode;

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
