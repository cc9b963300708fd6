//! rt-client (the Rust client) against the real rt-server binary: exact resume across a
//! server restart on Redis, fallback WebSocket → SSE → long polling, resync as a typed
//! update, token refresh on expiry, idempotent publishes through an outage.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use rt_client::{Backoff, Client, Data, Event, Message, Subscription, Transport, Update};
use rt_tests::Server;
use serde_json::json;

/// How long any single expected update may take.
const T: Duration = Duration::from_secs(20);

/// A client that reconnects fast, as tests want.
fn client(server: &Server) -> Client {
    Client::connect(server.url(""))
        .backoff(Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ))
        .connect_timeout(Duration::from_secs(5))
}

/// The next update, or a panic naming what was awaited.
async fn next(sub: &mut Subscription, what: &str) -> Update {
    tokio::time::timeout(T, sub.next())
        .await
        .unwrap_or_else(|_| panic!("no update within {T:?} while waiting for {what}"))
        .unwrap_or_else(|| panic!("the subscription ended while waiting for {what}"))
}

/// The next `n` events; every other update is returned beside them, in order.
async fn events(sub: &mut Subscription, n: usize) -> (Vec<Event>, Vec<Update>) {
    let (mut got, mut other) = (Vec::new(), Vec::new());
    while got.len() < n {
        match next(sub, &format!("event {} of {n}", got.len() + 1)).await {
            Update::Event(e) => got.push(e),
            u => other.push(u),
        }
    }
    (got, other)
}

/// The first `Open` update (the others before it returned too).
async fn opened(sub: &mut Subscription) -> (Transport, bool, Vec<Update>) {
    let mut before = Vec::new();
    loop {
        match next(sub, "the connection to open").await {
            Update::Open {
                transport,
                recovered,
            } => return (transport, recovered, before),
            u => before.push(u),
        }
    }
}

/// Asserts nothing more arrives for a moment (no duplicate, no stray event).
async fn quiet(sub: &mut Subscription) {
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match sub.next().await {
                Some(Update::Event(e)) => return e,
                Some(_) => continue,
                None => std::future::pending().await,
            }
        }
    })
    .await;
    assert!(extra.is_err(), "an extra event arrived: {extra:?}");
}

fn text(e: &Event) -> &str {
    match &e.data {
        Data::Text(s) => s,
        Data::Binary(b) => panic!("binary payload {b:?}"),
    }
}

/// Each channel's events are exactly offsets `1..=n` in order with data `<channel>-<offset>`.
fn assert_exactly_once(events: &[Event], expected: &[(&str, u64)]) {
    let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in events {
        assert_eq!(text(e), format!("{}-{}", e.channel, e.offset), "{e:?}");
        per.entry(e.channel.as_str()).or_default().push(e.offset);
    }
    for (channel, n) in expected {
        let want: Vec<u64> = (1..=*n).collect();
        assert_eq!(per.get(channel), Some(&want), "channel {channel}");
    }
    assert_eq!(per.len(), expected.len(), "{per:?}");
}

async fn publish(server: &Server, channel: &str, offset: u64) {
    let ack =
        rt_tests::http::publish(&server.url(""), channel, &format!("{channel}-{offset}")).await;
    assert_eq!(ack["offset"], offset, "{ack}");
}

#[tokio::test]
async fn resumes_exactly_across_a_server_restart_on_redis() {
    let redis = rt_tests::redis_url();
    let prefix = rt_tests::unique("rust-client");
    let mut server = Server::start(&["--backplane", &redis, "--redis-prefix", &prefix]).await;
    let client = client(&server);
    let mut sub = client.subscribe(["a", "b"]).await.unwrap();
    let (transport, recovered, _) = opened(&mut sub).await;
    assert_eq!((transport, recovered), (Transport::Ws, true));

    for i in 1..=10 {
        publish(&server, "a", i).await;
        publish(&server, "b", i).await;
    }
    let (first, _) = events(&mut sub, 20).await;
    assert!(first.iter().all(|e| e.transport == Transport::Ws));

    // The server dies. A publish through the client is retried with its id until a server
    // stores it; meanwhile the subscription backs off.
    server.kill();
    let publisher = sub.publisher();
    let during = tokio::spawn(async move {
        publisher
            .publish(Message::text("b", "b-11").id("outage-1"))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    let ack = during.await.unwrap().unwrap();
    assert_eq!((ack.offset, ack.duplicate), (11, false), "{ack:?}");
    for i in 11..=20 {
        publish(&server, "a", i).await;
    }
    for i in 12..=15 {
        publish(&server, "b", i).await;
    }

    let (second, updates) = events(&mut sub, 15).await;
    // Reconnected once and recovered: no resync.
    assert!(
        updates.iter().any(|u| matches!(
            u,
            Update::Retrying {
                transport: Transport::Ws,
                ..
            }
        )),
        "{updates:?}"
    );
    assert!(
        updates.iter().any(|u| matches!(
            u,
            Update::Open {
                recovered: true,
                ..
            }
        )),
        "{updates:?}"
    );
    assert!(
        !updates.iter().any(|u| matches!(u, Update::Resync { .. })),
        "{updates:?}"
    );
    let all: Vec<Event> = first.into_iter().chain(second).collect();
    assert_exactly_once(&all, &[("a", 20), ("b", 15)]);
    quiet(&mut sub).await;

    // The same id again, after the fact: stored once, answered as a duplicate.
    let again = client
        .publish(Message::text("b", "b-11").id("outage-1"))
        .await
        .unwrap();
    assert_eq!((again.offset, again.duplicate), (11, true), "{again:?}");

    // A new client resumes from the first one's cursor: nothing new, then live.
    let cursor = sub.cursor().unwrap();
    assert!(cursor.ends_with(",a=20,b=15"), "{cursor}");
    drop(sub);
    let mut resumed = client
        .clone()
        .cursor(cursor)
        .subscribe(["a", "b"])
        .await
        .unwrap();
    publish(&server, "a", 21).await;
    let (e, _) = events(&mut resumed, 1).await;
    assert_eq!((e[0].channel.as_str(), e[0].offset), ("a", 21));
}

#[tokio::test]
async fn one_cursor_carries_across_transports_as_they_go_away() {
    let redis = rt_tests::redis_url();
    let prefix = rt_tests::unique("rust-client-switch");
    let base = [
        "--backplane",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
        "--dev",
    ];
    let mut server = Server::start(&base).await;
    let mut sub = client(&server).subscribe(["a", "b"]).await.unwrap();
    let mut all = Vec::new();
    let stages = [
        (Transport::Ws, None),
        (Transport::Sse, Some("ws")),
        (Transport::Poll, Some("ws,sse")),
    ];
    for (stage, (transport, disable)) in stages.into_iter().enumerate() {
        if let Some(disable) = disable {
            let mut args = base.to_vec();
            args.extend(["--disable", disable]);
            server.restart_with(&args).await;
        }
        // Published while the client may still be reconnecting: the cursor covers them.
        let first = stage as u64 * 5 + 1;
        for i in first..first + 5 {
            publish(&server, "a", i).await;
            publish(&server, "b", i).await;
        }
        let (got, updates) = events(&mut sub, 10).await;
        // (After the first restart, a poll attempt that lands the instant the server is back,
        // before an SSE one, is as right as SSE: the rest of the round was refused.)
        let fine = |t: Transport| t == transport || (stage == 1 && t == Transport::Poll);
        assert!(got.iter().all(|e| fine(e.transport)), "{got:?}");
        assert!(
            !updates.iter().any(|u| matches!(
                u,
                Update::Resync { .. }
                    | Update::Open {
                        recovered: false,
                        ..
                    }
            )),
            "{transport}: {updates:?}"
        );
        all.extend(got);
    }
    assert_exactly_once(&all, &[("a", 15), ("b", 15)]);
    quiet(&mut sub).await;
}

#[tokio::test]
async fn short_polling_gets_every_event_once() {
    let server = Server::start(&[]).await;
    let mut sub = client(&server)
        .transports([Transport::ShortPoll])
        .poll_interval(Duration::from_millis(200))
        .subscribe(["tick"])
        .await
        .unwrap();
    let (transport, _, _) = opened(&mut sub).await;
    assert_eq!(transport, Transport::ShortPoll);
    for i in 1..=12 {
        publish(&server, "tick", i).await;
    }
    let (got, _) = events(&mut sub, 12).await;
    assert!(got.iter().all(|e| e.transport == Transport::ShortPoll));
    assert_exactly_once(&got, &[("tick", 12)]);
    quiet(&mut sub).await;
}

#[tokio::test]
async fn publishes_over_the_websocket_once_per_id() {
    // No HTTP publish route: only the WebSocket can carry these publishes.
    let server = Server::start(&["--disable", "poll"]).await;
    let mut sub = client(&server)
        .publish_timeout(Duration::from_secs(5))
        .subscribe(["chat"])
        .await
        .unwrap();
    opened(&mut sub).await;
    let first = sub
        .publish(Message::text("chat", "chat-1").id("m-1"))
        .await
        .unwrap();
    assert_eq!((first.offset, first.duplicate), (1, false), "{first:?}");
    let again = sub
        .publish(Message::text("chat", "chat-1").id("m-1"))
        .await
        .unwrap();
    assert_eq!((again.offset, again.duplicate), (1, true), "{again:?}");
    let blob = sub
        .publish(Message::binary("chat", vec![0u8, 255, 7]).event("blob"))
        .await
        .unwrap();
    assert_eq!(blob.offset, 2);
    let refused = sub
        .publish(Message::text("chat", "x").event("rt.mine"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, rt_client::Error::PublishRefused { code, .. } if code == "invalid_event_name"),
        "{refused}"
    );
    let (got, _) = events(&mut sub, 2).await;
    assert_eq!((got[0].offset, text(&got[0])), (1, "chat-1"));
    // A binary payload travels in a WebSocket binary frame and arrives as bytes.
    assert_eq!((got[1].offset, got[1].name.as_str()), (2, "blob"));
    assert_eq!(got[1].data, Data::Binary(vec![0u8, 255, 7].into()));
    quiet(&mut sub).await;
}

#[tokio::test]
async fn falls_back_to_sse_when_websocket_is_disabled() {
    let mut server = Server::start(&["--disable", "ws"]).await;
    let mut sub = client(&server).subscribe(["news", "sport"]).await.unwrap();
    let (transport, _, before) = opened(&mut sub).await;
    assert_eq!(transport, Transport::Sse);
    assert!(
        matches!(&before[..], [Update::Retrying { transport: Transport::Ws, retry_in, .. }] if retry_in.is_zero()),
        "{before:?}"
    );
    for i in 1..=3 {
        publish(&server, "news", i).await;
        publish(&server, "sport", i).await;
    }
    // Published by the subscription: over HTTP, since there is no WebSocket.
    let ack = sub
        .publish(Message::binary("news", vec![0u8, 159, 146, 150]).event("blob"))
        .await
        .unwrap();
    assert_eq!(ack.offset, 4);
    let (got, _) = events(&mut sub, 7).await;
    assert!(got.iter().all(|e| e.transport == Transport::Sse));
    let (blob, rest): (Vec<Event>, Vec<Event>) = got.into_iter().partition(|e| e.offset == 4);
    assert_exactly_once(&rest, &[("news", 3), ("sport", 3)]);
    assert_eq!(blob[0].name, "blob");
    assert_eq!(blob[0].data, Data::Binary(vec![0u8, 159, 146, 150].into()));

    // An in-memory server comes back in a new epoch: the stream's cursor cannot be honoured,
    // the client is told so for both channels, and goes on live over SSE again.
    server.kill();
    server.restart().await;
    let mut lost = Vec::new();
    while lost.len() < 2 {
        match next(&mut sub, "the resync after the restart").await {
            Update::Resync {
                channels,
                transport,
            } => {
                // Over HTTP: SSE, or polling when an SSE attempt failed while the server was
                // down (the client then moves down its list of transports).
                assert!(
                    matches!(transport, Transport::Sse | Transport::Poll),
                    "{transport:?}"
                );
                lost.extend(channels.iter().map(|c| c.as_str().to_owned()));
            }
            Update::Event(e) => panic!("an event before the resync: {e:?}"),
            _ => {}
        }
    }
    lost.sort();
    assert_eq!(lost, ["news", "sport"]);
    publish(&server, "news", 1).await;
    let (got, _) = events(&mut sub, 1).await;
    assert_eq!((got[0].channel.as_str(), got[0].offset), ("news", 1));
    quiet(&mut sub).await;
}

#[tokio::test]
async fn falls_back_to_long_polling_when_websocket_and_sse_are_disabled() {
    let server = Server::start(&["--disable", "ws,sse"]).await;
    let mut sub = client(&server)
        .poll_timeout(Duration::from_secs(2))
        .earliest()
        .subscribe(["jobs"])
        .await
        .unwrap();
    let (transport, _, before) = opened(&mut sub).await;
    assert_eq!(transport, Transport::Poll);
    let failed: Vec<Transport> = before
        .iter()
        .filter_map(|u| match u {
            Update::Retrying { transport, .. } => Some(*transport),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [Transport::Ws, Transport::Sse]);
    for i in 1..=5 {
        let ack = sub
            .publish(Message::text("jobs", format!("jobs-{i}")))
            .await
            .unwrap();
        assert_eq!(ack.offset, i);
    }
    let (got, _) = events(&mut sub, 5).await;
    assert!(got.iter().all(|e| e.transport == Transport::Poll));
    assert!(got.iter().all(|e| e.time.is_some()));
    assert_exactly_once(&got, &[("jobs", 5)]);
    // Held polls: a later event still arrives, once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish(&server, "jobs", 6).await;
    let (got, _) = events(&mut sub, 1).await;
    assert_eq!(got[0].offset, 6);
    quiet(&mut sub).await;
}

#[tokio::test]
async fn a_cursor_older_than_history_is_a_typed_resync_on_every_transport() {
    let server = Server::start(&["--history-size", "3"]).await;
    for i in 1..=2 {
        publish(&server, "old", i).await;
    }
    publish(&server, "kept", 1).await;
    // A reader that saw everything so far, then left.
    let mut first = client(&server)
        .earliest()
        .subscribe(["old", "kept"])
        .await
        .unwrap();
    events(&mut first, 3).await;
    let cursor = first.cursor().unwrap();
    drop(first);
    // While it is away, "old" moves past what history keeps; "kept" does not.
    for i in 3..=10 {
        publish(&server, "old", i).await;
    }
    publish(&server, "kept", 2).await;

    let every = [
        Transport::Ws,
        Transport::Sse,
        Transport::Poll,
        Transport::ShortPoll,
    ];
    for (i, transport) in every.into_iter().enumerate() {
        // Each round publishes one more event on "old".
        let head = 10 + i as u64;
        let mut sub = client(&server)
            .transports([transport])
            .cursor(cursor.clone())
            .subscribe(["old", "kept"])
            .await
            .unwrap();
        let mut resync = None;
        let mut got = Vec::new();
        while resync.is_none() || got.is_empty() {
            match next(&mut sub, "the resync and kept's event").await {
                Update::Resync {
                    channels,
                    transport: t,
                } => {
                    assert_eq!(t, transport);
                    assert!(resync.is_none(), "{transport}: told twice");
                    resync = Some(channels);
                }
                Update::Event(e) => got.push(e),
                Update::Open { recovered, .. } => {
                    // SSE has no `recovered` of its own: its rt.resync tells.
                    if transport != Transport::Sse {
                        assert!(!recovered, "{transport}");
                    }
                }
                other => panic!("{transport}: {other:?}"),
            }
        }
        let names: Vec<&str> = resync
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(names, ["old"], "{transport}");
        // The recovered channel got exactly what it missed; the lost one goes on live.
        assert_eq!(
            got.iter()
                .map(|e| (e.channel.as_str(), e.offset))
                .collect::<Vec<_>>(),
            [("kept", 2)],
            "{transport}"
        );
        publish(&server, "old", head + 1).await;
        let (live, _) = events(&mut sub, 1).await;
        assert_eq!(
            (live[0].channel.as_str(), live[0].offset),
            ("old", head + 1),
            "{transport}"
        );
        let cursor_now = sub.cursor().unwrap();
        assert!(
            cursor_now.ends_with(&format!(",kept=2,old={}", head + 1)),
            "{transport}: {cursor_now}"
        );
    }
}

#[tokio::test]
async fn acknowledgements_keep_a_small_ack_window_flowing() {
    // The server sends at most 4 unacknowledged events and closes a connection whose acks
    // stop for a second (1013): only a client that acks gets 40 events on one connection.
    let server = Server::start(&["--ws-ack-window", "4", "--ws-stall-timeout", "1s"]).await;
    let mut sub = client(&server)
        .acks(true)
        .subscribe(["flow", "other"])
        .await
        .unwrap();
    opened(&mut sub).await;
    for i in 1..=30 {
        publish(&server, "flow", i).await;
    }
    for i in 1..=10 {
        publish(&server, "other", i).await;
    }
    let (got, updates) = events(&mut sub, 40).await;
    assert_exactly_once(&got, &[("flow", 30), ("other", 10)]);
    assert!(
        updates.is_empty(),
        "the connection was replaced: {updates:?}"
    );

    // The window is real: a subscriber that stops reading stops acknowledging, the server
    // stops sending at 4 and closes the stalled connection; the client resumes exactly.
    let mut slow = client(&server)
        .acks(true)
        .queue(1)
        .subscribe(["slow"])
        .await
        .unwrap();
    opened(&mut slow).await;
    for i in 1..=20 {
        publish(&server, "slow", i).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (got, updates) = events(&mut slow, 20).await;
    assert_exactly_once(&got, &[("slow", 20)]);
    assert!(
        updates.iter().any(|u| matches!(
            u,
            Update::Retrying {
                error: rt_client::Error::Closed { code: 1013, .. },
                ..
            }
        )),
        "{updates:?}"
    );
}

/// Every update within `period`.
async fn updates_for(sub: &mut Subscription, period: Duration) -> Vec<Update> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(period, async {
        while let Some(u) = sub.next().await {
            got.push(u);
        }
    })
    .await;
    got
}

#[tokio::test]
async fn heartbeats_keep_quiet_connections_and_silence_ends_them() {
    // The server pings every 300 ms and closes a WebSocket that leaves a ping unanswered
    // for 1 s; the client answers, and the server's heartbeats feed its 1.5 s watchdog.
    let server = Server::start(&[
        "--ws-ping-interval",
        "300ms",
        "--ws-pong-timeout",
        "1s",
        "--sse-heartbeat",
        "300ms",
    ])
    .await;
    for transport in [Transport::Ws, Transport::Sse] {
        let mut sub = client(&server)
            .transports([transport])
            .heartbeat(Duration::from_millis(1500))
            .subscribe(["calm"])
            .await
            .unwrap();
        let updates = updates_for(&mut sub, Duration::from_secs(3)).await;
        assert!(
            updates.iter().all(|u| matches!(u, Update::Open { .. })),
            "{transport}: {updates:?}"
        );
    }
    // Without heartbeats, an SSE stream silent past the watchdog is presumed dead and
    // replaced.
    let silent = Server::start(&["--sse-heartbeat", "0s"]).await;
    let mut sub = client(&silent)
        .transports([Transport::Sse])
        .heartbeat(Duration::from_millis(500))
        .subscribe(["calm"])
        .await
        .unwrap();
    let updates = updates_for(&mut sub, Duration::from_secs(2)).await;
    assert!(
        updates.iter().any(|u| matches!(
            u,
            Update::Retrying {
                error: rt_client::Error::Timeout { .. },
                ..
            }
        )),
        "{updates:?}"
    );
}

const SECRET: &str = "rust-client-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_the_stream_goes_on() {
    let server = Server::start(&["--jwt-hs256-secret", SECRET, "--jwt-leeway", "0s"]).await;
    for transport in Transport::ALL {
        let channel = format!("feed-{transport}");
        let calls = Arc::new(AtomicU32::new(0));
        let refreshes = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (calls.clone(), refreshes.clone());
        let mut sub = client(&server)
            .transports([transport])
            .poll_timeout(Duration::from_secs(1))
            .token_fn(move |req| {
                c.fetch_add(1, Ordering::SeqCst);
                if req.refresh {
                    r.lock().unwrap().push(req.reason.clone());
                }
                // Short-lived tokens: each expires two seconds after it is handed out.
                let claims = json!({"sub": "svc", "exp": now() + 2, "subscribe": ["*"]});
                let token = encode(
                    &Header::default(),
                    &claims,
                    &EncodingKey::from_secret(SECRET.as_bytes()),
                );
                async move { token }
            })
            .subscribe([channel.as_str()])
            .await
            .unwrap();
        opened(&mut sub).await;
        publish(&server, &channel, 1).await;
        events(&mut sub, 1).await;
        // Past the token's expiry: the server ends the connection (or refuses the next poll),
        // and the client comes back with a fresh token at once.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        publish(&server, &channel, 2).await;
        let (got, updates) = events(&mut sub, 1).await;
        assert_eq!(got[0].offset, 2, "{transport}");
        assert!(
            updates.iter().any(|u| matches!(
                u,
                Update::Retrying { error, retry_in, .. }
                    if error.token_refusal() == Some("token_expired") && retry_in.is_zero()
            )),
            "{transport}: {updates:?}"
        );
        assert!(calls.load(Ordering::SeqCst) >= 2, "{transport}");
        assert!(
            refreshes
                .lock()
                .unwrap()
                .iter()
                .all(|r| r.as_deref() == Some("token_expired")),
            "{transport}: {refreshes:?}"
        );
        assert!(!refreshes.lock().unwrap().is_empty(), "{transport}");
        quiet(&mut sub).await;
    }
}

#[tokio::test]
async fn subscribes_and_publishes_over_tls_on_every_transport_trusting_a_private_ca() {
    let cert = rt_tests::TlsCert::localhost();
    let server = rt_tests::TlsServer::start(&cert, &[]).await;
    let pem = std::fs::read(&cert.cert_pem).unwrap();
    for transport in [Transport::Ws, Transport::Sse, Transport::Poll] {
        let client = Client::connect(server.url(""))
            .tls_root_certificates(&pem)
            .api_key("test-key")
            .transports([transport]);
        let channel = format!("tls-{transport:?}").to_lowercase();
        let mut sub = client.subscribe([channel.as_str()]).await.unwrap();
        assert_eq!(opened(&mut sub).await.0, transport);
        let ack = client
            .publish(Message::text(&channel, "secret"))
            .await
            .unwrap();
        let (got, _) = events(&mut sub, 1).await;
        assert_eq!(got[0].offset, ack.offset);
    }
    // Without the CA the certificate is not trusted: every transport fails, none is open.
    let untrusted = Client::connect(server.url("")).connect_timeout(Duration::from_secs(2));
    assert!(untrusted.subscribe(["x"]).await.is_err());
    let bad_pem = Client::connect(server.url(""))
        .tls_root_certificates(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
    let refused = bad_pem.subscribe(["x"]).await.unwrap_err().to_string();
    assert!(
        refused.starts_with("TLS: ") && refused.contains("certificate"),
        "{refused}"
    );
}
