//! Half-open connections, made for real on loopback: clients reach the server through a TCP
//! relay that at some point stops forwarding and reading in both directions while keeping
//! every socket open, as when a client's machine or network vanishes without FIN or RST. The
//! server must notice on every transport within a bounded time and release what the
//! connection held (its subscriptions, its place in the connection gauges).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use futures_util::StreamExt;
use rt_tests::relay::Relay;
use rt_tests::sse::SseStream;
use rt_tests::{ws, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Open subscriptions and `rt_connections{transport}` of the server.
async fn held(server: &Server, transport: &str) -> (u64, f64) {
    let subscriptions = server.health().await["subscriptions"].as_u64().unwrap();
    let sample = format!("rt_connections{{transport=\"{transport}\"}}");
    (subscriptions, server.metric(&sample).await)
}

/// Waits until the server holds `want` (subscriptions, open connections of `transport`);
/// panics after `within`.
async fn wait_held(server: &Server, transport: &str, want: (u64, f64), within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = held(server, transport).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{transport}: still (subscriptions, connections) = {now:?} after {within:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_vanished_websocket_client_is_closed_by_the_ping_timeout() {
    let server = Server::start(&[
        "--ws-ping-interval",
        "300ms",
        "--ws-pong-timeout",
        "500ms",
        "--ws-close-timeout",
        "1s",
    ])
    .await;
    let relay = Relay::start(server.addr()).await;
    let mut client = ws::connect(&relay.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut client, &["half-open-ws"], None).await;
    // While the relay forwards, the client answers pings (tungstenite does, while read) and
    // outlives several ping intervals.
    let _ = timeout(Duration::from_millis(1500), async {
        while let Some(Ok(_)) = client.next().await {}
    })
    .await;
    assert_eq!(held(&server, "ws").await, (1, 1.0));

    relay.blackhole();
    let vanished = Instant::now();
    // Ping interval + pong timeout + close timeout is 1.8 s; generous for a loaded machine.
    wait_held(&server, "ws", (0, 0.0), Duration::from_secs(15)).await;
    let took = vanished.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "released before any pong could be missed: {took:?}"
    );
    drop(client);
}

/// Opens an SSE stream through a relay, checks it works, then blackholes the relay and
/// publishes large events until far more than the socket buffers can hold is queued for it.
async fn vanished_sse_client(server: &Server) -> Relay {
    let relay = Relay::start(server.addr()).await;
    let mut sse = SseStream::open_ok(&relay.url("/sse?channel=half-open-sse"), &[]).await;
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));
    rt_tests::http::publish(&server.url(""), "half-open-sse", "before").await;
    assert_eq!(sse.event().await.data.as_deref(), Some("before"));
    assert_eq!(held(server, "sse").await, (1, 1.0));

    relay.blackhole();
    // Heartbeats alone would take long to fill the buffers: 6 MiB of events do at once (the
    // relay's server-side receive buffer is 16 KiB, loopback send buffers up to 4 MiB).
    let big = "x".repeat(32 * 1024);
    for _ in 0..200 {
        rt_tests::http::publish(&server.url(""), "half-open-sse", &big).await;
    }
    drop(sse);
    relay
}

#[tokio::test]
async fn a_vanished_sse_client_is_cut_off_when_writes_stall() {
    // Without a write-stall timeout the stream's writes block forever: TCP keeps a peer that
    // acknowledges but never reads, and the heartbeats cannot get out either.
    let server = Server::start(&["--sse-heartbeat", "200ms", "--write-stall-timeout", "0s"]).await;
    let _relay = vanished_sse_client(&server).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(held(&server, "sse").await, (1, 1.0), "not half-open");

    // With one, the connection is closed once writes made no progress for that long.
    let server = Server::start(&["--sse-heartbeat", "200ms", "--write-stall-timeout", "1s"]).await;
    let _relay = vanished_sse_client(&server).await;
    wait_held(&server, "sse", (0, 0.0), Duration::from_secs(15)).await;
    let sample = "rt_connections_cut_off_total{reason=\"write_stall\"}";
    assert_eq!(server.metric(sample).await, 1.0);
    // The server goes on serving.
    let mut sse = SseStream::open_ok(&server.url("/sse?channel=half-open-sse"), &[]).await;
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));
}

#[tokio::test]
async fn a_held_long_poll_of_a_vanished_client_ends_at_its_poll_timeout() {
    let server = Server::start(&[]).await;
    let relay = Relay::start(server.addr()).await;
    let mut client = TcpStream::connect(relay.addr()).await.unwrap();
    let sent = Instant::now();
    client
        .write_all(b"GET /poll?channel=half-open-poll&timeout=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_held(&server, "poll", (1, 1.0), Duration::from_secs(10)).await;

    relay.blackhole();
    wait_held(&server, "poll", (0, 0.0), Duration::from_secs(15)).await;
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "released before its timeout: {took:?}"
    );
    // Nothing was left behind: a publish on the channel reaches nobody and holds nothing.
    rt_tests::http::publish(&server.url(""), "half-open-poll", "after").await;
    assert_eq!(held(&server, "poll").await, (0, 0.0));
    drop(client);
}
