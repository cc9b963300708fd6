//! WebSocket over HTTP/2 (RFC 8441) end to end against the real rt-server: a hyper h2 client
//! carries 50 WebSockets and 50 SSE streams on one connection (h2c and TLS with ALPN h2), bad
//! extended CONNECTs get their 4xx, and the server's metrics tell which HTTP version each
//! WebSocket used.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::Bytes;
use futures_util::SinkExt;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use rt_tests::sse::SseStream;
use rt_tests::ws::{self, connect_h2};
use rt_tests::{Server, TlsCert, TlsServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const N: usize = 50;
const OVER_H2: &str = "rt_upgrades_total{transport=\"ws\",http=\"2\"}";
const OVER_H1: &str = "rt_upgrades_total{transport=\"ws\",http=\"1.1\"}";

/// A first request, so that the client has the server's SETTINGS (and so knows extended
/// CONNECT is allowed) before it sends one.
async fn settled(sender: &mut SendRequest<Empty<Bytes>>, base: &str) {
    let req = Request::get(format!("{base}/health"))
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert!(sender.is_ready());
}

/// 50 WebSockets and 50 SSE streams on one HTTP/2 connection: each subscribes to a channel of
/// its own and a shared one, gets what is published to both (by a WebSocket's rt.v1 `publish`
/// on the same connection), and the server counts 50 WebSockets opened over HTTP/2.
async fn fifty_of_each(mut sender: SendRequest<Empty<Bytes>>, base: &str, tag: &str) {
    settled(&mut sender, base).await;
    let mut sockets = Vec::new();
    for i in 0..N {
        let uri = format!("{base}/ws");
        let mut s = connect_h2(&mut sender, &uri, "websocket", &[])
            .await
            .unwrap();
        let answer = ws::subscribe(
            &mut s,
            &[&format!("{tag}-ws-{i}"), &format!("{tag}-all")],
            None,
        )
        .await;
        assert_eq!(answer["channels"].as_array().unwrap().len(), 2, "{answer}");
        sockets.push(s);
    }
    let mut streams = Vec::new();
    for i in 0..N {
        let req = Request::get(format!(
            "{base}/sse?channel={tag}-sse-{i}&channel={tag}-all"
        ))
        .body(Empty::new())
        .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(
            (res.status(), res.version()),
            (StatusCode::OK, Version::HTTP_2)
        );
        let mut s = SseStream::from_response(res);
        assert_eq!(s.event().await.event.as_deref(), Some("rt.open"));
        streams.push(s);
    }
    // Published by a WebSocket of this connection, with rt.v1's publish message.
    let publisher = &mut sockets[0];
    ws::send(publisher, json!({"type": "publish", "channel": format!("{tag}-all"), "data": "everyone", "id": "p-1"})).await;
    for i in 0..N {
        ws::send(publisher, json!({"type": "publish", "channel": format!("{tag}-ws-{i}"), "data": format!("ws {i}")})).await;
        ws::send(publisher, json!({"type": "publish", "channel": format!("{tag}-sse-{i}"), "data": format!("sse {i}")})).await;
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        let mut seen: Vec<Value> = Vec::new();
        while seen.len() < 2 {
            let m = ws::recv(s).await;
            if m["type"] == "event" {
                seen.push(m);
            }
        }
        let data: Vec<&str> = seen.iter().map(|m| m["data"].as_str().unwrap()).collect();
        assert!(
            data.contains(&"everyone") && data.contains(&format!("ws {i}").as_str()),
            "{i}: {seen:?}"
        );
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let mut data = vec![s.published_within(ws::WAIT).await.data.unwrap()];
        data.push(s.published_within(ws::WAIT).await.data.unwrap());
        data.sort();
        assert_eq!(data, ["everyone".to_owned(), format!("sse {i}")], "{i}");
    }
    // Closing one WebSocket ends its stream only: the others and the SSE streams go on.
    let mut first = sockets.remove(0);
    first.close(None).await.unwrap();
    ws::send(
        &mut sockets[0],
        json!({"type": "publish", "channel": format!("{tag}-all"), "data": "after"}),
    )
    .await;
    assert_eq!(
        streams[N - 1]
            .published_within(ws::WAIT)
            .await
            .data
            .as_deref(),
        Some("after")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_websockets_and_sse_streams_share_one_h2c_connection() {
    let server = Server::start(&[]).await;
    let (_, _, metrics) = rt_tests::http::get(&server.url("/metrics")).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    for series in [OVER_H2, OVER_H1] {
        assert!(
            metrics.contains(&format!("{series} 0")),
            "{series} is not at 0 before use"
        );
    }
    let base = format!("http://{}", server.addr());
    fifty_of_each(server.h2c().await, &base, "h2c").await;
    assert_eq!(server.metric(OVER_H2).await, N as f64);
    // HTTP/1.1 upgrades are unchanged, and counted apart.
    let mut s = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut s, &["h1"], None).await;
    assert_eq!(server.metric(OVER_H1).await, 1.0);
    assert_eq!(server.metric(OVER_H2).await, N as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_websockets_and_sse_streams_share_one_tls_h2_connection() {
    let cert = TlsCert::localhost();
    // Builds the binary; the TLS server is a second process of it.
    let _plain = Server::start(&[]).await;
    let server = TlsServer::start(&cert, &[]).await;
    fifty_of_each(server.h2().await, &server.url(""), "tls").await;
    assert_eq!(server.metric(OVER_H2).await, N as f64);
    let _ = std::fs::remove_dir_all(cert.dir());
}

/// Extended CONNECTs that are not WebSocket handshakes get a 4xx with the JSON error, on
/// their own stream, and the edge's checks and limits close as over HTTP/1.1 (1008, 1009):
/// the connection and the server go on serving.
#[tokio::test]
async fn bad_extended_connects_get_4xx_and_the_connection_goes_on() {
    let server = Server::start(&[
        "--allowed-origins",
        "https://ok.example",
        "--ws-max-message",
        "1024",
    ])
    .await;
    let base = format!("http://{}", server.addr());
    let mut sender = server.h2c().await;
    settled(&mut sender, &base).await;
    let uri = format!("{base}/ws");
    // (:protocol, headers, status, a word of the error message)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        u16,
        &'static str,
    );
    let cases: [Case; 3] = [
        ("webtransport", &[], 400, ":protocol"),
        (
            "websocket",
            &[("sec-websocket-version", "")],
            400,
            "Sec-WebSocket-Version",
        ),
        (
            "websocket",
            &[("sec-websocket-version", "8")],
            426,
            "version",
        ),
    ];
    for (protocol, headers, status, needle) in cases {
        let Err((got, body)) = connect_h2(&mut sender, &uri, protocol, headers).await else {
            panic!("{protocol} {headers:?} opened a WebSocket");
        };
        assert_eq!(got, status, "{protocol} {headers:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    // A plain GET of /ws over h2 is told how to open a WebSocket there.
    let req = Request::get(&uri).body(Empty::new()).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("extended CONNECT"));
    // Origin and token are checked as over HTTP/1.1: opened, then closed with 1008.
    let mut s = connect_h2(
        &mut sender,
        &uri,
        "websocket",
        &[("origin", "https://evil.example")],
    )
    .await
    .unwrap();
    assert_eq!(
        ws::closed(&mut s).await,
        (1008, "origin_not_allowed".to_owned())
    );
    // Same connection, still serving: an allowed origin works, and so does the server's
    // own (compared with the :authority, as h2 clients send no Host).
    for origin in ["https://ok.example", &base] {
        let mut s = connect_h2(&mut sender, &uri, "websocket", &[("origin", origin)])
            .await
            .unwrap();
        ws::subscribe(&mut s, &["after-bad"], None).await;
        // The same limits and close codes as over HTTP/1.1, and only this stream ends.
        s.send(Message::text("x".repeat(2000))).await.unwrap();
        assert_eq!(ws::closed(&mut s).await.0, 1009);
    }
    assert_eq!(server.health().await["status"], "ok");
}
