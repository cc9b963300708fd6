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
