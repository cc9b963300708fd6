//! Backend hooks (`--proxy-connect`, `--proxy-subscribe`, `--proxy-publish`) against a small
//! real HTTP backend started by the test on 127.0.0.1: it recognises its users by a session
//! cookie that rt forwards, allows them with a subject and meta, denies others with a reason,
//! stalls for one user (timeout → fail-closed), refuses one channel, and rewrites or rejects
//! publishes; it joins some users to channels and shows them data, and decides the tokens a
//! WebSocket sends later in `auth` messages. Over WebSocket, SSE and polling through the real rt-server binary, and once with
//! the transports mounted in-process (an embedder's setup, without rt-server).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rt_tests::http::{post_json, send};
use rt_tests::sse::SseStream;
use rt_tests::{free_port, ws, Server};
use serde_json::{json, Value};

/// What the backend was asked: the path, the headers and the JSON body.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// The application's backend: its own sessions (`Cookie: session=<user>`) and rules.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Backend {
    /// Serves on a free port of 127.0.0.1 until the test ends.
    async fn start() -> (Backend, SocketAddr) {
        let backend = Backend::default();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let b = b.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let b = b.clone();
                        async move { Ok::<_, Infallible>(b.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (backend, addr)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body: Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes())
            .unwrap_or(Value::Null);
        self.calls.lock().unwrap().push(Call {
            path: parts.uri.path().to_owned(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        let user = parts
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.strip_prefix("session="))
            // Clients that cannot send cookies (the Rust client) present the user as a token.
            .or(body["token"].as_str())
            .unwrap_or("")
            .to_owned();
        let answer = match parts.uri.path() {
            "/connect" if user == "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                json!({"allow": true, "subject": "slow", "subscribe": ["chat:*"]})
            }
            // A WebSocket `auth` message: the handshake's cookie and the new token.
            "/connect" if body["token"] == "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                json!({"allow": true})
            }
            "/connect" if body["token"] == "revoked" => {
                json!({"allow": false, "reason": "token revoked"})
            }
            "/connect" if user == "alice" && body["token"] == "refreshed" => json!({
                "allow": true,
                "subject": "alice",
                "subscribe": ["chat:*"],
                "channels": ["chat:lobby"],
                "data": {"refreshed": true},
            }),
            // Joined to her own channel by the server, and shown who she is.
            "/connect" if user == "carol" => json!({
                "allow": true,
                "subject": "carol",
                "subscribe": ["chat:*", "user:carol"],
                "channels": ["user:carol"],
                "data": {"name": "Carol", "plan": "pro"},
            }),
            // Joined to a channel the subscribe hook refuses, and to one outside her grant.
            "/connect" if user == "dave" => json!({
                "allow": true,
                "subject": "dave",
                "subscribe": ["chat:*"],
                "channels": ["chat:secret"],
            }),
            "/connect" if user == "erin" => json!({
                "allow": true,
                "subject": "erin",
                "subscribe": ["chat:*"],
                "channels": ["user:erin"],
            }),
            "/connect" if user == "alice" => json!({
                "allow": true,
                "subject": "alice",
                "subscribe": ["chat:*"],
                "publish": ["chat:*"],
                "meta": {"plan": "pro"},
            }),
            "/connect" if user == "confused" => json!({"allow": true, "subscribe": ["a b"]}),
            "/connect" => json!({"allow": false, "reason": "not logged in"}),
            "/subscribe" if body["channel"] == "chat:secret" => {
                json!({"allow": false, "reason": "members only"})
            }
            "/subscribe" => json!({"allow": true}),
            "/publish" if body["data"] == "reject me" => {
                json!({"allow": false, "reason": "no shouting"})
            }
            "/publish" => json!({
                "allow": true,
                "data": format!("{} (checked for {} on the {} plan)", body["data"].as_str().unwrap_or(""), body["subject"].as_str().unwrap_or("?"), body["meta"]["plan"].as_str().unwrap_or("?")),
            }),
            _ => {
                return Response::builder()
                    .status(404)
                    .body(Full::default())
                    .unwrap()
            }
        };
        Response::new(Full::new(Bytes::from(answer.to_string())))
    }

    fn calls(&self, path: &str) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.path == path).cloned().collect()
    }
}

/// rt-server with every hook pointed at the backend, forwarding the session cookie, with a
/// timeout of 300 ms unless `extra` sets one.
async fn server_with_hooks(backend: SocketAddr, extra: &[&str]) -> Server {
    let url = |hook: &str| format!("http://{backend}/{hook}");
    let (connect, subscribe, publish) = (url("connect"), url("subscribe"), url("publish"));
    let mut args = vec![
        "--proxy-connect",
        &connect,
        "--proxy-subscribe",
        &subscribe,
        "--proxy-publish",
        &publish,
        "--proxy-forward-headers",
        "cookie",
    ];
    if !extra.contains(&"--proxy-timeout") {
        args.extend(["--proxy-timeout", "300ms"]);
    }
    args.extend_from_slice(extra);
    Server::start(&args).await
}

const ALICE: (&str, &str) = ("cookie", "session=alice");

/// `GET {path}` with `headers`: the status and JSON body (a poll's answer, or the JSON error
/// of a refused request).
async fn get_json(server: &Server, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, _, body) = send(Method::GET, &server.url(path), headers, Bytes::new())
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// `GET /poll?{query}` with `headers`.
async fn poll(server: &Server, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    get_json(server, &format!("/poll?{query}"), headers).await
}

/// `GET /sse?{query}` with `headers`, for a request that is refused.
async fn sse_refusal(
    server: &Server,
    query: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    get_json(server, &format!("/sse?{query}"), headers).await
}

#[tokio::test]
async fn connect_hook_admits_with_the_forwarded_cookie_and_denies_with_its_reason() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;

    // Allowed: the cookie reaches the backend, whose subject and grants the client gets.
    let mut sse = SseStream::open_ok(&server.url("/sse?channel=chat:room"), &[ALICE]).await;
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));
    let (status, body) = poll(&server, "channel=chat:room&timeout=0", &[ALICE]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut alice = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    ws::subscribe(&mut alice, &["chat:room"], None).await;
    // ...and nothing beyond them: `news` is not in the backend's grant.
    let (status, body) = sse_refusal(&server, "channel=news", &[ALICE]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let connects = backend.calls("/connect");
    let transports: Vec<&str> = connects
        .iter()
        .map(|c| c.body["transport"].as_str().unwrap())
        .collect();
    for t in ["sse", "poll", "ws"] {
        assert!(transports.contains(&t), "{transports:?}");
    }
    for c in &connects {
        assert_eq!(c.headers["cookie"], "session=alice");
        assert_eq!(c.headers["content-type"], "application/json");
    }

    // Denied: 403 with the backend's reason over HTTP, 1008 with it over WebSocket.
    let (status, body) = sse_refusal(&server, "channel=chat:room", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not logged in"),
        "{body}"
    );
    let (status, body) = poll(
        &server,
        "channel=chat:room&timeout=0",
        &[("cookie", "session=bob")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let mut stranger = ws::connect(&server.ws_url("/ws"), &[]).await;
    let (code, reason) = ws::closed(&mut stranger).await;
    assert_eq!((code, reason.as_str()), (1008, "forbidden: not logged in"));

    // The calls are measured.
    let allowed = r#"rt_proxy_calls_total{hook="connect",result="allow"}"#;
    assert!(server.metric(allowed).await >= 3.0);
    let denied = r#"rt_proxy_calls_total{hook="connect",result="deny"}"#;
    assert!(server.metric(denied).await >= 3.0);
}

#[tokio::test]
async fn a_slow_or_absent_backend_fails_closed() {
    let (_backend, addr) = Backend::start().await;
    let alive = server_with_hooks(addr, &[]).await;
    let slow = ("cookie", "session=slow");
    // The backend answers after 5 s; the timeout is 300 ms.
    let (status, body) = sse_refusal(&alive, "channel=chat:room", &[slow]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "hook_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("did not answer within 300ms"), "{message}");
    let mut ws = ws::connect(&alive.ws_url("/ws"), &[slow]).await;
    let (code, reason) = ws::closed(&mut ws).await;
    assert_eq!(code, 1013);
    assert!(reason.starts_with("hook_failed: "), "{reason}");
    let timeouts = r#"rt_proxy_errors_total{hook="connect",kind="timeout"}"#;
    assert!(alive.metric(timeouts).await >= 2.0);

    // Nothing listens on the hook's port: refused, with the cause.
    let down = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = server_with_hooks(down, &[]).await;
    let (status, body) = poll(&server, "channel=chat:room&timeout=0", &[ALICE]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not be reached"), "{message}");
    let mut ws = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    assert_eq!(ws::closed(&mut ws).await.0, 1013);

    // An answer rt cannot use is a failure too, not a denial.
    let (status, body) = sse_refusal(
        &alive,
        "channel=chat:room",
        &[("cookie", "session=confused")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unusable answer") && message.contains("a b"),
        "{message}"
    );

    // Subscribe and publish hooks fail closed too (here without a connect hook: --dev decides
    // connects), with an error message over WebSocket.
    let hook = format!("http://{down}/hook");
    let only = ["--proxy-subscribe", &hook, "--proxy-publish", &hook];
    let server = Server::start(&only).await;
    let mut client = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::send(
        &mut client,
        json!({"type": "subscribe", "channels": ["chat:room"]}),
    )
    .await;
    let error = ws::recv(&mut client).await;
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("error"), &json!("hook_failed"))
    );
    let publish = json!({"type": "publish", "channel": "chat:room", "data": "x", "id": "p1"});
    ws::send(&mut client, publish).await;
    let error = ws::recv(&mut client).await;
    assert_eq!(
        (&error["code"], &error["id"]),
        (&json!("hook_failed"), &json!("p1"))
    );
    let (status, _) = sse_refusal(&server, "channel=chat:room", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let url = server.url("/poll/publish");
    let (status, _) = post_json(&url, &[], &json!({"channel": "chat:room", "data": "x"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Unless the server is told to fail open: then the token checks (here --dev) decide.
    let server = server_with_hooks(down, &["--proxy-fail-open"]).await;
    let (status, body) = poll(&server, "channel=chat:room&timeout=0", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn calls_over_the_in_flight_bound_fail_at_once() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(
        addr,
        &["--proxy-max-in-flight", "1", "--proxy-timeout", "10s"],
    )
    .await;
    // One call held by the backend (it answers the slow user after 5 s)...
    let url = server.url("/poll?channel=chat:room&timeout=0");
    let held = tokio::spawn(async move {
        send(
            Method::GET,
            &url,
            &[("cookie", "session=slow")],
            Bytes::new(),
        )
        .await
    });
    while backend.calls("/connect").is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...takes the only slot: the next request is refused without waiting for it.
    let (status, body) = poll(&server, "channel=chat:room&timeout=0", &[ALICE]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 hook calls were already in flight"),
        "{message}"
    );
    assert!(!held.is_finished(), "the refusal waited for the held call");
    assert_eq!(
        backend.calls("/connect").len(),
        1,
        "the refused call reached the backend"
    );
    let overloaded = r#"rt_proxy_errors_total{hook="connect",kind="overloaded"}"#;
    assert_eq!(server.metric(overloaded).await, 1.0);
    // Once the held call is answered, the slot is free again.
    let (status, _, _) = held.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = poll(&server, "channel=chat:room&timeout=0", &[ALICE]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_subscribe_hook_refuses_one_channel_only() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;

    // WebSocket: the refused channel is answered with an error; the connection stays.
    let mut alice = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    ws::send(
        &mut alice,
        json!({"type": "subscribe", "channels": ["chat:secret"]}),
    )
    .await;
    let error = ws::recv(&mut alice).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "forbidden");
    assert!(
        error["message"].as_str().unwrap().contains("members only"),
        "{error}"
    );
    let joined = ws::subscribe(&mut alice, &["chat:room"], None).await;
    assert_eq!(joined["channels"], json!(["chat:room"]));

    // SSE and polling refuse the request naming it, and not the others.
    let (status, body) =
        sse_refusal(&server, "channel=chat:room&channel=chat:secret", &[ALICE]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("members only"));
    SseStream::open_ok(&server.url("/sse?channel=chat:room"), &[ALICE]).await;
    let (status, _) = poll(&server, "channel=chat:secret&timeout=0", &[ALICE]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The subscribe calls carry who asked, the connect hook's meta and the session cookie.
    let calls = backend.calls("/subscribe");
    let secret = calls
        .iter()
        .find(|c| c.body["channel"] == "chat:secret" && c.body["transport"] == "ws")
        .unwrap();
    assert_eq!(secret.body["subject"], "alice");
    assert_eq!(secret.body["meta"], json!({"plan": "pro"}));
    assert_eq!(secret.headers["cookie"], "session=alice");
}

#[tokio::test]
async fn the_publish_hook_rewrites_and_rejects_payloads() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;
    let mut reader = SseStream::open_ok(&server.url("/sse?channel=chat:room"), &[ALICE]).await;
    reader.event().await; // open

    // WebSocket publish: rewritten by the backend before it is stored.
    let mut alice = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    let publish = |data: &str, id: &str| json!({"type": "publish", "channel": "chat:room", "data": data, "id": id});
    ws::send(&mut alice, publish("hello", "m1")).await;
    let ack = ws::recv(&mut alice).await;
    assert_eq!(ack["type"], "published", "{ack}");
    let event = reader.event().await;
    let data = event.data.as_deref();
    assert_eq!(data, Some("hello (checked for alice on the pro plan)"));
    ws::send(&mut alice, publish("reject me", "m2")).await;
    let error = ws::recv(&mut alice).await;
    assert_eq!(
        (&error["type"], &error["id"]),
        (&json!("error"), &json!("m2"))
    );
    assert!(
        error["message"].as_str().unwrap().contains("no shouting"),
        "{error}"
    );

    // Poll publish: the same.
    let url = server.url("/poll/publish");
    let poll_publish = |data: &str| {
        let (url, body) = (url.clone(), json!({"channel": "chat:room", "data": data}));
        async move { post_json(&url, &[ALICE], &body).await }
    };
    let (status, body) = poll_publish("hi").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = reader.event().await;
    let data = event.data.as_deref();
    assert_eq!(data, Some("hi (checked for alice on the pro plan)"));
    let (status, body) = poll_publish("reject me").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no shouting"));
    // A binary payload reaches the backend in base64, as a client sends it.
    let body = json!({"channel": "chat:room", "data": "AAEC", "encoding": "base64"});
    let (status, answer) = post_json(&url, &[ALICE], &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let calls = backend.calls("/publish");
    let call = calls.last().unwrap();
    assert_eq!(
        (&call.body["data"], &call.body["encoding"]),
        (&json!("AAEC"), &json!("base64"))
    );
    assert_eq!(call.body["transport"], "poll_publish");
    let event = reader.event().await;
    let data = event.data.as_deref();
    assert_eq!(data, Some("AAEC (checked for alice on the pro plan)"));
    // The rejected publishes were never stored: the next event is the next allowed one.
    ws::send(&mut alice, publish("last", "m3")).await;
    let event = reader.event().await;
    let data = event.data.as_deref();
    assert_eq!(data, Some("last (checked for alice on the pro plan)"));
}

#[tokio::test]
async fn an_embedder_mounts_the_transports_with_the_proxy() {
    use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
    let (backend, addr) = Backend::start().await;
    let config = rt_proxy::ProxyConfig::default()
        .connect(&format!("http://{addr}/connect"))
        .unwrap()
        .forward_headers("cookie")
        .unwrap();
    let proxy = rt_proxy::Proxy::new(config).unwrap();
    let edge = rt_http::Edge::default().hooks(Arc::new(proxy));
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let routes = rt_tests::mount::Routes::new(
        &hub,
        edge,
        rt_ws::Config::default(),
        rt_sse::Config::default(),
        rt_poll::Config::default(),
    );
    let (tcp, local) = rt_tests::mount::listen().await;
    let served = tokio::spawn(rt_tests::mount::serve(tcp, routes, |s| s));

    let url = format!("http://{local}/sse?channel=chat:room");
    SseStream::open_ok(&url, &[ALICE]).await;
    let refused = SseStream::open(&url, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut ws = ws::connect(&format!("ws://{local}/ws"), &[]).await;
    assert_eq!(
        ws::closed(&mut ws).await,
        (1008, "forbidden: not logged in".into())
    );
    assert_eq!(backend.calls("/connect").len(), 3);
    served.abort();
}

#[tokio::test]
async fn the_connect_hook_joins_channels_and_shows_data_on_every_transport() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &["--presence", "user:*"]).await;
    let carol = ("cookie", "session=carol");
    let base = server.url("");

    // WebSocket: `connected` with the data first, then `subscribed` to her channel, as if she
    // had asked for it (live), before any message of hers.
    let mut ws = ws::connect(&server.ws_url("/ws"), &[carol]).await;
    let hello = ws::recv(&mut ws).await;
    assert_eq!(
        hello,
        json!({"type": "connected", "subject": "carol", "data": {"name": "Carol", "plan": "pro"}})
    );
    let joined = ws::recv(&mut ws).await;
    assert_eq!(joined["type"], "subscribed", "{joined}");
    assert_eq!(joined["channels"], json!(["user:carol"]));
    assert_eq!(joined["recovered"], true);
    // Her own subscribes add to it.
    ws::subscribe(&mut ws, &["chat:room"], None).await;

    // SSE: her channel joins those of the URL; `rt.connected` follows `rt.open`, without an
    // `id:`, so the cursor stays where `rt.open` put it.
    let mut sse = SseStream::open_ok(&server.url("/sse?channel=chat:room"), &[carol]).await;
    let open = sse.event().await;
    assert_eq!(open.event.as_deref(), Some("rt.open"));
    assert_eq!(
        open.data_json()["channels"],
        json!(["chat:room", "user:carol"])
    );
    let connected = sse.event().await;
    assert_eq!(connected.event.as_deref(), Some("rt.connected"));
    assert_eq!(connected.id, None);
    assert_eq!(
        connected.data_json(),
        json!({"type": "connected", "subject": "carol", "data": {"name": "Carol", "plan": "pro"}})
    );
    // A URL without channels is fine when the hook joins some.
    let mut bare = SseStream::open_ok(&server.url("/sse"), &[carol]).await;
    let open = bare.event().await;
    assert_eq!(open.data_json()["channels"], json!(["user:carol"]));

    // Polling: the first poll starts live on her channel too and shows the data; its cursor
    // names the channel, so the next poll resumes it exactly.
    let (status, first) = poll(&server, "timeout=0", &[carol]).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["data"], json!({"name": "Carol", "plan": "pro"}));
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    assert!(cursor.contains(",user:carol="), "{cursor}");

    // Everyone of them gets what is published on her channel.
    rt_tests::http::publish(&base, "user:carol", "for carol").await;
    let event = ws::recv(&mut ws).await;
    assert_eq!(
        (&event["channel"], &event["data"]),
        (&json!("user:carol"), &json!("for carol"))
    );
    for stream in [&mut sse, &mut bare] {
        let event = stream.published_within(Duration::from_secs(10)).await;
        assert_eq!(event.data.as_deref(), Some("for carol"));
        assert!(event.id.unwrap().contains(",user:carol="));
    }
    let (status, next) = poll(
        &server,
        &format!("channel=chat:room&timeout=5&cursor={cursor}"),
        &[carol],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next["events"][0]["data"], "for carol", "{next}");
    assert_eq!(next["recovered"], true);
    // A WebSocket reconnecting with that cursor in its URL resumes her channel too: the event
    // published while it was away is replayed after `subscribed`.
    let url = server.ws_url(&format!("/ws?cursor={cursor}"));
    let mut again = ws::connect(&url, &[carol]).await;
    assert_eq!(ws::recv(&mut again).await["type"], "connected");
    let resumed = ws::recv(&mut again).await;
    assert_eq!(resumed["type"], "subscribed", "{resumed}");
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let replayed = ws::recv(&mut again).await;
    assert_eq!(
        (&replayed["channel"], &replayed["data"]),
        (&json!("user:carol"), &json!("for carol")),
        "{replayed}"
    );
    // A malformed one is refused before the upgrade, with the usual JSON error.
    let bad = ws::try_connect(&server.ws_url("/ws?cursor=nope"), &[carol]).await;
    assert_eq!(bad.err(), Some(400));

    // The joined channel went through the subscribe hook, and counts in presence.
    let subscribes = backend.calls("/subscribe");
    for t in ["ws", "sse", "poll"] {
        assert!(
            subscribes
                .iter()
                .any(|c| c.body["channel"] == "user:carol" && c.body["transport"] == t),
            "{t}: {subscribes:?}"
        );
    }
    // Joins are written a moment later: wait for the WebSocket's and both streams'.
    let key = [("x-api-key", "test-key")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, presence) = get_json(&server, "/api/presence?channel=user:carol", &key).await;
        assert_eq!(status, StatusCode::OK, "{presence}");
        let subjects: Vec<&Value> = presence["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["subject"])
            .collect();
        if subjects.len() >= 3 {
            assert!(subjects.iter().all(|s| *s == "carol"), "{presence}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence: {presence}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Without data, a connection looks as it always did: its first message answers its own
    // subscribe, and polls have no `data`.
    let mut plain = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    let joined = ws::subscribe(&mut plain, &["chat:room"], None).await;
    assert_eq!(joined["channels"], json!(["chat:room"]));
    let (_, answer) = poll(&server, "channel=chat:room&timeout=0", &[ALICE]).await;
    assert!(answer.get("data").is_none(), "{answer}");
}

#[tokio::test]
async fn joined_channels_pass_the_subscribe_hook_and_the_grant() {
    let (_backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;
    let dave = ("cookie", "session=dave");
    let erin = ("cookie", "session=erin");

    // Refused by the subscribe hook: an error message over WebSocket (the connection stays),
    // 403 for SSE and polls.
    let mut ws = ws::connect(&server.ws_url("/ws"), &[dave]).await;
    let error = ws::recv(&mut ws).await;
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("error"), &json!("forbidden"))
    );
    assert!(error["message"].as_str().unwrap().contains("members only"));
    ws::subscribe(&mut ws, &["chat:room"], None).await;
    let (status, body) = sse_refusal(&server, "channel=chat:room", &[dave]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = poll(&server, "channel=chat:room&timeout=0", &[dave]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Outside the connect answer's own grant: refused as a client's subscribe would be.
    let mut ws = ws::connect(&server.ws_url("/ws"), &[erin]).await;
    assert_eq!(ws::closed(&mut ws).await, (1008, "forbidden".into()));
    let (status, body) = sse_refusal(&server, "channel=chat:room", &[erin]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_websocket_auth_message_goes_through_the_connect_hook() {
    let (backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;
    let mut ws = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    ws::subscribe(&mut ws, &["chat:room"], None).await;

    // Accepted: the backend gets the handshake's cookie and the new token; its answer's data
    // comes with `authenticated`, its channels are joined, and the held channels stay.
    ws::send(&mut ws, json!({"type": "auth", "token": "refreshed"})).await;
    let answer = ws::recv(&mut ws).await;
    assert_eq!(answer["type"], "authenticated", "{answer}");
    assert_eq!(answer["subject"], "alice");
    assert_eq!(answer["dropped"], json!([]));
    assert_eq!(answer["data"], json!({"refreshed": true}));
    let joined = ws::recv(&mut ws).await;
    assert_eq!(
        (&joined["type"], &joined["channels"]),
        (&json!("subscribed"), &json!(["chat:lobby"]))
    );
    let calls = backend.calls("/connect");
    let call = calls.last().unwrap();
    assert_eq!(call.body, json!({"transport": "ws", "token": "refreshed"}));
    assert_eq!(call.headers["cookie"], "session=alice");
    rt_tests::http::publish(&server.url(""), "chat:room", "still here").await;
    let event = ws::recv(&mut ws).await;
    assert_eq!(event["data"], "still here", "{event}");

    // Denied: the connection is closed as a refused handshake is, with the backend's reason.
    ws::send(&mut ws, json!({"type": "auth", "token": "revoked"})).await;
    assert_eq!(
        ws::closed(&mut ws).await,
        (1008, "forbidden: token revoked".into())
    );
    let denied = r#"rt_proxy_calls_total{hook="connect",result="deny"}"#;
    assert!(server.metric(denied).await >= 1.0);

    // A backend that does not answer in time: 1013, as for a handshake.
    let mut ws = ws::connect(&server.ws_url("/ws"), &[ALICE]).await;
    ws::subscribe(&mut ws, &["chat:room"], None).await;
    ws::send(&mut ws, json!({"type": "auth", "token": "slow"})).await;
    let (code, reason) = ws::closed(&mut ws).await;
    assert_eq!(code, 1013);
    assert!(reason.starts_with("hook_failed: "), "{reason}");
}

#[tokio::test]
async fn the_rust_client_tells_the_connect_hooks_data() {
    use futures_util::StreamExt;
    use rt_client::{Transport, Update};
    let (_backend, addr) = Backend::start().await;
    let server = server_with_hooks(addr, &[]).await;
    for transport in [Transport::Ws, Transport::Sse, Transport::Poll] {
        let client = rt_client::Client::connect(server.url(""))
            .token("carol")
            .transports([transport]);
        let mut sub = client.subscribe(["chat:room"]).await.unwrap();
        let mut open = false;
        let data = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match sub.next().await.unwrap() {
                    Update::Open { .. } => open = true,
                    Update::Connected { data, transport: t } => {
                        assert_eq!(t, transport);
                        return data;
                    }
                    _ => {}
                }
            }
        })
        .await
        .unwrap();
        assert!(open, "{transport}: Connected came before Open");
        assert_eq!(data, json!({"name": "Carol", "plan": "pro"}), "{transport}");
    }
}

/// The names of the channels the server joined `sub` to.
fn joined(sub: &rt_client::Subscription) -> Vec<String> {
    sub.joined().iter().map(|c| c.as_str().to_owned()).collect()
}

/// The next event of `sub` within 10 s, skipping other updates.
async fn next_event(sub: &mut rt_client::Subscription, what: &str) -> rt_client::Event {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sub.next().await {
                Some(rt_client::Update::Event(e)) => return e,
                Some(rt_client::Update::Resync { channels, .. }) => {
                    panic!("{what}: a resync of {channels:?}")
                }
                Some(_) => {}
                None => panic!("{what}: the subscription ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no event within 10 s"))
}

#[tokio::test]
async fn the_rust_client_resumes_the_channels_the_connect_hook_joins() {
    use rt_client::{Backoff, Transport};
    let (_backend, addr) = Backend::start().await;
    let redis = rt_tests::redis_url();
    let prefix = rt_tests::unique("proxy-joined");
    let on_redis = [
        "--backplane",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
    ];
    // Two nodes on one Redis: the client knows only `node`, so what `other` stores while
    // `node` is down is published while the client is away, whatever its backoff.
    let mut node = server_with_hooks(addr, &on_redis).await;
    let other = server_with_hooks(addr, &on_redis).await;
    let mut offset = 0;
    for transport in [Transport::Ws, Transport::Sse, Transport::Poll] {
        let client = rt_client::Client::connect(node.url(""))
            .token("carol")
            .transports([transport])
            .backoff(Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(300),
            ));
        let mut sub = client.subscribe(["chat:room"]).await.unwrap();
        // Joined before the first poll answers or SSE opens; over WebSocket the `subscribed`
        // of the joined channel comes before the one that opens the connection.
        assert_eq!(joined(&sub), ["user:carol"], "{transport}");

        offset += 1;
        let before = format!("{transport} before");
        rt_tests::http::publish(&node.url(""), "user:carol", &before).await;
        let e = next_event(&mut sub, &before).await;
        assert_eq!(
            (e.channel.as_str(), e.offset, e.data.as_text(), e.transport),
            ("user:carol", offset, Some(before.as_str()), transport)
        );
        let cursor = sub.cursor().unwrap();
        assert!(
            cursor.contains(&format!("user:carol={offset}")),
            "{transport}: {cursor}"
        );

        node.kill();
        offset += 1;
        let away = format!("{transport} away");
        let ack = rt_tests::http::publish(&other.url(""), "user:carol", &away).await;
        assert_eq!(ack["offset"], offset, "{ack}");
        node.restart().await;
        offset += 1;
        let after = format!("{transport} after");
        let e = next_event(&mut sub, &away).await;
        assert_eq!(
            (e.channel.as_str(), e.offset, e.data.as_text()),
            ("user:carol", offset - 1, Some(away.as_str())),
            "{transport}"
        );
        // The next one follows: the event from while it was away came once.
        rt_tests::http::publish(&node.url(""), "user:carol", &after).await;
        let e = next_event(&mut sub, &after).await;
        assert_eq!(
            (e.channel.as_str(), e.offset, e.data.as_text()),
            ("user:carol", offset, Some(after.as_str())),
            "{transport}"
        );
        assert_eq!(joined(&sub), ["user:carol"], "{transport}");
    }
}
