//! rt-server behind a real nginx configured as `docs/deployment.md` says: WebSocket, SSE
//! (events arrive at once, not buffered) and long polling pass through; with `Upgrade`
//! stripped the WebSocket handshake fails and the JS client falls back to SSE; heartbeats keep
//! idle connections open through a proxy read timeout shorter than the idle time, and without
//! them the proxy cuts the stream (the failure the docs warn about).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use rt_tests::nginx::{documented_snippet, documented_tls_snippet, Nginx, TlsCert};
use rt_tests::sse::SseStream;
use rt_tests::ws::{self, Ws};
use rt_tests::Server;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const KEY: (&str, &str) = ("x-api-key", "test-key");

/// Publishes through `base` (nginx) with the test API key.
async fn publish(base: &str, channel: &str, data: &str) -> Value {
    let (status, ack) = rt_tests::http::post_json(
        &format!("{base}/api/publish"),
        &[KEY],
        &json!({"channel": channel, "data": data}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    ack
}

/// A WebSocket through `url`, subscribed to `channel`.
async fn ws_subscribe(url: &str, channel: &str) -> Ws {
    let mut ws = ws::connect(url, &[]).await;
    ws::subscribe(&mut ws, &[channel], None).await;
    ws
}

#[tokio::test]
async fn websocket_sse_and_long_polling_pass_through_the_documented_nginx() {
    let server = Server::start(&[]).await;
    let nginx = Nginx::start(&documented_snippet(), server.addr());
    let base = nginx.url("");

    // WebSocket: the upgrade passes and events flow.
    let mut ws = ws_subscribe(&nginx.ws_url("/ws"), "px").await;
    // SSE: a single small event arrives while the stream stays open, so nothing buffers it.
    let mut sse = SseStream::open_ok(&nginx.url("/sse?channel=px"), &[]).await;
    let open = sse.block_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(open.event.as_deref(), Some("rt.open"), "{open:?}");

    let ack = publish(&base, "px", "through nginx").await;
    let event = ws::recv(&mut ws).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["data"], "through nginx");
    assert_eq!(event["offset"], ack["offset"]);
    let block = sse.published_within(Duration::from_secs(5)).await;
    assert_eq!(block.data.as_deref(), Some("through nginx"), "{block:?}");

    // Long polling: a poll is held by the server through nginx and released by a publish.
    let (status, _, body) = rt_tests::http::get(&nginx.url("/poll?channel=lp&timeout=0"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let cursor = serde_json::from_slice::<Value>(&body).unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = nginx.url(&format!(
        "/poll?channel=lp&timeout=20&cursor={}",
        cursor.replace(',', "%2C").replace('=', "%3D")
    ));
    let held = tokio::spawn(async move { rt_tests::http::get(&url).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "the poll was answered before any publish"
    );
    publish(&base, "lp", "released").await;
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held poll was not released through nginx")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["events"][0]["data"], "released", "{answer}");

    // /metrics is reachable from the allowed address, as configured.
    let (status, _, body) = rt_tests::http::get(&nginx.url("/metrics")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("rt_connections"));
}

/// One request over an HTTP/2 connection; the whole answer.
async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    let res = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("no HTTP/2 answer within 30 s")
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// nginx terminating TLS with HTTP/2 exactly as `docs/deployment.md` says (its `listen 80;`
/// replaced by the documented TLS lines), in front of a cleartext rt-server: over one HTTP/2
/// connection an SSE event arrives at once (not buffered) and a held long poll is released by
/// a publish; a WebSocket client negotiates HTTP/1.1 by ALPN and `wss://` works.
#[tokio::test]
async fn tls_and_http2_at_the_documented_nginx_carry_sse_long_polls_and_wss() {
    use http_body_util::Full;

    let server = Server::start(&[]).await;
    let cert = TlsCert::localhost();
    let nginx = Nginx::start_tls(&documented_tls_snippet(), server.addr(), &cert);
    let localhost = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let get = |path: &str| {
        http::Request::get(nginx.url(path))
            .body(Full::default())
            .unwrap()
    };
    let publish = |channel: &str, data: &str| {
        http::Request::post(nginx.url("/api/publish"))
            .header(KEY.0, KEY.1)
            .header("content-type", "application/json")
            .body(Full::from(
                json!({"channel": channel, "data": data}).to_string(),
            ))
            .unwrap()
    };

    // A browser-like client: ALPN offers h2 first, and nginx picks it.
    let tcp = tokio::net::TcpStream::connect(nginx.addr()).await.unwrap();
    let tls = cert
        .connector(&[b"h2", b"http/1.1"])
        .connect(localhost.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    // SSE on one stream: one small event arrives while the stream stays open.
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        h2.send_request(get("/sse?channel=h2")),
    )
    .await
    .expect("no SSE answer within 10 s")
    .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let mut sse = SseStream::from_response(res);
    assert_eq!(sse.status, StatusCode::OK);
    let open = sse.block_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(open.event.as_deref(), Some("rt.open"), "{open:?}");
    // Published on another stream of the same connection.
    let (status, ack) = h2_send(&mut h2, publish("h2", "over h2")).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let block = sse.published_within(Duration::from_secs(5)).await;
    assert_eq!(block.data.as_deref(), Some("over h2"), "{block:?}");

    // Long polling on a third stream: held by the server through nginx, released by a publish.
    let (status, first) = h2_send(&mut h2, get("/poll?channel=h2lp&timeout=0")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["cursor"].as_str().unwrap();
    let held = tokio::spawn({
        let mut h2 = h2.clone();
        let req = get(&format!(
            "/poll?channel=h2lp&timeout=20&cursor={}",
            cursor.replace(',', "%2C").replace('=', "%3D")
        ));
        async move { h2_send(&mut h2, req).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "the poll was answered before any publish"
    );
    let (status, ack) = h2_send(&mut h2, publish("h2lp", "released")).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let (status, answer) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held poll was not released through nginx")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["events"][0]["data"], "released", "{answer}");
    // The SSE stream is still open and live after all that.
    let (status, _) = h2_send(&mut h2, publish("h2", "still live")).await;
    assert_eq!(status, StatusCode::OK);
    let block = sse.published_within(Duration::from_secs(5)).await;
    assert_eq!(block.data.as_deref(), Some("still live"), "{block:?}");

    // WSS: a WebSocket client negotiates HTTP/1.1, and the upgrade passes.
    let tcp = tokio::net::TcpStream::connect(nginx.addr()).await.unwrap();
    let tls = cert
        .connector(&[b"http/1.1"])
        .connect(localhost, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut wss, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(nginx.ws_url("/ws"), tls),
    )
    .await
    .expect("no WebSocket handshake within 10 s")
    .expect("the wss:// handshake through nginx failed");
    ws::subscribe(&mut wss, &["wss"], None).await;
    let (status, ack) = h2_send(&mut h2, publish("wss", "over wss")).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let event = ws::recv(&mut wss).await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(event["data"], "over wss", "{event}");
    assert_eq!(event["offset"], ack["offset"], "{event}");
    // nginx does not take WebSockets over HTTP/2 (RFC 8441): an extended CONNECT on its h2
    // connection is refused (by hyper, as nginx announces no SETTINGS_ENABLE_CONNECT_PROTOCOL,
    // or by nginx), and WebSockets reach rt-server as HTTP/1.1 upgrades (docs/transports.md).
    let connect = http::Request::connect(nginx.url("/ws"))
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Full::default())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), h2.send_request(connect))
        .await
        .expect("no answer to the extended CONNECT within 10 s");
    assert!(
        answer
            .as_ref()
            .map_or(true, |res| res.status() != StatusCode::OK),
        "{answer:?}"
    );
    let over = |http: &str| format!("rt_upgrades_total{{transport=\"ws\",http=\"{http}\"}}");
    assert_eq!(server.metric(&over("1.1")).await, 1.0);
    assert_eq!(server.metric(&over("2")).await, 0.0);
}

/// The documented snippet with the upgrade headers stripped, as a misconfigured or old proxy
/// does.
fn stripping_upgrade() -> String {
    let doc = documented_snippet();
    let stripped = doc
        .replace(
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Upgrade \"\";",
        )
        .replace(
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header Connection \"\";",
        );
    assert_ne!(
        stripped, doc,
        "the documented snippet changed: update this test"
    );
    stripped
}

#[tokio::test]
async fn without_upgrade_headers_websocket_fails_and_clients_fall_back_to_sse() {
    let server = Server::start(&[]).await;
    let nginx = Nginx::start(&stripping_upgrade(), server.addr());

    // The handshake reaches rt-server without Upgrade and is refused with an HTTP error.
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(nginx.ws_url("/ws")),
    )
    .await
    .unwrap();
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert!(res.status().is_client_error(), "{:?}", res.status());
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }

    // SSE still works through the same proxy.
    let mut sse = SseStream::open_ok(&nginx.url("/sse?channel=fb"), &[]).await;
    sse.block_within(Duration::from_secs(10)).await.unwrap();
    publish(&nginx.url(""), "fb", "over sse").await;
    let block = sse.published_within(Duration::from_secs(5)).await;
    assert_eq!(block.data.as_deref(), Some("over sse"), "{block:?}");

    // The JS client (clients/js in Node, with the `ws` package) tries WebSocket, fails, and
    // ends up on SSE, receiving events through nginx.
    let dir = rt_tests::node_modules();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("nginx-fallback.mjs"))
            .arg(nginx.url(""))
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("nginx-fallback.mjs did not finish within 60 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("fell back to sse"), "{stdout}");
}

/// The documented snippet with a proxy read timeout of 2 s.
fn short_read_timeout() -> String {
    let doc = documented_snippet();
    let short = doc
        .replace("proxy_read_timeout 75s;", "proxy_read_timeout 2s;")
        .replace("proxy_send_timeout 75s;", "proxy_send_timeout 2s;");
    assert_ne!(
        short, doc,
        "the documented snippet changed: update this test"
    );
    short
}

#[tokio::test]
async fn heartbeats_keep_idle_connections_open_through_a_shorter_proxy_timeout() {
    // Heartbeats every 500 ms, as the docs say: below the proxy's 2 s read timeout.
    let server = Server::start(&["--sse-heartbeat", "500ms", "--ws-ping-interval", "500ms"]).await;
    let nginx = Nginx::start(&short_read_timeout(), server.addr());
    let mut ws = ws_subscribe(&nginx.ws_url("/ws"), "idle").await;
    let mut sse = SseStream::open_ok(&nginx.url("/sse?channel=idle"), &[]).await;
    let open = sse.block_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(open.event.as_deref(), Some("rt.open"), "{open:?}");

    // Idle for 5 s (2.5 times the proxy timeout): only heartbeats flow, on both.
    let idle = async {
        let mut heartbeats = 0;
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < end {
            match tokio::time::timeout_at(end, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "heartbeat", "{v}");
                    heartbeats += 1;
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("the idle WebSocket was cut: {other:?}"),
            }
        }
        heartbeats
    };
    let sse_idle = async {
        let mut pings = 0;
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() + Duration::from_millis(10) < end {
            let left = end - tokio::time::Instant::now();
            let Ok(block) =
                tokio::time::timeout(left, sse.block_within(Duration::from_secs(10))).await
            else {
                break;
            };
            let block = block.expect("the idle SSE stream was cut by the proxy");
            assert!(block.is_comment(), "not a heartbeat: {block:?}");
            pings += 1;
        }
        pings
    };
    let (heartbeats, pings) = tokio::join!(idle, sse_idle);
    assert!(heartbeats >= 2, "{heartbeats} WebSocket heartbeats");
    assert!(pings >= 2, "{pings} SSE heartbeats");

    // Both are still open after the idle time.
    publish(&nginx.url(""), "idle", "still here").await;
    assert_eq!(ws::recv(&mut ws).await["data"], "still here");
    let block = sse.published_within(Duration::from_secs(5)).await;
    assert_eq!(block.data.as_deref(), Some("still here"), "{block:?}");
}

#[tokio::test]
async fn without_heartbeats_a_shorter_proxy_timeout_cuts_idle_streams() {
    // The misconfiguration docs/deployment.md warns about: nothing flows for longer than the
    // proxy's read timeout.
    let server = Server::start(&["--sse-heartbeat", "0s"]).await;
    let nginx = Nginx::start(&short_read_timeout(), server.addr());
    let mut sse = SseStream::open_ok(&nginx.url("/sse?channel=cut"), &[]).await;
    sse.block_within(Duration::from_secs(10)).await.unwrap(); // rt.open
    let ended = sse.block_within(Duration::from_secs(15)).await;
    assert_eq!(ended, None, "the stream was not cut by the proxy");
    let log = nginx.error_log();
    assert!(
        log.contains("upstream timed out"),
        "nginx error log:\n{log}"
    );
}

#[tokio::test]
async fn sigterm_moves_clients_behind_nginx_to_another_node_with_nothing_lost() {
    use tokio::io::AsyncBufReadExt;

    // Two nodes sharing one Redis; nginx sends everything to A while it is up, then to B.
    let redis = rt_tests::redis_url();
    let prefix = rt_tests::unique("failover");
    let args = [
        "--backplane",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
        "--sse-retry",
        "200ms",
    ];
    let mut a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let snippet = documented_snippet().replace(
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:8080;\n    server {} backup;", b.addr()),
    );
    let nginx = Nginx::start(&snippet, a.addr());

    let dir = rt_tests::node_modules();
    let mut node = tokio::process::Command::new("node")
        .arg(dir.join("nginx-failover.mjs"))
        .arg(nginx.url(""))
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    // Reads the clients' lines until `done` holds for what was seen.
    let mut read_until = async |what: &str, done: &dyn Fn(&[Value]) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&seen) {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen: {seen:#?}"))
                .unwrap()
                .expect("the node script ended");
            seen.push(serde_json::from_str(&line).unwrap());
        }
    };
    let data = |seen: &[Value], client: &str| -> Vec<String> {
        seen.iter()
            .filter(|v| v["client"] == client && v["data"].is_string())
            .map(|v| v["data"].as_str().unwrap().to_owned())
            .collect()
    };
    let opened = |seen: &[Value], client: &str| {
        seen.iter()
            .filter(|v| v["client"] == client && v["state"] == "open")
            .count()
    };
    read_until("both clients to connect", &|s| {
        opened(s, "eventsource") >= 1 && opened(s, "ws") >= 1
    })
    .await;

    for i in 1..=3 {
        publish(&a.url(""), "failover", &format!("e{i}")).await;
    }
    read_until("e1..e3 on both", &|s| {
        data(s, "eventsource").len() >= 3 && data(s, "ws").len() >= 3
    })
    .await;

    // Node A stops: its clients are told to go, and come back through nginx to B.
    let exit = tokio::task::spawn_blocking(move || {
        let status = a.terminate(Duration::from_secs(20));
        (a, status)
    });
    let (_a, status) = exit.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // Published on B while the clients are reconnecting, then after.
    for i in 4..=6 {
        publish(&b.url(""), "failover", &format!("e{i}")).await;
    }
    read_until("e4..e6 on both after the failover", &|s| {
        data(s, "eventsource").len() >= 6 && data(s, "ws").len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = node.start_kill();

    let expected: Vec<String> = (1..=6).map(|i| format!("e{i}")).collect();
    assert_eq!(data(&seen, "eventsource"), expected, "{seen:#?}");
    assert_eq!(data(&seen, "ws"), expected, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|v| v["client"] == "eventsource" && v["state"] == "shutdown"),
        "the SSE stream was not ended with rt.shutdown: {seen:#?}"
    );
    assert!(
        opened(&seen, "eventsource") >= 2,
        "EventSource did not reconnect"
    );
    assert!(
        opened(&seen, "ws") >= 2,
        "the WebSocket client did not reconnect"
    );
    assert!(
        !seen.iter().any(|v| v["resync"].is_object()),
        "a resync was reported: {seen:#?}"
    );
}
