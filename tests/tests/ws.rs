//! The WebSocket transport (`/ws`) through the real binary over real sockets: handshake
//! validation, the JSON protocol, resume, idempotent publishes, every close code the server
//! sends and the per-connection limits, plus the Node `ws` and Python `websockets` clients.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rt_tests::http::publish;
use rt_tests::ws::{
    close_of, closed, masked_text, raw_frames, read_head, recv, send, subscribe, Ws,
};
use rt_tests::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

async fn connect(server: &Server) -> Ws {
    connect_with(server, &[]).await
}

async fn connect_with(server: &Server, headers: &[(&str, &str)]) -> Ws {
    rt_tests::ws::connect(&server.ws_url("/ws"), headers).await
}

/// Sends a raw HTTP/1.1 request and returns the head of the answer.
async fn raw(server: &Server, request: &str) -> String {
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(T, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before the answer head");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upgrade(extra: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test]
async fn handshake_is_validated() {
    let server = Server::start(&[]).await;
    let ok = raw(
        &server,
        &upgrade(&format!(
            "{GOOD}{KEY}Sec-WebSocket-Protocol: other, rt.v1\r\n"
        )),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    // RFC 6455's own example key and accept value.
    assert!(ok.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("sec-websocket-protocol: rt.v1"),
        "{ok}"
    );

    let bad = [
        format!("Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{KEY}"),
        format!(
            "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n{KEY}"
        ),
        GOOD.to_string(),
        format!("{GOOD}Sec-WebSocket-Key: c2hvcnQ=\r\n"),
        format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}"),
    ];
    for b in bad {
        let answer = raw(&server, &upgrade(&b)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{b:?} -> {answer}");
        assert!(answer.contains("bad_handshake"), "{answer}");
    }
    let v8 = raw(
        &server,
        &upgrade(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{KEY}"
        )),
    )
    .await;
    assert!(v8.starts_with("HTTP/1.1 426"), "{v8}");
    assert!(
        v8.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{v8}"
    );
    let post = raw(
        &server,
        &format!("POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{GOOD}{KEY}\r\n"),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
}

#[tokio::test]
async fn subscribe_publish_ack_ping() {
    let server = Server::start(&[]).await;
    let mut reader = connect(&server).await;
    let mut writer = connect(&server).await;
    let sub = subscribe(&mut reader, &["room", "bin"], None).await;
    assert_eq!(sub["recovered"], true);
    assert_eq!(sub["channels"], json!(["room", "bin"]));

    send(
        &mut writer,
        json!({"type":"publish","channel":"room","event":"chat","data":"hi","id":"m-1"}),
    )
    .await;
    let ack = recv(&mut writer).await;
    assert_eq!(ack["type"], "published");
    assert_eq!(
        (
            ack["id"].clone(),
            ack["offset"].clone(),
            ack["duplicate"].clone()
        ),
        (json!("m-1"), json!(1), json!(false))
    );

    let ev = recv(&mut reader).await;
    assert_eq!(ev["type"], "event");
    assert_eq!(
        (
            ev["channel"].as_str(),
            ev["offset"].as_u64(),
            ev["event"].as_str(),
            ev["data"].as_str()
        ),
        (Some("room"), Some(1), Some("chat"), Some("hi"))
    );
    assert_eq!(ev["epoch"], ack["epoch"]);
    send(
        &mut reader,
        json!({"type":"ack","channel":"room","offset":1}),
    )
    .await;

    // A binary publish in a binary frame arrives as a binary frame.
    let header = br#"{"type":"publish","channel":"bin","id":"b-1"}"#;
    let mut frame = (header.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(header);
    frame.extend_from_slice(&[0, 1, 255]);
    writer.send(Message::binary(frame)).await.unwrap();
    assert_eq!(recv(&mut writer).await["id"], "b-1");
    let ev = recv(&mut reader).await;
    assert_eq!(ev["binary"]["channel"], "bin");
    assert_eq!(ev["binary"]["offset"], 1);
    assert_eq!(ev["payload"], json!([0, 1, 255]));

    send(&mut reader, json!({"type":"ping","id":42})).await;
    let pong = recv(&mut reader).await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_u64()),
        (Some("pong"), Some(42))
    );

    // Unsubscribed channels stop delivering.
    send(
        &mut reader,
        json!({"type":"unsubscribe","channels":["room"]}),
    )
    .await;
    assert_eq!(recv(&mut reader).await["type"], "unsubscribed");
    publish(&server.url(""), "room", "after").await;
    publish(&server.url(""), "bin", "text now").await;
    let ev = recv(&mut reader).await;
    assert_eq!(
        (ev["channel"].as_str(), ev["data"].as_str()),
        (Some("bin"), Some("text now"))
    );

    // Bad input gets error messages, never a close.
    for bad in [
        "{nope",
        r#"{"type":"dance"}"#,
        r#"{"type":"subscribe","channels":["a b"]}"#,
        r#"{"type":"subscribe","channels":["x"],"cursor":"zz"}"#,
    ] {
        reader.send(Message::text(bad)).await.unwrap();
        let e = recv(&mut reader).await;
        assert_eq!(e["type"], "error", "{bad} -> {e}");
        assert!(e["message"].as_str().unwrap().len() > 5);
    }
    send(
        &mut writer,
        json!({"type":"publish","channel":"a b","data":"x","id":"bad-1"}),
    )
    .await;
    let e = recv(&mut writer).await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("invalid_channel"), Some("bad-1"))
    );

    reader
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .unwrap();
    assert_eq!(closed(&mut reader).await.0, 1000);
}

/// Collects `n` events of `channel` (ignoring other messages), returning their offsets.
async fn offsets(ws: &mut Ws, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = recv(ws).await;
        if v["type"] == "event" {
            out.push(v["offset"].as_u64().unwrap());
        }
    }
    out
}

#[tokio::test]
async fn resume_with_cursor_after_a_cut_loses_and_duplicates_nothing() {
    let server = Server::start(&[]).await;
    let base = server.url("");
    let mut ws = connect(&server).await;
    let sub = subscribe(&mut ws, &["feed"], None).await;
    let epoch = sub["cursor"]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    for i in 1..=5 {
        publish(&base, "feed", &i.to_string()).await;
    }
    let mut seen: Vec<u64> = offsets(&mut ws, 5).await;
    // The connection is cut (no close handshake) while publishing goes on.
    drop(ws);
    for i in 6..=10 {
        publish(&base, "feed", &i.to_string()).await;
    }
    // The client resumes from what it processed: an older position than the last delivered
    // (at-least-once), and dedupes by offset.
    let cursor = format!("{epoch},feed=3");
    let mut ws = connect(&server).await;
    let sub = subscribe(&mut ws, &["feed"], Some(&cursor)).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    for o in offsets(&mut ws, 7).await {
        if !seen.contains(&o) {
            seen.push(o);
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    // Nothing more than the 7 replayed events arrives.
    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");

    // A cursor of another epoch cannot be honoured: recovered false, and the client is told.
    let mut ws = connect(&server).await;
    let sub = subscribe(&mut ws, &["feed"], Some("1,feed=3")).await;
    assert_eq!(sub["recovered"], false, "{sub}");
    assert_eq!(sub["resynced"], json!(["feed"]));
    assert_eq!(recv(&mut ws).await["type"], "resync");
}

#[tokio::test]
async fn a_retried_publish_is_published_once() {
    let server = Server::start(&[]).await;
    let mut reader = connect(&server).await;
    subscribe(&mut reader, &["orders"], None).await;
    let msg = json!({"type":"publish","channel":"orders","data":"buy","id":"order-7"});
    let mut first = connect(&server).await;
    send(&mut first, msg.clone()).await;
    // The ack is "lost": the connection dies before it is read; the client retries elsewhere.
    drop(first);
    let mut second = connect(&server).await;
    send(&mut second, msg.clone()).await;
    let ack = recv(&mut second).await;
    send(&mut second, msg).await;
    let again = recv(&mut second).await;
    assert_eq!(ack["offset"], 1);
    assert_eq!(again["offset"], 1);
    assert_eq!(again["duplicate"], true);
    assert_eq!(offsets(&mut reader, 1).await, [1]);
    send(
        &mut second,
        json!({"type":"publish","channel":"orders","data":"sell","id":"order-8"}),
    )
    .await;
    assert_eq!(recv(&mut second).await["offset"], 2);
    // The next event the reader sees is offset 2: order-7 was delivered once.
    assert_eq!(offsets(&mut reader, 1).await, [2]);
}

#[tokio::test]
async fn close_1008_for_a_foreign_origin_and_for_repeated_abuse() {
    let server = Server::start(&["--cors-origins", "https://app.example.com"]).await;
    let mut evil = connect_with(&server, &[("origin", "https://evil.example.com")]).await;
    assert_eq!(closed(&mut evil).await, (1008, "origin_not_allowed".into()));
    let mut good = connect_with(&server, &[("origin", "https://app.example.com")]).await;
    subscribe(&mut good, &["a"], None).await;

    // Ten invalid messages get ten errors; the eleventh closes.
    for _ in 0..10 {
        good.send(Message::text("nope")).await.unwrap();
        assert_eq!(recv(&mut good).await["type"], "error");
    }
    good.send(Message::text("nope")).await.unwrap();
    assert_eq!(
        closed(&mut good).await,
        (1008, "too_many_invalid_messages".into())
    );
}

#[tokio::test]
async fn close_1009_for_a_message_too_big() {
    let server = Server::start(&["--ws-max-message", "1024"]).await;
    let mut ws = connect(&server).await;
    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    ws.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(closed(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn close_1013_when_acks_fall_behind_the_window() {
    let server = Server::start(&["--ws-ack-window", "3", "--ws-stall-timeout", "500ms"]).await;
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type":"subscribe","channels":["w"],"acks":true}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "subscribed");
    for i in 0..6 {
        publish(&server.url(""), "w", &i.to_string()).await;
    }
    assert_eq!(offsets(&mut ws, 3).await, [1, 2, 3]);
    // Acking frees the window.
    send(&mut ws, json!({"type":"ack","channel":"w","offset":2})).await;
    assert_eq!(offsets(&mut ws, 2).await, [4, 5]);
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("unacknowledged"), "{reason}");
}

#[tokio::test]
async fn limits_channels_and_rate() {
    let server = Server::start(&[
        "--max-channels",
        "2",
        "--ws-rate-limit",
        "1",
        "--ws-rate-burst",
        "3",
    ])
    .await;
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type":"subscribe","channels":["a","b","c"]}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "too_many_channels");
    for _ in 0..2 {
        send(&mut ws, json!({"type":"ping"})).await;
    }
    let answers: Vec<Value> = [recv(&mut ws).await, recv(&mut ws).await].into();
    assert!(answers.iter().all(|a| a["type"] == "pong"), "{answers:?}");
    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["code"], "rate_limited");
}

/// A raw WebSocket client that does the handshake and then reads nothing until told to.
async fn raw_ws(server: &Server, subscribe_to: &str) -> TcpStream {
    // A small fixed receive buffer (no autotuning), so that a client that does not read
    // stalls the server's writes soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(server.addr()).await.unwrap();
    s.write_all(upgrade(&format!("{GOOD}{KEY}")).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let payload = json!({"type":"subscribe","channels":[subscribe_to]}).to_string();
    s.write_all(&masked_text(payload.as_bytes())).await.unwrap();
    s
}

#[tokio::test]
async fn close_1001_when_no_pong_arrives() {
    let server =
        Server::start(&["--ws-ping-interval", "200ms", "--ws-pong-timeout", "300ms"]).await;
    // A client that never reads never answers the Ping.
    let mut s = raw_ws(&server, "hb").await;
    let frames = raw_frames(&mut s, Duration::from_secs(5)).await;
    assert!(
        frames.iter().any(|(op, _)| *op == 9),
        "no Ping frame: {frames:?}"
    );
    assert!(frames
        .iter()
        .any(|(op, p)| *op == 1 && p.starts_with(br#"{"type":"heartbeat""#)));
    assert_eq!(
        close_of(&frames),
        Some((1001, "no pong within the timeout".into()))
    );

    // A client that answers (tungstenite does automatically) stays connected past it.
    let mut ws = connect(&server).await;
    // Reading is what lets tungstenite answer the Pings.
    let _ = timeout(Duration::from_millis(1200), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn a_stalled_reader_is_closed_with_1013_and_delays_nobody() {
    let server = Server::start(&[
        "--ws-stall-timeout",
        "1s",
        "--ws-outbound-queue",
        "16",
        // The close frame waits behind what the stalled client has not read yet.
        "--ws-close-timeout",
        "60s",
    ])
    .await;
    let mut stalled = raw_ws(&server, "firehose").await;
    let mut fast = connect(&server).await;
    subscribe(&mut fast, &["firehose"], None).await;
    let big = "x".repeat(60_000);
    let n = 150; // ~9 MB: far more than socket buffers and queues hold.
    let base = server.url("");
    // The fast reader reads all along, while the stalled one reads nothing.
    let reader = tokio::spawn(async move { offsets(&mut fast, n).await });
    for _ in 0..n {
        publish(&base, "firehose", &big).await;
    }
    // Longer than the stall timeout: the stalled connection is being closed by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The stalled client reads at last: what was buffered, then the 1013 close.
    let frames = raw_frames(&mut stalled, Duration::from_secs(30)).await;
    let (code, reason) = close_of(&frames).expect("no close frame");
    assert_eq!(code, 1013, "{reason}");
    // Counted as a WebSocket closed for being too slow, once the connection is gone (the
    // client never answers the close: it just goes).
    drop(stalled);
    server
        .wait_metric(
            "rt_connections_closed_total{transport=\"ws\",close=\"1013\"}",
            |v| v == 1.0,
        )
        .await;
    let delivered = frames.iter().filter(|(op, _)| *op == 1).count();
    assert!(
        delivered < n,
        "the stalled client was not cut off ({delivered} frames)"
    );
    // The fast reader got every event, in order, while the other one stalled.
    let got = timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, (1..=n as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn close_1001_on_graceful_shutdown() {
    let mut server = Server::start(&[]).await;
    let mut ws = connect(&server).await;
    subscribe(&mut ws, &["bye"], None).await;
    let stop = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(10));
        (server, status)
    });
    assert_eq!(closed(&mut ws).await, (1001, "server shutting down".into()));
    let (_server, status) = stop.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

fn run_peer(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The protocol through Node's `ws`, plain and over permessage-deflate (which `ws` offers).
#[tokio::test]
async fn node_ws_client() {
    let dir = rt_tests::node_modules();
    for compression in ["off", "context-takeover"] {
        let server = Server::start(&[
            "--cors-origins",
            "https://app.example.com",
            "--ws-compression",
            compression,
        ])
        .await;
        let (url, dir) = (server.ws_url("/ws"), dir.clone());
        let out = tokio::task::spawn_blocking(move || {
            let mut node = std::process::Command::new("node");
            node.arg(dir.join("ws-client.mjs"))
                .arg(url)
                .current_dir(&dir);
            if compression != "off" {
                node.arg("deflate");
            }
            run_peer(&mut node)
        })
        .await
        .unwrap();
        assert!(out.contains("ws-client: ok"), "{compression}: {out}");
    }
}

#[tokio::test]
async fn python_websockets_client() {
    let python = rt_tests::python::venv(
        "ws",
        &rt_tests::workspace_root().join("tests/python/requirements.txt"),
    );
    let script = rt_tests::workspace_root().join("tests/python/ws_client.py");
    let server = Server::start(&[]).await;
    let url = server.ws_url("/ws");
    let out = tokio::task::spawn_blocking(move || {
        run_peer(std::process::Command::new(python).arg(script).arg(url))
    })
    .await
    .unwrap();
    assert!(out.contains("ws_client: ok"), "{out}");
}

/// permessage-deflate with a client that negotiates it (Python's `websockets`, which offers it
/// by default): compressed frames (RSV1) carry intact events, both with events compressed
/// once per publish and with context takeover, and a zip bomb is closed with 1009.
#[tokio::test]
async fn python_websockets_client_with_compression() {
    let python = rt_tests::python::venv(
        "ws",
        &rt_tests::workspace_root().join("tests/python/requirements.txt"),
    );
    let script = rt_tests::workspace_root().join("tests/python/ws_deflate.py");
    for mode in ["shared", "context-takeover"] {
        let server = Server::start(&["--ws-compression", mode]).await;
        let (python, script, url) = (python.clone(), script.clone(), server.ws_url("/ws"));
        let out = tokio::task::spawn_blocking(move || {
            run_peer(
                std::process::Command::new(python)
                    .arg(script)
                    .arg(url)
                    .arg(mode),
            )
        })
        .await
        .unwrap();
        assert!(out.contains("ws_deflate: ok"), "{mode}: {out}");
    }
}

#[tokio::test]
async fn every_channel_event_is_seen_once_across_many_publishes() {
    let server = Server::start(&[]).await;
    let mut a = connect(&server).await;
    subscribe(&mut a, &["x", "y"], Some("earliest")).await;
    let mut w = connect(&server).await;
    for i in 0..20 {
        let ch = if i % 2 == 0 { "x" } else { "y" };
        send(&mut w, json!({"type":"publish","channel":ch,"data":i})).await;
        assert_eq!(recv(&mut w).await["type"], "published");
    }
    let mut seen = BTreeSet::new();
    while seen.len() < 20 {
        let v = recv(&mut a).await;
        assert!(
            seen.insert((
                v["channel"].as_str().unwrap().to_string(),
                v["offset"].as_u64().unwrap()
            )),
            "duplicate {v}"
        );
    }
}
