//! Redis goes away under two real `rt-server` nodes while a publisher is running: publishes
//! fail with `503` (never reported as published), health degrades, subscribers stay
//! connected; Redis comes back and the nodes recover by themselves. With its data (an
//! append-only file synced on every write), nothing acknowledged is lost and old cursors
//! resume exactly; empty, subscribers and resuming clients learn that continuity was lost
//! (`recovered: false`). The scenario is [`cluster::scenarios::outage`], shared with NATS.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use cluster::scenarios::{outage, Backplane};

/// Our own Redis, which the scenario kills and starts again.
impl Backplane for rt_tests::RedisServer {
    const NAME: &'static str = "Redis";

    fn url(&self) -> String {
        rt_tests::RedisServer::url(self)
    }

    fn stop(&mut self) {
        rt_tests::RedisServer::stop(self);
    }

    fn restart(&mut self) {
        self.resume();
    }

    fn keeps_data(&self) -> bool {
        self.is_persistent()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_then_nodes_recover_and_clients_learn_of_the_gap() {
    outage(&mut rt_tests::RedisServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_its_data_loses_nothing_acknowledged() {
    outage(&mut rt_tests::RedisServer::start_persistent()).await;
}

/// `--redis-timeout` bounds how long a node waits for a Redis that stalls (frozen with
/// SIGSTOP: its connections stay open, nothing is answered). At 300 ms a publish answers
/// `503` well within a second and the node reports `degraded`; at 10 s a publish sent during
/// a 1 s stall waits it out and succeeds, and the node stays `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_timeout_bounds_the_wait_for_a_stalled_redis() {
    use std::time::{Duration, Instant};

    use http::StatusCode;
    use rt_tests::Server;

    let redis = rt_tests::RedisServer::start();
    let url = redis.url();
    let prefix = cluster::prefix("timeout");
    let node = |timeout: &'static str| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            Server::start(&[
                "--backplane",
                &url,
                "--redis-prefix",
                &prefix,
                "--redis-timeout",
                timeout,
            ])
            .await
        }
    };
    let (short, long) = (node("300ms").await, node("10s").await);
    for n in [&short, &long] {
        let (status, ack) = cluster::publish(n, "stall", "before").await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }

    redis.pause();
    let started = Instant::now();
    let (status, err) = cluster::publish(&short, "stall", "short").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "a 300 ms timeout answered after {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while cluster::health(&short).await["status"] != "degraded" {
        assert!(
            Instant::now() < deadline,
            "not degraded 1 s after a timed-out publish: {}",
            cluster::health(&short).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let ((status, ack), ()) = tokio::join!(cluster::publish(&long, "stall", "long"), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.unpause();
    });
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before Redis came back: {ack}"
    );
    assert_eq!(cluster::health(&long).await["status"], "ok");
    cluster::wait_health(&short, "ok").await;
    let (status, ack) = cluster::publish(&short, "stall", "after").await;
    assert_eq!(status, StatusCode::OK, "{ack}");
}
