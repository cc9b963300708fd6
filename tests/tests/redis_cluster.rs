//! rt nodes on a real Redis Cluster (3 masters with a replica each, started here as
//! `redis-server --cluster-enabled yes` processes): the multi-node scenarios every
//! distributed backplane passes, channels spread over every shard, a master killed and its
//! replica promoted, and wrong cluster URLs.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use cluster::scenarios::{self, Backplane};
use cluster::{publish, ws_recv, ws_subscribe};
use http::StatusCode;
use rt_tests::{redis_cmd, RedisCluster, Server};

/// Runs the shared scenarios one after the other on one cluster (starting a cluster costs
/// seconds; each scenario has its own key prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multinode_scenarios_pass_on_a_redis_cluster() {
    let redis = RedisCluster::start();
    let url = redis.url();
    scenarios::fanout(&url).await;
    scenarios::resume(&url).await;
    scenarios::order(&url).await;
    scenarios::idempotent_retry(&url).await;
}

/// Channels land on every shard, each channel's keys on the master of its slot: a subscriber
/// on one node gets what another node publishes on all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_every_shard_and_each_lives_in_one_slot() {
    let redis = RedisCluster::start();
    let prefix = cluster::prefix("spread");
    let url = redis.url();
    let args = [
        "--backplane",
        url.as_str(),
        "--redis-prefix",
        prefix.as_str(),
    ];
    let n = [Server::start(&args).await, Server::start(&args).await];
    let names: Vec<String> = (0..24).map(|i| format!("spread{i}")).collect();
    let channels: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut ws, answer) = ws_subscribe(&n[0], &channels, None).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    let mut shards = HashSet::new();
    for name in &channels {
        let (status, ack) = publish(&n[1], name, &format!("to {name}")).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        let epoch = ack["epoch"].as_str().unwrap();
        // The channel's history stream is on the master serving its hash tag's slot.
        let master = redis.master_of(&format!("{{{name}}}"));
        let stream = format!("{prefix}:{{{name}}}:{epoch}:s:{name}");
        assert_eq!(
            redis_cmd(&format!("redis://127.0.0.1:{master}"), &["EXISTS", &stream]),
            ":1\r\n",
            "{stream} is not on master {master}"
        );
        shards.insert(master);
    }
    assert_eq!(shards.len(), 3, "24 channels should use all 3 shards");
    let mut got = HashSet::new();
    for _ in &channels {
        let e = ws_recv(&mut ws).await;
        assert_eq!(
            (&e["type"], &e["offset"]),
            (&"event".into(), &1.into()),
            "{e}"
        );
        got.insert(e["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(got.len(), channels.len());
}

/// The master of channel `live` is SIGKILLed under two nodes while a publisher runs:
/// publishes answer `503` or succeed, never a `200` for what a replica does not hold; its
/// replica is promoted; once the killed node is back (as the new master's replica), every
/// acknowledged event is in history in one epoch, subscribers got each once, and a cursor
/// from before resumes exactly (the shared outage scenario, with a failover as the outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_fails_over_without_lying_or_a_silent_gap() {
    let mut failover = Failover {
        redis: RedisCluster::start(),
        killed: None,
    };
    assert!(
        !failover.redis.ports().is_empty(),
        "the failover test needs a cluster it owns (unset REDIS_CLUSTER_URL)"
    );
    scenarios::outage(&mut failover).await;
}

/// A shard down makes `/health` degraded and its channels answer `503`, while a channel on
/// another shard keeps being published and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_fails_only_its_channels() {
    let mut redis = RedisCluster::start();
    assert!(
        !redis.ports().is_empty(),
        "this test needs a cluster it owns (unset REDIS_CLUSTER_URL)"
    );
    let n = cluster::nodes(1, &redis.url(), "shard").await;
    let down = redis.master_of("{down}");
    let up = (0..100)
        .map(|i| format!("up{i}"))
        .find(|c| redis.master_of(&format!("{{{c}}}")) != down)
        .unwrap();
    let (mut ws, _) = ws_subscribe(&n[0], &[&up], None).await;
    assert_eq!(publish(&n[0], "down", "before").await.0, StatusCode::OK);

    redis.kill(down);
    cluster::wait_health(&n[0], "degraded").await;
    let (status, err) = publish(&n[0], "down", "while down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    for i in 0..3 {
        let (status, ack) = publish(&n[0], &up, &format!("u{i}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a channel on a healthy shard: {ack}"
        );
        let e = ws_recv(&mut ws).await;
        assert_eq!(
            (&e["offset"], &e["data"]),
            (&ack["offset"], &format!("u{i}").into()),
            "{e}"
        );
    }
}

/// The cluster as the outage scenario's backplane: stopping it kills the master of `live`.
struct Failover {
    redis: RedisCluster,
    killed: Option<u16>,
}

impl Backplane for Failover {
    const NAME: &'static str = "Redis";

    fn url(&self) -> String {
        self.redis.url()
    }

    fn stop(&mut self) {
        let master = self.redis.master_of("{live}");
        self.redis.kill(master);
        self.killed = Some(master);
    }

    fn restart(&mut self) {
        let killed = self.killed.take().expect("stopped before");
        // Its replica has taken over meanwhile; the old master rejoins as its replica.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.redis.master_of("{live}") == killed {
            assert!(
                std::time::Instant::now() < deadline,
                "no replica took over from {killed}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.redis.restart(killed);
        self.redis.wait_ok();
    }

    fn keeps_data(&self) -> bool {
        true
    }
}

/// A `redis-cluster://` URL that is malformed, or names a Redis that is not a cluster, stops
/// rt-server at startup with a message saying so.
#[test]
fn a_wrong_cluster_url_is_a_clear_startup_error() {
    let plain = rt_tests::redis_url().replace("redis://", "redis-cluster://");
    for (url, says) in [
        ("redis-cluster://", "redis-cluster:// needs host:port"),
        ("redis-cluster://127.0.0.1:1?db=2", "only option"),
        (plain.as_str(), "is not a Redis Cluster"),
    ] {
        let out = Command::new(rt_tests::server_binary())
            .args(["--listen", &format!("127.0.0.1:{}", rt_tests::free_port())])
            .args(["--backplane", url, "--dev"])
            .output()
            .expect("run rt-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: started anyway");
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}

/// rt-server on a Redis Cluster that speaks only TLS (clients, cluster bus and replication,
/// `--port 0`), reached with `rediss-cluster://` and `--redis-tls-ca`: events published on
/// one node reach the others, and clients resume exactly across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_publish_and_resume_exactly_on_a_redis_cluster_over_tls() {
    let redis = RedisCluster::start_tls();
    let url = redis.url();
    assert!(url.starts_with("rediss-cluster://"), "{url}");
    // No node answers in plain text: everything below went over TLS.
    let port = redis.ports()[0];
    let plain = std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        });
    assert_ne!(plain.as_deref(), Some(&b"+PONG\r\n"[..]));
    let ca = redis.ca().unwrap().to_str().unwrap().to_owned();
    scenarios::resume_with(&["--backplane", &url, "--redis-tls-ca", &ca]).await;
}

/// A Redis Cluster over TLS whose certificate the given CA (or, without one, the platform's
/// roots) did not sign stops rt-server at startup, saying so; and a CA given with a plain
/// `redis-cluster://` URL, where it would be ignored, is refused.
#[test]
fn a_redis_cluster_over_tls_with_a_wrong_ca_is_a_clear_startup_error() {
    let redis = RedisCluster::start_tls();
    let url = redis.url();
    let ca = redis.ca().unwrap().to_str().unwrap().to_owned();
    let dir = rt_tests::target_dir().join(rt_tests::unique("wrong-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let wrong = dir.join("ca.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let wrong = wrong.to_str().unwrap();
    let plain_url = url.replace("rediss-cluster://", "redis-cluster://");
    for (args, says) in [
        (
            vec!["--backplane", &url, "--redis-tls-ca", wrong],
            "TLS certificate was refused",
        ),
        (vec!["--backplane", &url], "TLS certificate was refused"),
        (
            vec!["--backplane", &plain_url, "--redis-tls-ca", &ca],
            "use rediss-cluster://",
        ),
    ] {
        let log = dir.join("stderr.txt");
        let mut server = Command::new(rt_tests::server_binary())
            .args(["--listen", &format!("127.0.0.1:{}", rt_tests::free_port())])
            .args(&args)
            .arg("--dev")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run rt-server");
        // Bounded: a server that keeps retrying instead of stopping fails the test.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = server.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = server.kill();
                let _ = server.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{args:?}: did not stop at startup ({status:?}): {stderr}"
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
