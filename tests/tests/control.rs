//! `POST /api/disconnect` and `POST /api/unsubscribe` through real rt-server processes: a
//! subject's WebSocket, SSE stream and held poll on one node, the same subject on two nodes
//! over Redis (and NATS) reached by a call to a third, the JS client in Node not coming back
//! after `reconnect: false`, and bad input to both routes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::{ws, Ws, T};
use http::{Method, StatusCode};
use rt_tests::http::{post_json, send};
use rt_tests::sse::SseStream;
use rt_tests::Server;
use serde_json::{json, Value};

const SECRET: &str = "control-test-secret";
const KEY: (&str, &str) = ("x-api-key", "test-key");

/// A token for `sub` that may subscribe to and publish on every `chat:` channel.
fn token(sub: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims = json!({"sub": sub, "exp": now.as_secs() + 600,
        "subscribe": ["chat:*"], "publish": ["chat:*"]});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn api(server: &Server, route: &str, body: &Value) -> (StatusCode, Value) {
    post_json(&server.url(route), &[KEY], body).await
}

async fn ws_as(server: &Server, sub: &str, channels: &[&str]) -> Ws {
    let url = server.ws_url(&format!("/ws?token={}", token(sub)));
    let mut socket = ws::connect(&url, &[]).await;
    ws::subscribe(&mut socket, channels, None).await;
    socket
}

async fn sse_as(server: &Server, sub: &str, channels: &str) -> SseStream {
    let url = server.url(&format!("/sse?channel={channels}&token={}", token(sub)));
    let mut sse = SseStream::open_ok(&url, &[]).await;
    let open = sse.event().await;
    assert_eq!(open.event.as_deref(), Some("rt.open"));
    sse
}

/// The next SSE block with data, as its event name and JSON data.
async fn sse_next(sse: &mut SseStream) -> (String, Value) {
    let b = sse.event().await;
    (b.event.clone().unwrap_or_default(), b.data_json())
}

async fn publish(server: &Server, channel: &str, data: &str) {
    let (status, v) = cluster::publish(server, channel, data).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn unsubscribe_then_disconnect_a_subject_on_every_transport_of_one_node() {
    let server = Server::start(&["--jwt-hs256-secret", SECRET]).await;
    let mut alice_ws = ws_as(&server, "alice", &["chat:a", "chat:b"]).await;
    let mut alice_sse = sse_as(&server, "alice", "chat:a,chat:b").await;
    let mut bob = ws_as(&server, "bob", &["chat:a"]).await;
    // A held long poll of alice's, answered by the unsubscribe.
    let poll_url = server.url(&format!(
        "/poll?channel=chat:a&timeout=30&token={}",
        token("alice")
    ));
    let held = tokio::spawn(async move { rt_tests::http::get(&poll_url).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let body = json!({"subject": "alice", "channel": "chat:a"});
    let (status, v) = api(&server, "/api/unsubscribe", &body).await;
    assert_eq!((status, &v), (StatusCode::OK, &body));

    let notice = ws::recv(&mut alice_ws).await;
    assert_eq!(notice["type"], "unsubscribed", "{notice}");
    assert_eq!(notice["channels"], json!(["chat:a"]));
    assert_eq!(notice["server"], true);
    assert!(!notice["cursor"].as_str().unwrap().contains("chat:a"));
    let (name, data) = sse_next(&mut alice_sse).await;
    assert_eq!(name, "rt.unsubscribed", "{data}");
    assert_eq!(data["channels"], json!(["chat:a"]));
    let (status, _, answer) = held.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["unsubscribed"], json!(["chat:a"]), "{answer}");

    // chat:a no longer reaches alice; chat:b does, and bob still gets chat:a.
    publish(&server, "chat:a", "not for alice").await;
    publish(&server, "chat:b", "for alice").await;
    let got = ws::recv(&mut alice_ws).await;
    assert_eq!(
        (&got["channel"], &got["data"]),
        (&json!("chat:b"), &json!("for alice"))
    );
    let b = alice_sse.published_within(T).await;
    assert_eq!(b.data.as_deref(), Some("for alice"));
    assert_eq!(ws::recv(&mut bob).await["data"], "not for alice");

    let body = json!({"subject": "alice", "reconnect": false, "reason": "banned"});
    let (status, v) = api(&server, "/api/disconnect", &body).await;
    assert_eq!((status, &v), (StatusCode::OK, &body));
    assert_eq!(ws::closed(&mut alice_ws).await, (4001, "banned".to_owned()));
    let (name, data) = sse_next(&mut alice_sse).await;
    assert_eq!(name, "rt.disconnect", "{data}");
    assert_eq!(
        (&data["reconnect"], &data["reason"]),
        (&json!(false), &json!("banned"))
    );
    assert!(alice_sse.ends_within(T).await, "the SSE stream ended");

    // Bob is untouched.
    publish(&server, "chat:a", "still here").await;
    assert_eq!(ws::recv(&mut bob).await["data"], "still here");

    // A held poll hears a disconnect too; `reconnect` defaults to true.
    let poll_url = server.url(&format!(
        "/poll?channel=chat:b&timeout=30&token={}",
        token("carol")
    ));
    let held = tokio::spawn(async move { rt_tests::http::get(&poll_url).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = api(&server, "/api/disconnect", &json!({"subject": "carol"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["reconnect"], true);
    let (_, _, answer) = held.await.unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["disconnect"]["reconnect"], true, "{answer}");
}

/// Alice on node 0 over WebSocket and on node 1 over SSE; the API calls go to node 2.
async fn across_nodes(url: &str, name: &str) {
    let prefix = cluster::prefix(name);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let args = ["--backplane", url, "--redis-prefix", &prefix];
        nodes.push(Server::start(&[&args[..], &["--jwt-hs256-secret", SECRET]].concat()).await);
    }
    let mut alice_ws = ws_as(&nodes[0], "alice", &["chat:x", "chat:y"]).await;
    let mut alice_sse = sse_as(&nodes[1], "alice", "chat:x,chat:y").await;

    let body = json!({"subject": "alice", "channel": "chat:x"});
    let (status, v) = api(&nodes[2], "/api/unsubscribe", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let notice = ws::recv(&mut alice_ws).await;
    assert_eq!(
        (&notice["type"], &notice["channels"]),
        (&json!("unsubscribed"), &json!(["chat:x"]))
    );
    let (name, data) = sse_next(&mut alice_sse).await;
    assert_eq!(
        (name.as_str(), &data["channels"]),
        ("rt.unsubscribed", &json!(["chat:x"]))
    );

    let body = json!({"subject": "alice", "reason": "token rotated"});
    let (status, v) = api(&nodes[2], "/api/disconnect", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        ws::closed(&mut alice_ws).await,
        (4000, "token rotated".to_owned())
    );
    let (name, data) = sse_next(&mut alice_sse).await;
    assert_eq!(name, "rt.disconnect", "{data}");
    assert_eq!(data["reconnect"], true);
    assert!(alice_sse.ends_within(T).await);
}

#[tokio::test]
async fn a_subject_on_two_nodes_is_reached_through_a_third_over_redis() {
    across_nodes(&rt_tests::redis_url(), "control-redis").await;
}

#[tokio::test]
async fn a_subject_on_two_nodes_is_reached_through_a_third_over_nats() {
    across_nodes(&rt_tests::nats_url(), "control-nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_on_two_nodes_is_reached_through_a_third_over_a_redis_cluster() {
    let redis = rt_tests::RedisCluster::start();
    across_nodes(&redis.url(), "control-cluster").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_js_client_stays_away_after_reconnect_false() {
    let mut server = Server::start(&["--jwt-hs256-secret", SECRET]).await;
    let tokens = [
        token("js-ws"),
        token("js-sse"),
        token("js-poll"),
        token("js-again"),
    ];
    let args: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let out = rt_tests::browser::run_node_script(
        "client-control.mjs",
        &mut server,
        &args,
        Duration::from_secs(120),
    )
    .await;
    assert!(
        out.contains("# fail 0") && !out.contains("# pass 0"),
        "{out}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = Server::start(&[]).await;
    let long = "r".repeat(124);
    let cases = [
        ("/api/disconnect", json!({}), "bad_request"),
        ("/api/disconnect", json!({"subject": ""}), "bad_request"),
        (
            "/api/disconnect",
            json!({"subject": "a", "reason": long}),
            "bad_request",
        ),
        (
            "/api/disconnect",
            json!({"subject": "a", "reconnect": "no"}),
            "bad_request",
        ),
        (
            "/api/disconnect",
            json!({"subject": "a", "extra": 1}),
            "bad_request",
        ),
        ("/api/unsubscribe", json!({"subject": "a"}), "bad_request"),
        ("/api/unsubscribe", json!({"channel": "c"}), "bad_request"),
        (
            "/api/unsubscribe",
            json!({"subject": "a", "channel": "no spaces"}),
            "invalid_channel",
        ),
    ];
    for (route, body, code) in cases {
        let (status, v) = api(&server, route, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}: {v}");
        assert_eq!(v["error"]["code"], code, "{route} {body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
    for route in ["/api/disconnect", "/api/unsubscribe"] {
        let url = server.url(route);
        let body = json!({"subject": "a", "channel": "c"});
        let (status, v) = post_json(&url, &[], &body).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
        );
        let (status, v) = post_json(&url, &[("x-api-key", "wrong")], &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        let (status, _, _) = send(Method::GET, &url, &[KEY], "").await.unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = send(Method::POST, &url, &[KEY], "{}").await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "no JSON content type"
        );
        let json = ("content-type", "application/json");
        let (status, _, _) = send(Method::POST, &url, &[KEY, json], "{nope")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn the_rust_client_surfaces_unsubscribed_and_ends_after_reconnect_false() {
    use futures_util::StreamExt;
    use rt_client::{Client, Transport, Update};
    let server = Server::start(&["--jwt-hs256-secret", SECRET]).await;
    for (transport, subject) in [
        (Transport::Ws, "rs-ws"),
        (Transport::Sse, "rs-sse"),
        (Transport::Poll, "rs-poll"),
    ] {
        let mut sub = Client::connect(server.url(""))
            .token(token(subject))
            .transports([transport])
            .poll_timeout(Duration::from_secs(5))
            .subscribe(["chat:rs", "chat:rs-off"])
            .await
            .unwrap();
        let off = json!({"subject": subject, "channel": "chat:rs-off"});
        let channels = loop {
            let (status, v) = api(&server, "/api/unsubscribe", &off).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                Ok(Some(Update::Unsubscribed { channels, .. })) => break channels,
                Ok(Some(Update::Open { .. })) | Err(_) => continue,
                other => panic!("{transport}: {other:?}"),
            }
        };
        assert_eq!(channels, [rt_core::Channel::new("chat:rs-off").unwrap()]);
        let body = json!({"subject": subject, "reconnect": false, "reason": "banned"});
        // A poll hears it only while one is held: repeat until it did (best effort).
        let reason = loop {
            let (status, v) = api(&server, "/api/disconnect", &body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                Ok(Some(Update::Disconnected { reason, .. })) => break reason,
                Ok(Some(Update::Open { .. })) | Err(_) => continue,
                other => panic!("{transport}: {other:?}"),
            }
        };
        assert_eq!(reason, "banned");
        let end = tokio::time::timeout(T, sub.next()).await.unwrap();
        assert!(end.is_none(), "{transport}: the stream goes on: {end:?}");
    }
}

/// `channel`'s presence connections, read with the API key from `server`.
async fn present(server: &Server, channel: &str) -> u64 {
    let url = server.url(&format!("/api/presence-stats?channel={channel}"));
    let (status, _, body) = send(Method::GET, &url, &[KEY], "").await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    v["connections"].as_u64().unwrap()
}

/// Waits (bounded) until `channel` has `n` presence connections as `server` reads them: a
/// join or leave on another node takes a moment to reach the backplane.
async fn until_present(server: &Server, channel: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let now = present(server, channel).await;
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel}: {now}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One poll of `sub`'s on `node` (a short one when `timeout` is 0), with `session` if given;
/// its answer.
async fn poll_as(node: &Server, sub: &str, query: &str, session: Option<&str>) -> Value {
    let session = session.map(|s| format!("&session={s}")).unwrap_or_default();
    let url = node.url(&format!("/poll?{query}{session}&token={}", token(sub)));
    let (status, _, body) = rt_tests::http::get(&url).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// A long poller between two polls (its session a presence member) hears an unsubscribe and
/// a disconnect on its next poll, sent to `api` (the poller's node or another): the session
/// leaves at once, and after `reconnect: false` every later poll of it is answered with it.
async fn between_polls(poller: &Server, api_node: &Server) {
    let first = poll_as(poller, "dora", "channel=chat:p,chat:q&timeout=0", None).await;
    let session = first["session"].as_str().unwrap().to_owned();
    assert!(first["session"].is_string(), "{first}");
    until_present(api_node, "chat:p", 1).await;
    until_present(api_node, "chat:q", 1).await;

    let body = json!({"subject": "dora", "channel": "chat:q"});
    let (status, v) = api(api_node, "/api/unsubscribe", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Left at once, not when the grace ends.
    until_present(api_node, "chat:q", 0).await;
    // A long poll that would otherwise wait 30 s: answered at once, without the channel.
    let started = tokio::time::Instant::now();
    let query = "channel=chat:p,chat:q&timeout=30";
    let answer = poll_as(poller, "dora", query, Some(&session)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{answer}");
    assert_eq!(answer["unsubscribed"], json!(["chat:q"]), "{answer}");
    assert!(answer.get("disconnect").is_none(), "{answer}");
    assert_eq!(answer["session"], session.as_str(), "{answer}");
    let cursor = answer["cursor"].as_str().unwrap();
    assert!(
        !cursor.contains("chat:q") && cursor.contains("chat:p"),
        "{answer}"
    );
    // Said once: the next poll (short) has nothing more about it, and keeps chat:p.
    let answer = poll_as(poller, "dora", "channel=chat:p&timeout=0", Some(&session)).await;
    assert!(answer.get("unsubscribed").is_none(), "{answer}");
    until_present(api_node, "chat:p", 1).await;

    let body = json!({"subject": "dora", "reconnect": false, "reason": "banned"});
    let (status, v) = api(api_node, "/api/disconnect", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    until_present(api_node, "chat:p", 0).await;
    // Every later poll of the session gets the disconnect again, and joins nothing.
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let answer = poll_as(poller, "dora", "channel=chat:p&timeout=30", Some(&session)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{answer}");
        assert_eq!(
            answer["disconnect"],
            json!({"reconnect": false, "reason": "banned"}),
            "{answer}"
        );
        assert_eq!(present(api_node, "chat:p").await, 0);
    }

    // With `reconnect: true`, the next poll hears it once and the session ends: the poll
    // after that starts a new one.
    let first = poll_as(poller, "eve", "channel=chat:p&timeout=0", None).await;
    let session = first["session"].as_str().unwrap().to_owned();
    until_present(api_node, "chat:p", 1).await;
    let body = json!({"subject": "eve", "reason": "moved"});
    let (status, v) = api(api_node, "/api/disconnect", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    until_present(api_node, "chat:p", 0).await;
    let answer = poll_as(poller, "eve", "channel=chat:p&timeout=30", Some(&session)).await;
    assert_eq!(
        answer["disconnect"],
        json!({"reconnect": true, "reason": "moved"}),
        "{answer}"
    );
    let answer = poll_as(poller, "eve", "channel=chat:p&timeout=0", Some(&session)).await;
    assert!(answer.get("disconnect").is_none(), "{answer}");
    assert_ne!(answer["session"], session.as_str(), "{answer}");
    until_present(api_node, "chat:p", 1).await;
}

#[tokio::test]
async fn a_poller_between_polls_hears_unsubscribe_and_disconnect_on_its_next_poll() {
    let server = Server::start(&["--jwt-hs256-secret", SECRET, "--presence", "chat:*"]).await;
    between_polls(&server, &server).await;
}

#[tokio::test]
async fn a_poller_between_polls_hears_signals_sent_to_another_node_over_redis() {
    let prefix = cluster::prefix("control-poll-session");
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let args = [
            "--backplane",
            &rt_tests::redis_url(),
            "--redis-prefix",
            &prefix,
        ];
        let more = ["--jwt-hs256-secret", SECRET, "--presence", "chat:*"];
        nodes.push(Server::start(&[&args[..], &more].concat()).await);
    }
    between_polls(&nodes[0], &nodes[1]).await;
}
