//! A node killed under load: three real `rt-server` processes on one real Redis, clients over
//! WebSocket, SSE and long polling spread over them, one steady publisher; one node gets
//! SIGKILL and its clients resume on the others with their cursors. Every client must end
//! with every acknowledged event exactly once, in order.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::{enc, position};
use futures_util::StreamExt;
use http::StatusCode;
use rt_tests::http::post_json;
use rt_tests::sse::SseStream;
use rt_tests::{ws, Server};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CHANNEL: &str = "chaos";
/// Clients per transport.
const PER_TRANSPORT: usize = 100;
/// Publishes after the first (which only gives the clients their starting cursor).
const PUBLISHES: u64 = 100;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ws,
    Sse,
    Poll,
}

/// What every client shares: the nodes' base URLs (`http://addr`), and how many clients
/// have received an event.
struct World {
    nodes: Vec<String>,
    started: AtomicUsize,
    /// Clients that moved to another node after their first event.
    moved: AtomicUsize,
}

/// One client: from `cursor` on node `node`, moving to the next node whenever its
/// connection fails, until it has offset `last`; returns the offsets it received, in order.
async fn client(
    world: Arc<World>,
    kind: Kind,
    mut node: usize,
    epoch: String,
    last: u64,
) -> Vec<u64> {
    let mut got: Vec<u64> = Vec::new();
    let mut counted = false;
    let mut note = |got: &mut Vec<u64>, offset: u64| {
        got.push(offset);
        if !counted {
            counted = true;
            world.started.fetch_add(1, Ordering::Relaxed);
        }
    };
    while got.last().copied().unwrap_or(1) < last {
        let after = got.last().copied().unwrap_or(1);
        let cursor = format!("{epoch},{CHANNEL}={after}");
        let base = &world.nodes[node];
        match kind {
            Kind::Ws => {
                let url = format!("{}/ws", base.replacen("http", "ws", 1));
                if let Ok(mut s) = ws::try_connect(&url, &[]).await {
                    ws::send(
                        &mut s,
                        json!({"type": "subscribe", "channels": [CHANNEL], "cursor": cursor}),
                    )
                    .await;
                    // A killed node resets the socket: that ends this connection, not the test.
                    while let Ok(Some(Ok(frame))) =
                        tokio::time::timeout(Duration::from_secs(15), s.next()).await
                    {
                        let Message::Text(text) = frame else { continue };
                        let m: Value = serde_json::from_str(&text).unwrap();
                        match m["type"].as_str() {
                            Some("heartbeat") => {}
                            Some("event") => {
                                assert_eq!(m["epoch"], epoch.as_str(), "{m}");
                                note(&mut got, m["offset"].as_u64().unwrap());
                            }
                            Some("subscribed") => {
                                assert_eq!(m["recovered"], true, "{m}")
                            }
                            _ => panic!("unexpected {m}"),
                        }
                        if got.last() == Some(&last) {
                            return got;
                        }
                    }
                }
            }
            Kind::Sse => {
                if tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
                    .await
                    .is_ok()
                {
                    let url = format!("{base}/sse?channel={CHANNEL}");
                    let mut s = SseStream::open(&url, &[("last-event-id", &cursor)]).await;
                    if s.status == StatusCode::OK {
                        while let Some(block) = s.block().await {
                            let (Some(id), Some(_)) = (&block.id, &block.data) else {
                                continue;
                            };
                            if block.event.is_some() {
                                continue; // rt.open
                            }
                            let (e, offset) = position(id, CHANNEL);
                            assert_eq!(e, epoch);
                            note(&mut got, offset);
                            if offset == last {
                                return got;
                            }
                        }
                    }
                }
            }
            Kind::Poll => {
                let url = format!("{base}/poll?channel={CHANNEL}&cursor={}", enc(&cursor));
                if let Ok((StatusCode::OK, _, body)) = rt_tests::http::get(&url).await {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["recovered"], true, "{v}");
                    for e in v["events"].as_array().unwrap() {
                        note(&mut got, e["offset"].as_u64().unwrap());
                    }
                    // The next poll goes to the same node while it answers.
                    continue;
                }
            }
        }
        // The connection failed or ended: the next node.
        if !got.is_empty() {
            world.moved.fetch_add(1, Ordering::Relaxed);
        }
        node = (node + 1) % world.nodes.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_and_repeats_nothing() {
    let url = rt_tests::redis_url();
    let prefix = rt_tests::unique("chaos");
    let args = ["--backplane", &url, "--redis-prefix", &prefix];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&args).await);
    }
    let publish = |n: &Server, i: u64| {
        let url = n.url("/api/publish");
        async move {
            post_json(
                &url,
                &[("x-api-key", "test-key")],
                &json!({"channel": CHANNEL, "data": format!("e{i}"), "id": format!("m{i}")}),
            )
            .await
        }
    };
    // The first publish gives every client its starting cursor: they all resume from it.
    let (status, first) = publish(&nodes[0], 1).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    let last = 1 + PUBLISHES;

    let world = Arc::new(World {
        nodes: nodes
            .iter()
            .map(|n| n.url(""))
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
        started: AtomicUsize::new(0),
        moved: AtomicUsize::new(0),
    });
    let mut clients = Vec::new();
    for (k, kind) in [Kind::Ws, Kind::Sse, Kind::Poll].into_iter().enumerate() {
        for i in 0..PER_TRANSPORT {
            let world = world.clone();
            let epoch = epoch.clone();
            clients.push((
                kind,
                tokio::spawn(client(world, kind, (i + k) % 3, epoch, last)),
            ));
        }
    }

    // A steady publisher on node 0, which stays up; node 2 is killed a third of the way in,
    // once every client has received something.
    let total = clients.len();
    for i in 2..=last {
        if i == 2 + PUBLISHES / 3 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while world.started.load(Ordering::Relaxed) < total {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "clients never all started"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            nodes[2].kill();
        }
        let (status, ack) = publish(&nodes[0], i).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(
            (ack["offset"].as_u64(), ack["epoch"].as_str()),
            (Some(i), Some(epoch.as_str()))
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    let expected: Vec<u64> = (2..=last).collect();
    let on_killed = total / 3;
    for (kind, c) in clients {
        let got = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .unwrap_or_else(|_| panic!("a {kind:?} client did not get everything in time"))
            .unwrap();
        assert_eq!(
            got, expected,
            "{kind:?} client: lost, repeated or reordered events"
        );
    }
    // The killed node's clients (a third of them) did move; SSE and WebSocket clients of the
    // other nodes never had to.
    let moved = world.moved.load(Ordering::Relaxed);
    assert!(
        moved >= on_killed,
        "only {moved} of {on_killed} clients moved"
    );
}

/// Calls per command since the Redis started (`INFO commandstats`), all commands together
/// and script calls alone.
fn redis_calls(redis: &rt_tests::RedisServer) -> (u64, u64) {
    let stats = redis.cmd(&["INFO", "commandstats"]);
    let mut all = 0;
    let mut scripts = 0;
    for line in stats.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls: u64 = rest
            .strip_prefix("calls=")
            .and_then(|r| r.split(',').next())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if name != "info" {
            all += calls;
        }
        if name == "evalsha" {
            scripts += calls;
        }
    }
    (all, scripts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_long_polls_shares_its_history_reads() {
    // A Redis of its own: commandstats counts every client's commands.
    let redis = rt_tests::RedisServer::start();
    let url = redis.url();
    let prefix = rt_tests::unique("storm");
    let node = Server::start(&["--backplane", &url, "--redis-prefix", &prefix]).await;
    let mut epoch = String::new();
    for i in 1..=5 {
        let (status, ack) = post_json(
            &node.url("/api/publish"),
            &[("x-api-key", "test-key")],
            &json!({"channel": CHANNEL, "data": format!("e{i}")}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        epoch = ack["epoch"].as_str().unwrap().to_owned();
    }
    // The clients of a node that went away all come back with the same cursor at once.
    const POLLS: usize = 2000;
    let cursor = enc(&format!("{epoch},{CHANNEL}=2"));
    let poll_url = node.url(&format!("/poll?channel={CHANNEL}&cursor={cursor}"));
    let before = redis_calls(&redis);
    let polls = (0..POLLS).map(|_| {
        let url = poll_url.clone();
        tokio::spawn(async move { rt_tests::http::get(&url).await })
    });
    let answers = futures_util::future::join_all(polls).await;
    let (all, scripts) = {
        let after = redis_calls(&redis);
        (after.0 - before.0, after.1 - before.1)
    };
    eprintln!("{POLLS} resuming polls: {scripts} script calls, {all} Redis commands in all");
    for answer in answers {
        let (status, _, body) = answer.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let offsets: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [3, 4, 5], "{v}");
    }
    // Without sharing: a script call per poll, 7 commands each.
    assert!(
        scripts * 10 <= POLLS as u64,
        "{scripts} script calls for {POLLS} polls"
    );
}
