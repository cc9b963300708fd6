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
