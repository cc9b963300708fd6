//! Presence and the channel registry through the real rt-server binary: on one node, across
//! three nodes over Redis, over a Redis Cluster and over NATS, a SIGKILLed node's entries expiring,
//! pagination, counts, permissions, and bad input to every route.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use jsonwebtoken::{encode, EncodingKey, Header};
use rt_tests::http::send;
use rt_tests::Server;
use serde_json::{json, Value};

const KEY: (&str, &str) = ("x-api-key", "test-key");
const SECRET: &str = "presence-test-secret";

/// `GET path` with `headers`: the status and JSON body.
async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, _, body) = send(Method::GET, &server.url(path), headers, "")
        .await
        .unwrap();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
    (status, body)
}

/// `GET path` with the API key until `ok` holds for its `200` answer (presence is written
/// without waiting, so reads see it a moment later; `503` while the backplane reconnects is
/// waited past); returns that answer.
async fn until(server: &Server, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(server, path, &[KEY]).await;
        // 503 while the backplane reconnects is an answer to wait past.
        if status != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        if status == StatusCode::OK && ok(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stats_are(connections: u64, subjects: u64) -> impl Fn(&Value) -> bool {
    move |b| b["connections"] == connections && b["subjects"] == subjects
}

fn token(sub: &str, presence: &[&str], info: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims =
        json!({"sub": sub, "exp": exp, "subscribe": ["*"], "presence": presence, "info": info});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A WebSocket on `server` as the holder of `token` (anonymous without), subscribed to
/// `channels`.
async fn member(server: &Server, token: Option<&str>, channels: &[&str]) -> cluster::Ws {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let mut ws = cluster::ws::connect(&server.ws_url("/ws"), &headers).await;
    cluster::ws::subscribe(&mut ws, channels, None).await;
    ws
}

/// Every member of `channel`, read through `server` `limit` at a time; the pages must chain.
async fn all_members(server: &Server, channel: &str, limit: usize) -> Vec<Value> {
    let mut members = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let path = format!("/api/presence?channel={channel}&limit={limit}{cursor}");
        let (status, page) = get(server, &path, &[KEY]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["members"].as_array().unwrap();
        assert!(got.len() <= limit, "{page}");
        members.extend(got.iter().cloned());
        match page["cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return members,
        }
    }
    panic!("presence pages never ended");
}

fn clients(members: &[Value]) -> BTreeSet<String> {
    members
        .iter()
        .map(|m| m["client"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn presence_on_one_node_counts_pages_and_follows_leaves() {
    let server = Server::start(&["--presence", "chat:*"]).await;
    let mut chat = Vec::new();
    for _ in 0..5 {
        chat.push(member(&server, None, &["chat:a"]).await);
    }
    let _news = member(&server, None, &["news", "chat:b"]).await;
    // Anonymous connections are members without a subject.
    until(
        &server,
        "/api/presence-stats?channel=chat:a",
        stats_are(5, 0),
    )
    .await;
    let members = all_members(&server, "chat:a", 2).await;
    assert_eq!(members.len(), 5);
    assert_eq!(clients(&members).len(), 5, "one entry per connection");
    assert!(members.iter().all(|m| m.get("subject").is_none()));
    let (_, page) = get(&server, "/api/presence?channel=chat:a&limit=3", &[KEY]).await;
    assert_eq!(
        (&page["connections"], &page["subjects"]),
        (&json!(5), &json!(0))
    );

    // The registry lists every channel with subscribers, presence or not, by pattern.
    let (_, all) = get(&server, "/api/channels", &[KEY]).await;
    assert_eq!(
        all["channels"],
        json!([
            {"channel": "chat:a", "subscribers": 5},
            {"channel": "chat:b", "subscribers": 1},
            {"channel": "news", "subscribers": 1},
        ]),
        "{all}"
    );
    let (_, first) = get(&server, "/api/channels?pattern=chat:*&limit=1", &[KEY]).await;
    assert_eq!(first["channels"][0]["channel"], "chat:a", "{first}");
    let next = first["cursor"].as_str().unwrap();
    let (_, rest) = get(
        &server,
        &format!("/api/channels?pattern=chat:*&limit=1&cursor={next}"),
        &[KEY],
    )
    .await;
    assert_eq!(
        (&rest["channels"][0]["channel"], &rest["cursor"]),
        (&json!("chat:b"), &Value::Null),
        "{rest}"
    );
    let (_, exact) = get(&server, "/api/channels?pattern=news", &[KEY]).await;
    assert_eq!(exact["channels"].as_array().unwrap().len(), 1, "{exact}");

    // Leaving (closing the socket) takes the connection out of presence and the counts.
    chat.truncate(2);
    until(
        &server,
        "/api/presence-stats?channel=chat:a",
        stats_are(2, 0),
    )
    .await;
    until(&server, "/api/channels?pattern=chat:a", |b| {
        b["channels"][0]["subscribers"] == 2
    })
    .await;
    chat.clear();
    until(&server, "/api/channels?pattern=chat:a", |b| {
        b["channels"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn bad_input_to_every_presence_route_is_a_clear_4xx() {
    let server = Server::start(&["--presence", "chat:*"]).await;
    let cases: [(&str, StatusCode, &str); 16] = [
        ("/api/presence", StatusCode::BAD_REQUEST, "bad_request"),
        (
            "/api/presence?channel=news",
            StatusCode::NOT_FOUND,
            "presence_disabled",
        ),
        (
            "/api/presence?channel=no%20spaces",
            StatusCode::BAD_REQUEST,
            "invalid_channel",
        ),
        (
            "/api/presence?channel=chat:a&limit=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/presence?channel=chat:a&limit=1001",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/presence?channel=chat:a&limit=x",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/presence?channel=chat:a&cursor=not-hex!",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/api/presence-stats",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/presence-stats?channel=news",
            StatusCode::NOT_FOUND,
            "presence_disabled",
        ),
        (
            "/api/presence-stats?channel=a%2Ab",
            StatusCode::BAD_REQUEST,
            "invalid_channel",
        ),
        (
            "/api/channels?pattern=a*b",
            StatusCode::BAD_REQUEST,
            "invalid_pattern",
        ),
        (
            "/api/channels?pattern=",
            StatusCode::BAD_REQUEST,
            "invalid_pattern",
        ),
        (
            "/api/channels?limit=5000",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/channels?cursor=no%20spaces",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/presence?channel=chat:a&limit=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("/presence", StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (path, status, code) in cases {
        let headers: &[(&str, &str)] = if path.starts_with("/api") {
            &[KEY]
        } else {
            &[]
        };
        let (got, body) = get(&server, path, headers).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    for path in [
        "/api/presence?channel=chat:a",
        "/api/presence-stats?channel=chat:a",
        "/api/channels",
    ] {
        let (status, body) = get(&server, path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let (status, _, _) = send(Method::POST, &server.url(path), &[KEY], "")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}

#[tokio::test]
async fn clients_read_presence_only_where_their_token_allows() {
    let server = Server::start(&["--jwt-hs256-secret", SECRET, "--presence", "room:*"]).await;
    let alice = token("alice", &["room:*"], json!({"name": "Alice"}));
    let bob = token("bob", &["lobby"], Value::Null);
    let _a = member(&server, Some(&alice), &["room:1"]).await;
    let _b = member(&server, Some(&bob), &["room:1"]).await;
    until(
        &server,
        "/api/presence-stats?channel=room:1",
        stats_are(2, 2),
    )
    .await;

    let bearer = |t: &str| format!("Bearer {t}");
    let (status, body) = get(&server, "/presence?channel=room:1", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
        "{body}"
    );
    let (status, body) = get(
        &server,
        "/presence?channel=room:1",
        &[("authorization", &bearer(&bob))],
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{body}"
    );
    let (status, body) = get(
        &server,
        "/presence?channel=room:1",
        &[("authorization", "Bearer forged")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = get(
        &server,
        &format!("/presence?channel=room:1&token={alice}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut seen: Vec<(Value, Value)> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["subject"].clone(), m["info"].clone()))
        .collect();
    seen.sort_by_key(|(s, _)| s.to_string());
    assert_eq!(
        seen,
        [
            (json!("alice"), json!({"name": "Alice"})),
            (json!("bob"), Value::Null)
        ],
        "{body}"
    );
    // A channel without presence is refused even to a token that allows it.
    let wide = token("carol", &["*"], Value::Null);
    let (status, body) = get(
        &server,
        "/presence?channel=lobby",
        &[("authorization", &bearer(&wide))],
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("presence_disabled")),
        "{body}"
    );
}

/// The arguments of a node on the Redis at `url` under `prefix`, with tokens, keeping presence
/// of `room:*`.
fn over_redis<'a>(url: &'a str, prefix: &'a str) -> Vec<&'a str> {
    vec![
        "--backplane",
        url,
        "--redis-prefix",
        prefix,
        "--jwt-hs256-secret",
        SECRET,
        "--presence",
        "room:*",
    ]
}

#[tokio::test]
async fn three_nodes_over_redis_share_presence_and_a_killed_node_expires() {
    let url = rt_tests::redis_url();
    let prefix = cluster::prefix("presence");
    let mut args = over_redis(&url, &prefix);
    args.extend(["--presence-ttl", "2s"]);
    three_nodes_share_presence_and_a_killed_node_expires(&args).await;
}

/// A node on a Redis of its own, keeping presence of `room:*`.
async fn node_on(redis: &rt_tests::RedisServer) -> Server {
    let url = redis.url();
    Server::start(&[
        "--backplane",
        &url,
        "--presence",
        "room:*",
        "--presence-ttl",
        "5s",
    ])
    .await
}

#[tokio::test]
async fn presence_comes_back_after_redis_lost_its_data() {
    let mut redis = rt_tests::RedisServer::start();
    let node = node_on(&redis).await;
    let _members = [
        member(&node, None, &["room:1"]).await,
        member(&node, None, &["room:1"]).await,
    ];
    until(&node, "/api/presence-stats?channel=room:1", stats_are(2, 0)).await;
    // A restart without persistence: every key is gone, the node writes its state again.
    redis.stop();
    redis.resume();
    until(&node, "/api/presence-stats?channel=room:1", stats_are(2, 0)).await;
    until(&node, "/api/channels", |b| {
        b["channels"] == json!([{"channel": "room:1", "subscribers": 2}])
    })
    .await;
}

#[tokio::test]
async fn a_leave_written_while_redis_was_down_leaves_no_ghost() {
    let mut redis = rt_tests::RedisServer::start_persistent();
    let node = node_on(&redis).await;
    let stays = member(&node, None, &["room:1"]).await;
    let leaves = member(&node, None, &["room:1"]).await;
    until(&node, "/api/presence-stats?channel=room:1", stats_are(2, 0)).await;
    // The leave cannot be written while Redis is down; Redis comes back with both members.
    redis.stop();
    drop(leaves);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    until(&node, "/api/presence-stats?channel=room:1", stats_are(1, 0)).await;
    until(&node, "/api/channels", |b| {
        b["channels"] == json!([{"channel": "room:1", "subscribers": 1}])
    })
    .await;
    drop(stays);
}

/// The member of presence batch `batch` that joined with `subject`.
fn joined<'a>(batch: &'a Value, subject: &str) -> &'a Value {
    batch["joins"]
        .as_array()
        .and_then(|joins| joins.iter().find(|j| j["subject"] == subject))
        .unwrap_or_else(|| panic!("no join of {subject} in {batch}"))
}

/// Reads `ws` until a `presence` message of `channel` lists `subject` among its `joins` (or
/// `leaves`); other messages, and presence messages about others, are skipped.
async fn ws_sees(ws: &mut cluster::Ws, channel: &str, list: &str, subject: &str) -> Value {
    loop {
        let m = cluster::ws_recv(ws).await;
        if m["type"] == "presence"
            && m["channel"] == channel
            && m[list]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["subject"] == subject)
        {
            return m;
        }
    }
}

/// Reads `sse` until an `rt.presence` block of `channel` lists `subject` in `list`.
async fn sse_sees(
    sse: &mut rt_tests::sse::SseStream,
    channel: &str,
    list: &str,
    subject: &str,
) -> Value {
    loop {
        let block = sse.event().await;
        if block.event.as_deref() != Some("rt.presence") {
            continue;
        }
        let m = block.data_json();
        assert!(block.id.is_none(), "a presence block moves no cursor");
        if m["channel"] == channel
            && m[list]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["subject"] == subject)
        {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_ws_and_sse_on_two_nodes_and_a_storm_comes_batched() {
    let url = rt_tests::redis_url();
    let prefix = cluster::prefix("joins");
    let args = over_redis(&url, &prefix);
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let watcher = token("watcher", &["room:*"], Value::Null);
    let mut ws = member(&a, Some(&watcher), &["room:j"]).await;
    let mut sse = rt_tests::sse::SseStream::open_ok(
        &b.url(&format!("/sse?channel=room:j&token={watcher}")),
        &[],
    )
    .await;
    until(&a, "/api/presence-stats?channel=room:j", stats_are(2, 1)).await;
    // A member without the presence permission sees no join events, but is one.
    let blind = token("blind", &[], Value::Null);
    let mut blind_ws = member(&a, Some(&blind), &["room:j"]).await;

    // A held poll with the same grant: answered by join events (its own first), and a
    // member still after its answer (its session is).
    let held = b.url(&format!("/poll?channel=room:j&timeout=2&token={watcher}"));
    let poll = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        (rt_tests::http::get(&held).await.unwrap(), started.elapsed())
    });
    until(&a, "/api/presence-stats?channel=room:j", stats_are(4, 2)).await;

    let carol = token("carol", &[], json!({"name": "Carol"}));
    let carol_ws = member(&a, Some(&carol), &["room:j"]).await;
    let seen = tokio::time::timeout(cluster::T, ws_sees(&mut ws, "room:j", "joins", "carol"))
        .await
        .expect("no join on the WebSocket of the same node");
    let join = joined(&seen, "carol");
    assert_eq!(join["info"], json!({"name": "Carol"}), "{seen}");
    assert!(join["client"].as_str().unwrap().len() >= 8, "{seen}");
    let over_sse = tokio::time::timeout(cluster::T, sse_sees(&mut sse, "room:j", "joins", "carol"))
        .await
        .expect("no join on the SSE stream of the other node");
    assert!(over_sse["joins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["client"] == join["client"]));

    let ((status, _, body), held_for) = poll.await.unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        held_for < Duration::from_millis(1900),
        "{held_for:?}: {answer}"
    );
    assert_eq!(answer["events"], json!([]), "{answer}");
    // Its own join, and maybe the other watchers' too, when their batches were still on
    // their way as it came.
    assert!(
        poll_heard(&answer, "room:j", "joins", "watcher") >= 1,
        "{answer}"
    );

    drop(carol_ws);
    tokio::time::timeout(cluster::T, ws_sees(&mut ws, "room:j", "leaves", "carol"))
        .await
        .expect("no leave on the WebSocket");
    tokio::time::timeout(cluster::T, sse_sees(&mut sse, "room:j", "leaves", "carol"))
        .await
        .expect("no leave on the SSE stream");
    // Published after carol left: the blind member's next message is this event, not a join.
    cluster::publish(&a, "room:j", "after").await;
    let next = loop {
        let m = cluster::ws_recv(&mut blind_ws).await;
        if m["type"] != "heartbeat" {
            break m;
        }
    };
    assert_eq!(next["type"], "event", "{next}");

    // A storm: N connections join on node A; the SSE watcher on node B gets them in a few
    // batches, not one message each.
    const N: usize = 200;
    let storm = token("storm", &[], Value::Null);
    let mut crowd = Vec::new();
    for _ in 0..N {
        crowd.push(member(&a, Some(&storm), &["room:j"]).await);
    }
    let (mut joins, mut messages) = (0, 0);
    while joins < N {
        let block = tokio::time::timeout(cluster::T, sse.event())
            .await
            .unwrap_or_else(|_| panic!("only {joins} of {N} joins came"));
        if block.event.as_deref() == Some("rt.presence") {
            messages += 1;
            let m = block.data_json();
            joins += m["joins"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["subject"] == "storm")
                .count();
        }
    }
    assert_eq!(joins, N);
    assert!(
        messages <= N / 10,
        "{N} joins came in {messages} presence messages"
    );
}

/// `n` channels `room:...`, each on another master of `redis`.
fn on_every_shard(redis: &rt_tests::RedisCluster, n: usize) -> Vec<String> {
    let mut masters = BTreeSet::new();
    let mut channels = Vec::new();
    for i in 0..1000 {
        let channel = format!("room:{i}");
        if masters.insert(redis.master_of(&format!("{{{channel}}}"))) {
            channels.push(channel);
            if channels.len() == n {
                return channels;
            }
        }
    }
    panic!("fewer than {n} masters");
}

/// Presence and the channel registry on a Redis Cluster: channels on every shard, members on
/// two of three nodes, read from the third (counts, chained pages, `/api/channels` merged over
/// the nodes' registries); a shard that lost its data gets the node's members back at the next
/// heartbeat; a SIGKILLed node's members expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_a_redis_cluster_spans_shards_and_nodes_and_expires_a_killed_node() {
    let redis = rt_tests::RedisCluster::start();
    let url = redis.url();
    let prefix = cluster::prefix("pres_cluster");
    let mut args = over_redis(&url, &prefix);
    args.extend(["--presence-ttl", "3s"]);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&args).await);
    }
    let rooms = on_every_shard(&redis, 3);
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let alice = token("alice", &[], json!({"name": "Alice"}));
    let bob = token("bob", &[], Value::Null);
    // alice on node 0 in every room, and on node 1 in the first; bob on node 1 everywhere.
    let _a0 = member(&nodes[0], Some(&alice), &rooms).await;
    let a1 = member(&nodes[1], Some(&alice), &rooms[..1]).await;
    let b1 = member(&nodes[1], Some(&bob), &rooms).await;

    for (i, room) in rooms.iter().enumerate() {
        let want = if i == 0 { (3, 2) } else { (2, 2) };
        let path = format!("/api/presence-stats?channel={room}");
        until(&nodes[2], &path, stats_are(want.0, want.1)).await;
        let members = all_members(&nodes[2], room, 1).await;
        assert_eq!(clients(&members).len(), want.0 as usize, "{members:?}");
        // The channel's presence is on its own shard, in its hash tag's slot.
        let master = redis.master_of(&format!("{{{room}}}"));
        let key = format!("{prefix}:{{{room}}}:p:nodes");
        assert_eq!(
            rt_tests::redis_cmd(&format!("redis://127.0.0.1:{master}"), &["EXISTS", &key]),
            ":1\r\n",
            "{key} is not on master {master}"
        );
    }
    let counts = |first: u64, rest: u64| {
        let mut want: Vec<Value> = rooms
            .iter()
            .enumerate()
            .map(|(i, room)| json!({"channel": room, "subscribers": if i == 0 { first } else { rest }}))
            .collect();
        want.sort_by_key(|c| c["channel"].as_str().unwrap().to_owned());
        want
    };
    // The registry pages across the nodes' registries, one channel at a time.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let path = format!("/api/channels?pattern=room:*&limit=1{cursor}");
        let (status, page) = get(&nodes[2], &path, &[KEY]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(page["channels"].as_array().unwrap().iter().cloned());
        match page["cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, counts(3, 2));

    // A shard that lost its data (here: flushed) gets the nodes' members back at their next
    // heartbeat (a third of the ttl), and nothing more.
    let master = redis.master_of(&format!("{{{}}}", rooms[1]));
    let port = format!("redis://127.0.0.1:{master}");
    rt_tests::redis_cmd(&port, &["FLUSHALL"]);
    let path = format!("/api/presence-stats?channel={}", rooms[1]);
    let (_, after) = get(&nodes[2], &path, &[KEY]).await;
    assert_eq!(after["connections"], 0, "{after}");
    until(&nodes[2], &path, stats_are(2, 2)).await;

    // A crash: node 1 says nothing, its entries expire after the ttl (3 s).
    nodes[1].kill();
    drop((a1, b1));
    for room in &rooms {
        let path = format!("/api/presence-stats?channel={room}");
        until(&nodes[2], &path, stats_are(1, 1)).await;
        let members = all_members(&nodes[0], room, 1).await;
        assert_eq!(members.len(), 1);
        assert_eq!(members[0]["subject"], "alice");
    }
    until(&nodes[2], "/api/channels?pattern=room:*", |b| {
        b["channels"] == json!(counts(1, 1))
    })
    .await;
}

/// Join and leave events on a Redis Cluster: a member joining on one node is announced to a
/// WebSocket watcher on the other, and to an SSE watcher on its own node; so is its leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_both_nodes_on_a_redis_cluster() {
    let redis = rt_tests::RedisCluster::start();
    let url = redis.url();
    let prefix = cluster::prefix("joins_cluster");
    joins_and_leaves_cross_nodes(&over_redis(&url, &prefix)).await;
}

/// What the masters at `urls` have run: script calls, their Redis µs, and the commands run
/// inside scripts (every command but the scripts themselves and what the tests, the cluster
/// client and health checks send around them).
async fn redis_work(urls: &[String]) -> (u64, u64, u64) {
    let (mut scripts, mut us, mut inside) = (0, 0, 0);
    for url in urls {
        let url = url.clone();
        let info = tokio::task::spawn_blocking(move || {
            rt_tests::redis_cmd(&url, &["INFO", "commandstats"])
        })
        .await
        .unwrap();
        for line in info.lines() {
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |f: &str| {
                stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match name {
                "evalsha" | "eval" => {
                    scripts += field("calls");
                    us += field("usec");
                }
                "info" | "ping" | "cluster" | "client" | "hello" | "command" | "select"
                | "readonly" | "script" | "subscribe" | "ssubscribe" | "sunsubscribe"
                | "unsubscribe" | "wait" => {}
                _ => inside += field("calls"),
            }
        }
    }
    (scripts, us, inside)
}

/// Per join of a storm of `N` connections joining one channel on the backplane at `url`
/// (Redis masters `masters`): the script calls, Redis µs and commands inside scripts, on a
/// channel without presence (a join then costs the history read and the channel registry)
/// and on one with presence.
async fn join_cost(url: &str, masters: &[String]) -> [[f64; 3]; 2] {
    const N: usize = 100;
    let prefix = cluster::prefix("join_cost");
    let mut args = over_redis(url, &prefix);
    // No heartbeat during the measure.
    args.extend(["--presence-ttl", "60s"]);
    let node = Server::start(&args).await;
    let who = token("storm", &[], Value::Null);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut cost = Vec::new();
    let mut held = Vec::new();
    for channel in [["other:storm"], ["room:storm"]] {
        let before = redis_work(masters).await;
        let storm = (0..N).map(|_| member(&node, Some(&who), &channel));
        held.extend(futures_util::future::join_all(storm).await);
        until(
            &node,
            &format!("/api/channels?pattern={}", channel[0]),
            |b| b["channels"][0]["subscribers"] == N,
        )
        .await;
        // Past the writer's linger, so that every join is written.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = redis_work(masters).await;
        cost.push([after.0 - before.0, after.1 - before.1, after.2 - before.2]);
    }
    until(
        &node,
        "/api/presence-stats?channel=room:storm",
        stats_are(N as u64, 1),
    )
    .await;
    let per_join = |c: [u64; 3]| c.map(|v| v as f64 / N as f64);
    [per_join(cost[0]), per_join(cost[1])]
}

/// The Redis cost of a presence join, on one Redis and on a Redis Cluster (printed; run with
/// `--nocapture` to read it): a storm's joins are written in a few batched calls on both, not
/// one call per join (on a cluster a batch is one call per slot it touches: here the
/// channel's, plus the node registry's for the counts, which the baseline pays too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_join_costs_a_fraction_of_a_script_call_on_redis_and_on_a_cluster() {
    let single = rt_tests::RedisServer::start();
    let one = join_cost(&single.url(), &[single.url()]).await;
    let redis = rt_tests::RedisCluster::start();
    let masters: Vec<String> = redis
        .ports()
        .into_iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .filter(|u| rt_tests::redis_cmd(u, &["INFO", "replication"]).contains("role:master"))
        .collect();
    assert_eq!(masters.len(), 3);
    let many = join_cost(&redis.url(), &masters).await;
    for (name, [off, on]) in [("one Redis", one), ("Redis Cluster", many)] {
        let [calls, us, inside] = [0, 1, 2].map(|i| on[i] - off[i]);
        println!(
            "per join on {name}: presence off {:.3} script calls, {:.1} Redis us, {:.2} commands inside scripts; presence on {:.3}, {:.1} us, {:.2}; presence adds {calls:.3} script calls, {us:.1} us, {inside:.2} commands",
            off[0], off[1], off[2], on[0], on[1], on[2]
        );
        assert!(calls < 0.5, "{name}: {calls} script calls per join");
    }
}

/// Members of `list` (`joins` or `leaves`) of a presence batch whose subject is `subject`.
fn with_subject(batch: &Value, list: &str, subject: &str) -> usize {
    batch[list]
        .as_array()
        .map_or(0, |l| l.iter().filter(|m| m["subject"] == subject).count())
}

/// The `presence` batches of a poll answer, of `channel`, that list `subject` in `list`.
fn poll_heard(answer: &Value, channel: &str, list: &str, subject: &str) -> usize {
    answer["presence"].as_array().map_or(0, |batches| {
        batches
            .iter()
            .filter(|b| b["channel"] == channel)
            .map(|b| with_subject(b, list, subject))
            .sum()
    })
}

/// `GET /poll?{query}` with `token`: the status and JSON body.
async fn poll_as(server: &Server, token: &str, query: &str) -> (StatusCode, Value) {
    get(server, &format!("/poll?{query}&token={token}"), &[]).await
}

/// A poll session's polls: each echoes the `session` and `cursor` of the previous answer.
struct Poller {
    token: String,
    channel: &'static str,
    session: Option<String>,
    cursor: Option<String>,
}

impl Poller {
    fn new(token: String, channel: &'static str) -> Self {
        Poller {
            token,
            channel,
            session: None,
            cursor: None,
        }
    }

    /// One poll held at most `timeout` seconds; the answer, checked to keep the session.
    async fn poll(&mut self, server: &Server, timeout: &str) -> Value {
        let mut query = format!("channel={}&timeout={timeout}", self.channel);
        if let Some(s) = &self.session {
            query.push_str(&format!("&session={s}"));
        }
        if let Some(c) = &self.cursor {
            query.push_str(&format!("&cursor={}", cluster::enc(c)));
        }
        let (status, answer) = poll_as(server, &self.token, &query).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        self.follow(&answer);
        answer
    }

    /// Takes the session and cursor of `answer`, checked to keep the session.
    fn follow(&mut self, answer: &Value) {
        let session = answer["session"].as_str().unwrap().to_owned();
        assert_eq!(session.len(), 32, "{answer}");
        if let Some(before) = &self.session {
            assert_eq!(&session, before, "the session changed: {answer}");
        }
        self.session = Some(session);
        self.cursor = answer["cursor"].as_str().map(str::to_owned);
    }
}

/// The WebSocket's presence messages about `channel` until one lists `subject` in `list`:
/// how many of them listed `subject` in `joins` on the way (that one included).
async fn ws_joins_until(ws: &mut cluster::Ws, channel: &str, list: &str, subject: &str) -> usize {
    let mut joins = 0;
    loop {
        let m = tokio::time::timeout(cluster::T, cluster::ws_recv(ws))
            .await
            .unwrap_or_else(|_| panic!("no {list} of {subject} on the WebSocket"));
        if m["type"] != "presence" || m["channel"] != channel {
            continue;
        }
        joins += with_subject(&m, "joins", subject);
        if with_subject(&m, list, subject) > 0 {
            return joins;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poller_is_one_member_across_its_polls_and_leaves_after_the_grace() {
    let server = Server::start(&[
        "--jwt-hs256-secret",
        SECRET,
        "--presence",
        "room:*",
        "--poll-session-grace",
        "1s",
    ])
    .await;
    let grant = ["room:*"];
    let mut ws = member(
        &server,
        Some(&token("watcher", &grant, Value::Null)),
        &["room:p"],
    )
    .await;
    until(
        &server,
        "/api/presence-stats?channel=room:p",
        stats_are(1, 1),
    )
    .await;

    let mut poller = Poller::new(token("poller", &grant, json!({"via": "poll"})), "room:p");
    let first = poller.poll(&server, "0").await;
    assert!(first.get("presence").is_none(), "{first}");
    until(
        &server,
        "/api/presence-stats?channel=room:p",
        stats_are(2, 2),
    )
    .await;
    // Five polls of one session: its own join comes once, in an answer, and the member stays
    // the same one throughout (not one per poll, not gone between polls).
    let mut own_joins = 0;
    for _ in 0..4 {
        let answer = poller.poll(&server, "0.5").await;
        own_joins += poll_heard(&answer, "room:p", "joins", "poller");
        assert_eq!(
            poll_heard(&answer, "room:p", "leaves", "poller"),
            0,
            "{answer}"
        );
        let (_, stats) = get(&server, "/api/presence-stats?channel=room:p", &[KEY]).await;
        assert_eq!(stats["connections"], 2, "{stats}");
    }
    assert_eq!(own_joins, 1, "the poller heard its own join once");
    let members = all_members(&server, "room:p", 10).await;
    let mine: Vec<&Value> = members
        .iter()
        .filter(|m| m["subject"] == "poller")
        .collect();
    assert_eq!(mine.len(), 1, "{members:?}");
    assert_eq!(mine[0]["info"], json!({"via": "poll"}));
    let last_poll = tokio::time::Instant::now();

    // The watcher saw exactly one join of the poller before its leave, which comes once the
    // grace (1 s) after the last poll has passed.
    let joins = ws_joins_until(&mut ws, "room:p", "leaves", "poller").await;
    let gone_after = last_poll.elapsed();
    assert_eq!(joins, 1, "one join for five polls");
    assert!(
        gone_after >= Duration::from_millis(900),
        "left after {gone_after:?}"
    );
    until(
        &server,
        "/api/presence-stats?channel=room:p",
        stats_are(1, 1),
    )
    .await;

    // An expired session is no error: the next poll starts a new one, a new member.
    let expired = poller.session.take().unwrap();
    let (status, answer) = poll_as(
        &server,
        &poller.token,
        &format!("channel=room:p&timeout=0&session={expired}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_ne!(answer["session"], expired, "{answer}");
    assert_eq!(
        ws_joins_until(&mut ws, "room:p", "joins", "poller").await,
        1
    );

    // A malformed session id is a clear 400, and joins nothing.
    for bad in ["xyz", "0123456789abcdef", &"0".repeat(33)] {
        let (status, body) = poll_as(
            &server,
            &poller.token,
            &format!("channel=room:p&timeout=0&session={bad}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_session", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollers_hear_websocket_joins_and_leaves_only_with_the_grant() {
    let server = Server::start(&["--jwt-hs256-secret", SECRET, "--presence", "room:*"]).await;
    let mut seer = Poller::new(token("seer", &["room:*"], Value::Null), "room:q");
    let mut blind = Poller::new(token("blind", &[], Value::Null), "room:q");
    seer.poll(&server, "0").await;
    blind.poll(&server, "0").await;
    until(
        &server,
        "/api/presence-stats?channel=room:q",
        stats_are(2, 2),
    )
    .await;
    // The seer hears both pollers' joins (its own included), gathered between its polls.
    let (mut heard_seer, mut heard_blind) = (0, 0);
    let deadline = tokio::time::Instant::now() + cluster::T;
    while heard_seer == 0 || heard_blind == 0 {
        assert!(tokio::time::Instant::now() < deadline, "joins never heard");
        let answer = seer.poll(&server, "5").await;
        heard_seer += poll_heard(&answer, "room:q", "joins", "seer");
        heard_blind += poll_heard(&answer, "room:q", "joins", "blind");
    }
    assert_eq!((heard_seer, heard_blind), (1, 1));

    // Two held polls; a WebSocket client joins. The seer's poll is answered by the join, at
    // once; the blind poller's is held to its timeout and carries no presence.
    let seer_poll = spawn_poll(&server, &seer, "10");
    let blind_poll = spawn_poll(&server, &blind, "2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let carol = member(
        &server,
        Some(&token("carol", &[], json!({"name": "Carol"}))),
        &["room:q"],
    )
    .await;
    let (answer, took) = seer_poll.await.unwrap();
    assert!(took < Duration::from_secs(5), "held {took:?}: {answer}");
    assert_eq!(
        poll_heard(&answer, "room:q", "joins", "carol"),
        1,
        "{answer}"
    );
    assert_eq!(answer["events"], json!([]), "{answer}");
    let batch = answer["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| with_subject(b, "joins", "carol") > 0)
        .unwrap();
    let carol_entry = batch["joins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "carol")
        .unwrap();
    assert_eq!(carol_entry["info"], json!({"name": "Carol"}));
    assert_eq!(carol_entry["client"].as_str().unwrap().len(), 16);
    seer.follow(&answer);
    let (answer, took) = blind_poll.await.unwrap();
    assert!(
        took >= Duration::from_millis(1900),
        "held {took:?}: {answer}"
    );
    assert!(answer.get("presence").is_none(), "{answer}");

    // Carol leaves: the seer's next poll (held) is answered with her leave.
    let seer_poll = spawn_poll(&server, &seer, "10");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(carol);
    let (answer, took) = seer_poll.await.unwrap();
    assert!(took < Duration::from_secs(5), "held {took:?}: {answer}");
    assert_eq!(
        poll_heard(&answer, "room:q", "leaves", "carol"),
        1,
        "{answer}"
    );
    // A publish still answers a held poll of a session with its event.
    seer.follow(&answer);
    let seer_poll = spawn_poll(&server, &seer, "10");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster::publish(&server, "room:q", "hello").await;
    let (answer, _) = seer_poll.await.unwrap();
    assert_eq!(answer["events"][0]["data"], "hello", "{answer}");
}

/// Starts `poller`'s next poll (held at most `timeout` seconds) in a task: its answer and how
/// long it was held. The caller copies the answer's session and cursor back.
fn spawn_poll(
    server: &Server,
    poller: &Poller,
    timeout: &str,
) -> tokio::task::JoinHandle<(Value, Duration)> {
    let mut query = format!(
        "/poll?channel={}&timeout={timeout}&token={}",
        poller.channel, poller.token
    );
    if let Some(s) = &poller.session {
        query.push_str(&format!("&session={s}"));
    }
    if let Some(c) = &poller.cursor {
        query.push_str(&format!("&cursor={}", cluster::enc(c)));
    }
    let url = server.url(&query);
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let (status, _, body) = rt_tests::http::get(&url).await.unwrap();
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        (answer, started.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_whose_buffer_overflows_between_polls_is_told_to_reread_presence() {
    let server = Server::start(&[
        "--jwt-hs256-secret",
        SECRET,
        "--presence",
        "room:*",
        "--poll-presence-buffer",
        "5",
    ])
    .await;
    let mut poller = Poller::new(token("poller", &["room:*"], Value::Null), "room:o");
    poller.poll(&server, "0").await;
    // Its own join first, so that what follows is all the crowd's.
    let deadline = tokio::time::Instant::now() + cluster::T;
    while poll_heard(
        &poller.poll(&server, "5").await,
        "room:o",
        "joins",
        "poller",
    ) == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "own join never heard"
        );
    }
    // Two waves of 8 joins, in two gathering windows, while the poller does not poll: 16
    // members for a buffer of 5.
    let crowd = token("crowd", &[], Value::Null);
    let mut members = Vec::new();
    for wave in 1..=2 {
        for _ in 0..8 {
            members.push(member(&server, Some(&crowd), &["room:o"]).await);
        }
        until(
            &server,
            "/api/presence-stats?channel=room:o",
            stats_are(1 + 8 * wave, 2),
        )
        .await;
        // Past the 100 ms window: the wave is sent (and buffered) as its own batch.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let answer = poller.poll(&server, "0").await;
    assert_eq!(answer["presence_lost"], true, "{answer}");
    let kept = poll_heard(&answer, "room:o", "joins", "crowd");
    assert!((1..16).contains(&kept), "{kept} joins kept: {answer}");
    // Said once: the next answer starts afresh.
    let again = poller.poll(&server, "0").await;
    assert!(again.get("presence_lost").is_none(), "{again}");
    drop(members);
}

/// The arguments of a node on the NATS at `url` whose stream is named `prefix`, with tokens,
/// keeping presence of `room:*` with a 2 s ttl.
fn over_nats<'a>(url: &'a str, prefix: &'a str) -> Vec<&'a str> {
    let mut args = over_redis(url, prefix);
    args.extend(["--presence-ttl", "2s"]);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_nats_share_presence_and_a_killed_node_expires() {
    let url = rt_tests::nats_url();
    let prefix = cluster::prefix("presence_nats");
    three_nodes_share_presence_and_a_killed_node_expires(&over_nats(&url, &prefix)).await;
}

/// Three nodes started with `args` (a presence ttl of 2 s): counts, pages in client id order
/// and the active channels agree on every node, a SIGKILLed node's entries expire, and a
/// leave is written at once.
async fn three_nodes_share_presence_and_a_killed_node_expires(args: &[&str]) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(args).await);
    }
    let alice = token("alice", &[], json!({"name": "Alice"}));
    let bob = token("bob", &[], Value::Null);
    // `.`, `:` and `@` are not key characters in a NATS bucket (the names are encoded there).
    let odd = "room:y.z@a";
    // alice twice on node 0, once on node 1; bob on node 1; node 2 has nobody.
    let _a1 = member(&nodes[0], Some(&alice), &["room:x"]).await;
    let a2 = member(&nodes[0], Some(&alice), &["room:x", odd]).await;
    let a3 = member(&nodes[1], Some(&alice), &["room:x"]).await;
    let b1 = member(&nodes[1], Some(&bob), &["room:x"]).await;

    until(
        &nodes[2],
        "/api/presence-stats?channel=room:x",
        stats_are(4, 2),
    )
    .await;
    let members = all_members(&nodes[2], "room:x", 3).await;
    assert_eq!(clients(&members).len(), 4, "{members:?}");
    let alices: Vec<&Value> = members.iter().filter(|m| m["subject"] == "alice").collect();
    assert_eq!(alices.len(), 3);
    assert!(alices.iter().all(|m| m["info"] == json!({"name": "Alice"})));
    // Pages come in client id order, whichever node holds the member.
    let ids: Vec<&str> = members
        .iter()
        .map(|m| m["client"].as_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    until(
        &nodes[2],
        &format!("/api/presence-stats?channel={odd}"),
        stats_are(1, 1),
    )
    .await;
    let (_, channels) = get(&nodes[2], "/api/channels?pattern=room:*", &[KEY]).await;
    assert_eq!(
        channels["channels"],
        json!([{"channel": "room:x", "subscribers": 4}, {"channel": odd, "subscribers": 1}]),
        "{channels}"
    );
    let (_, exact) = get(&nodes[0], &format!("/api/channels?pattern={odd}"), &[KEY]).await;
    assert_eq!(
        exact["channels"],
        json!([{"channel": odd, "subscribers": 1}]),
        "{exact}"
    );
    let (_, first) = get(&nodes[1], "/api/channels?pattern=room:*&limit=1", &[KEY]).await;
    assert_eq!(
        (&first["channels"][0]["channel"], &first["cursor"]),
        (&json!("room:x"), &json!("room:x")),
        "{first}"
    );
    let (_, rest) = get(
        &nodes[1],
        "/api/channels?pattern=room:*&limit=1&cursor=room:x",
        &[KEY],
    )
    .await;
    assert_eq!(
        (&rest["channels"][0]["channel"], &rest["cursor"]),
        (&json!(odd), &Value::Null),
        "{rest}"
    );

    // A crash: node 1 says nothing, its entries expire after the ttl (2 s).
    nodes[1].kill();
    drop((a3, b1));
    until(
        &nodes[2],
        "/api/presence-stats?channel=room:x",
        stats_are(2, 1),
    )
    .await;
    let members = all_members(&nodes[0], "room:x", 1).await;
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["subject"] == "alice"));
    until(&nodes[2], "/api/channels?pattern=room:x", |b| {
        b["channels"] == json!([{"channel": "room:x", "subscribers": 2}])
    })
    .await;
    // A leave is written at once: the live node's entries go, without waiting for the ttl.
    drop(a2);
    until(
        &nodes[2],
        &format!("/api/presence-stats?channel={odd}"),
        stats_are(0, 0),
    )
    .await;
    until(&nodes[2], "/api/channels?pattern=room:*", |b| {
        b["channels"] == json!([{"channel": "room:x", "subscribers": 1}])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_ws_and_sse_on_two_nodes_over_nats() {
    let url = rt_tests::nats_url();
    let prefix = cluster::prefix("joins_nats");
    joins_and_leaves_cross_nodes(&over_nats(&url, &prefix)).await;
}

/// Two nodes started with `args`: a member joining on node B is announced to a WebSocket
/// watcher on node A and to an SSE watcher on B, is listed by presence on A, and so is its
/// leave; the counts follow.
async fn joins_and_leaves_cross_nodes(args: &[&str]) {
    let a = Server::start(args).await;
    let b = Server::start(args).await;
    let watcher = token("watcher", &["room:*"], Value::Null);
    let mut ws = member(&a, Some(&watcher), &["room:j"]).await;
    let mut sse = rt_tests::sse::SseStream::open_ok(
        &b.url(&format!("/sse?channel=room:j&token={watcher}")),
        &[],
    )
    .await;
    until(&b, "/api/presence-stats?channel=room:j", stats_are(2, 1)).await;

    // carol joins on node B: the WebSocket on node A hears it, and so does the SSE on B.
    let carol = token("carol", &[], json!({"name": "Carol"}));
    let carol_ws = member(&b, Some(&carol), &["room:j"]).await;
    let seen = tokio::time::timeout(cluster::T, ws_sees(&mut ws, "room:j", "joins", "carol"))
        .await
        .expect("no join on the WebSocket of the other node");
    let join = joined(&seen, "carol").clone();
    assert_eq!(join["info"], json!({"name": "Carol"}), "{seen}");
    let over_sse = tokio::time::timeout(cluster::T, sse_sees(&mut sse, "room:j", "joins", "carol"))
        .await
        .expect("no join on the SSE stream of the same node");
    assert!(over_sse["joins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["client"] == join["client"]));
    // The member the event names is the one presence lists, on either node (once node B's
    // write has landed: the event and the write may race over separate paths).
    let client = join["client"].clone();
    until(&a, "/api/presence?channel=room:j&limit=10", |page| {
        page["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["client"] == client))
    })
    .await;

    drop(carol_ws);
    tokio::time::timeout(cluster::T, ws_sees(&mut ws, "room:j", "leaves", "carol"))
        .await
        .expect("no leave on the WebSocket");
    tokio::time::timeout(cluster::T, sse_sees(&mut sse, "room:j", "leaves", "carol"))
        .await
        .expect("no leave on the SSE stream");
    until(&a, "/api/presence-stats?channel=room:j", stats_are(2, 1)).await;
}

#[tokio::test]
async fn bad_input_to_presence_routes_over_nats_is_a_clear_4xx() {
    let url = rt_tests::nats_url();
    let prefix = cluster::prefix("bad_nats");
    let server = Server::start(&over_nats(&url, &prefix)).await;
    let cases: [(&str, StatusCode, &str); 7] = [
        (
            "/api/presence?channel=news",
            StatusCode::NOT_FOUND,
            "presence_disabled",
        ),
        (
            "/api/presence?channel=room:a&limit=1001",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/presence?channel=room:a&cursor=not-hex!",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/api/presence-stats?channel=room%3Ea",
            StatusCode::BAD_REQUEST,
            "invalid_channel",
        ),
        (
            "/api/channels?pattern=a*b",
            StatusCode::BAD_REQUEST,
            "invalid_pattern",
        ),
        (
            "/api/channels?limit=5000",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/channels?cursor=no%20spaces",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
    ];
    for (path, status, code) in cases {
        let (got, body) = get(&server, path, &[KEY]).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    // Names and cursors with the characters a bucket key cannot hold are answered, empty.
    for path in [
        "/api/presence?channel=room:a.b@c&cursor=ffff",
        "/api/presence-stats?channel=room:a.b@c",
        "/api/channels?pattern=room:a.b@*&cursor=room:a.b@c",
        "/api/channels?pattern=room:a.b@c",
    ] {
        let (status, body) = get(&server, path, &[KEY]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let empty = [&body["members"], &body["channels"]]
            .iter()
            .any(|list| list.as_array().is_some_and(Vec::is_empty));
        assert!(empty || body["connections"] == 0, "{path}: {body}");
    }
    let (status, body) = get(&server, "/api/presence-stats?channel=room:a", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn presence_comes_back_after_nats_restarts() {
    let mut nats = rt_tests::NatsServer::start();
    let url = nats.url();
    let node = Server::start(&[
        "--backplane",
        &url,
        "--presence",
        "room:*",
        "--presence-ttl",
        "2s",
    ])
    .await;
    let _members = [
        member(&node, None, &["room:1"]).await,
        member(&node, None, &["room:1"]).await,
    ];
    until(&node, "/api/presence-stats?channel=room:1", stats_are(2, 0)).await;
    // The bucket is in memory: a restarted NATS has none, and the node writes it again.
    nats.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.resume();
    until(&node, "/api/presence-stats?channel=room:1", stats_are(2, 0)).await;
    until(&node, "/api/channels", |b| {
        b["channels"] == json!([{"channel": "room:1", "subscribers": 2}])
    })
    .await;
}
