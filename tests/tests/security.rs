//! Hostile input against the real server: connection tokens and channel permissions on every
//! transport, token expiry on long-lived connections, slowloris and silent connections,
//! oversized heads and bodies, connection limits, a flooding client next to a quiet one, and
//! invalid UTF-8 in WebSocket text frames.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rt_tests::http::{post_json, send};
use rt_tests::sse::SseStream;
use rt_tests::ws::{self, Ws};
use rt_tests::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "security-test-secret";

/// A server requiring HS256 tokens, with `public:*` open to anonymous subscribers.
async fn secured(extra: &[&str]) -> Server {
    let mut args = vec![
        "--jwt-hs256-secret",
        SECRET,
        "--jwt-leeway",
        "0s",
        "--anonymous",
        "public:*",
    ];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token for alice: subscribe `chat:*`, publish `chat:alice`, valid for `secs`.
fn alice(secs: u64) -> String {
    hs256(
        json!({"sub":"alice","exp":now()+secs,"subscribe":["chat:*"],"publish":["chat:alice"]}),
        SECRET,
    )
}

/// The tokens every transport must refuse with 401, and the error code expected.
fn bad_tokens() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "expired",
            hs256(json!({"exp": now() - 30, "subscribe": ["*"]}), SECRET),
            "token_expired",
        ),
        ("malformed", "not.a.jwt".to_owned(), "unauthorized"),
        (
            "wrongly signed",
            hs256(
                json!({"exp": now() + 60, "subscribe": ["*"]}),
                "another secret",
            ),
            "unauthorized",
        ),
        (
            "without exp",
            hs256(json!({"sub": "x", "subscribe": ["*"]}), SECRET),
            "unauthorized",
        ),
    ]
}

/// `GET path` with extra headers: status and the JSON error code (if the body is JSON).
async fn get_code(server: &Server, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    // Bounded well below the long polls' timeout: a refusal is answered at once, never held.
    let (status, _, body) = timeout(
        T,
        send(Method::GET, &server.url(path), headers, Bytes::new()),
    )
    .await
    .expect("no answer in time")
    .unwrap();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

async fn poll_publish(server: &Server, token: Option<&str>, channel: &str) -> (StatusCode, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    post_json(
        &server.url("/poll/publish"),
        &headers,
        &json!({"channel": channel, "data": "x"}),
    )
    .await
}

/// The WebSocket close reason (1008) that goes with an HTTP error code for a bad token.
fn ws_reason(code: &str) -> &'static str {
    match code {
        "token_expired" => "token_expired",
        _ => "invalid_token",
    }
}

/// Opens a WebSocket to `/ws` + `query`; the handshake's HTTP status when it is refused.
async fn ws_open(server: &Server, query: &str) -> Result<Ws, u16> {
    ws::try_connect(&server.ws_url(&format!("/ws{query}")), &[]).await
}

#[tokio::test]
async fn missing_and_bad_tokens_get_401_on_every_transport() {
    let server = secured(&[]).await;

    // No token, channel outside the anonymous namespace.
    assert_eq!(
        get_code(&server, "/sse?channel=chat:a", &[]).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    for poll in [
        "/poll?channel=chat:a&timeout=0",
        "/poll?channel=chat:a&timeout=60",
    ] {
        assert_eq!(
            get_code(&server, poll, &[]).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{poll}"
        );
    }
    let (status, body) = poll_publish(&server, None, "chat:a").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    // The publish API takes an API key, not a token: none, or a wrong one, is a 401.
    let publish = json!({"channel":"chat:a","data":"x"});
    for headers in [
        vec![],
        vec![("x-api-key", "wrong")],
        vec![("authorization", "Bearer wrong")],
    ] {
        let (status, body) = post_json(&server.url("/api/publish"), &headers, &publish).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // WebSocket: the handshake needs no token (it may come as the first message), but a
    // subscription outside the anonymous namespace is closed with 1008.
    let mut anon = ws_open(&server, "").await.unwrap();
    ws::send(&mut anon, json!({"type":"subscribe","channels":["chat:a"]})).await;
    let (code, reason) = ws::next(&mut anon).await.unwrap_err();
    assert_eq!(code, 1008);
    assert!(reason.contains("token"), "{reason}");

    for (what, token, code) in bad_tokens() {
        let bearer = format!("Bearer {token}");
        let q = format!("token={token}");
        for (path, headers) in [
            (
                "/sse?channel=chat:a".to_owned(),
                vec![("authorization", bearer.as_str())],
            ),
            (format!("/sse?channel=chat:a&{q}"), vec![]),
            (
                "/poll?channel=chat:a&timeout=0".to_owned(),
                vec![("authorization", bearer.as_str())],
            ),
            (format!("/poll?channel=chat:a&timeout=0&{q}"), vec![]),
            // Long polls are refused at once, not held.
            (
                "/poll?channel=chat:a&timeout=60".to_owned(),
                vec![("authorization", bearer.as_str())],
            ),
            (format!("/poll?channel=chat:a&timeout=60&{q}"), vec![]),
            // Even for an anonymous channel: a bad token is an error, not anonymity.
            (format!("/sse?channel=public:a&{q}"), vec![]),
        ] {
            assert_eq!(
                get_code(&server, &path, &headers).await,
                (StatusCode::UNAUTHORIZED, code.to_owned()),
                "{what} token on {path}"
            );
        }
        let (status, body) = poll_publish(&server, Some(&token), "chat:alice").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}");
        let (status, body) = post_json(
            &server.url(&format!("/poll/publish?{q}")),
            &[],
            &json!({"channel": "chat:alice", "data": "x"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}");
        // WebSocket with the token in the URL or the Authorization header: the upgrade is
        // accepted and closed at once with 1008 and a reason, since browsers cannot read the
        // status of a failed upgrade.
        let mut in_url = ws_open(&server, &format!("?{q}")).await.unwrap();
        let (close, reason) = ws::closed(&mut in_url).await;
        assert_eq!(close, 1008, "{what}");
        assert_eq!(reason, ws_reason(code), "{what}");
        let url = server.ws_url("/ws");
        let mut in_header = ws::try_connect(&url, &[("authorization", &bearer)])
            .await
            .unwrap();
        let (close, reason) = ws::closed(&mut in_header).await;
        assert_eq!(close, 1008, "{what}");
        assert_eq!(reason, ws_reason(code), "{what}");
        // WebSocket with the token as the first message: closed with 1008 and a reason.
        let mut socket = ws_open(&server, "").await.unwrap();
        ws::send(&mut socket, json!({"type":"auth","token":token})).await;
        let (close, reason) = ws::next(&mut socket).await.unwrap_err();
        assert_eq!(close, 1008, "{what}");
        assert_eq!(reason, ws_reason(code), "{what}");
    }
}

#[tokio::test]
async fn channels_outside_the_grant_get_403_and_ws_1008() {
    let server = secured(&[]).await;
    let token = alice(60);
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(
        get_code(&server, "/sse?channel=chat:a,news", &auth).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    // The same with the token in the query, and for long polls (refused at once, not held).
    for (path, headers) in [
        (format!("/sse?channel=news&token={token}"), &[][..]),
        ("/poll?channel=news&timeout=0".to_owned(), &auth[..]),
        (
            format!("/poll?channel=news&timeout=0&token={token}"),
            &[][..],
        ),
        ("/poll?channel=news&timeout=60".to_owned(), &auth[..]),
        (
            format!("/poll?channel=news&timeout=60&token={token}"),
            &[][..],
        ),
    ] {
        assert_eq!(
            get_code(&server, &path, headers).await,
            (StatusCode::FORBIDDEN, "forbidden".into()),
            "{path}"
        );
    }
    let (status, body) = post_json(
        &server.url(&format!("/poll/publish?token={token}")),
        &[],
        &json!({"channel": "chat:bob", "data": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // WebSocket with the token in the Authorization header or as the first message: a
    // forbidden subscription closes 1008 too.
    let url = server.ws_url("/ws");
    let mut socket = ws::connect(&url, &auth).await;
    ws::send(&mut socket, json!({"type":"subscribe","channels":["news"]})).await;
    assert_eq!(
        ws::next(&mut socket).await.unwrap_err(),
        (1008, "forbidden".into())
    );
    let mut socket = ws::connect(&url, &[]).await;
    ws::send(&mut socket, json!({"type":"auth","token":token})).await;
    assert_eq!(
        ws::next(&mut socket).await.unwrap()["type"],
        "authenticated"
    );
    ws::send(&mut socket, json!({"type":"subscribe","channels":["news"]})).await;
    assert_eq!(
        ws::next(&mut socket).await.unwrap_err(),
        (1008, "forbidden".into())
    );
    let (status, body) = poll_publish(&server, Some(&token), "chat:bob").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = poll_publish(&server, Some(&token), "chat:alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // WebSocket: a forbidden publish is an error reply; a forbidden subscription closes 1008.
    let mut socket = ws_open(&server, &format!("?token={token}")).await.unwrap();
    ws::send(
        &mut socket,
        json!({"type":"publish","channel":"chat:bob","data":"x","id":"p1"}),
    )
    .await;
    let reply = ws::next(&mut socket).await.unwrap();
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("forbidden")),
        "{reply}"
    );
    ws::send(&mut socket, json!({"type":"subscribe","channels":["news"]})).await;
    assert_eq!(
        ws::next(&mut socket).await.unwrap_err(),
        (1008, "forbidden".into())
    );
}

#[tokio::test]
async fn granted_and_anonymous_channels_work_on_every_transport() {
    let server = secured(&[]).await;
    let token = alice(60);
    let bearer = format!("Bearer {token}");

    // SSE with the token in the query (EventSource cannot set headers), and anonymously on
    // the public namespace.
    let mut sse = SseStream::open(
        &server.url(&format!("/sse?channel=chat:room&token={token}")),
        &[],
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    assert!(sse.until("rt.open").await);
    let mut public = SseStream::open(&server.url("/sse?channel=public:news"), &[]).await;
    assert_eq!(public.status, StatusCode::OK);
    assert!(public.until("rt.open").await);

    // WebSocket authenticated by its first message.
    let mut socket = ws_open(&server, "").await.unwrap();
    ws::send(&mut socket, json!({"type":"auth","token":token})).await;
    let reply = ws::next(&mut socket).await.unwrap();
    assert_eq!(reply["type"], "authenticated", "{reply}");
    ws::send(
        &mut socket,
        json!({"type":"subscribe","channels":["chat:room"]}),
    )
    .await;
    assert_eq!(ws::next(&mut socket).await.unwrap()["type"], "subscribed");

    rt_tests::http::publish(&server.url(""), "chat:room", "hello-room").await;
    rt_tests::http::publish(&server.url(""), "public:news", "hello-public").await;
    assert!(sse.until("hello-room").await, "{}", sse.seen);
    assert!(public.until("hello-public").await, "{}", public.seen);
    let event = ws::next(&mut socket).await.unwrap();
    assert_eq!(event["data"], "hello-room", "{event}");

    // Polling with the Authorization header.
    let (status, _, body) = send(
        Method::GET,
        &server.url("/poll?channel=chat:room&cursor=earliest&timeout=0"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("hello-room"));
    // The server-side API key is not a token and keeps working.
    let (status, _) = post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "test-key")],
        &json!({"channel":"anything","data":"x"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rs256_and_es256_public_keys() {
    let keys = rt_tests::workspace_root().join("tests/fixtures/jwt");
    for (alg, name) in [(Algorithm::RS256, "rs256"), (Algorithm::ES256, "es256")] {
        let public = keys.join(format!("{name}-public.pem"));
        let private = std::fs::read(keys.join(format!("{name}-private.pem"))).unwrap();
        let server = Server::start(&[
            "--jwt-public-key",
            public.to_str().unwrap(),
            "--jwt-algorithm",
            &name.to_uppercase(),
        ])
        .await;
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let claims = json!({"exp": now() + 60, "subscribe": ["*"]});
        let good = encode(&Header::new(alg), &claims, &key).unwrap();
        let mut sse =
            SseStream::open(&server.url(&format!("/sse?channel=a&token={good}")), &[]).await;
        assert_eq!(sse.status, StatusCode::OK, "{name}");
        assert!(sse.until("rt.open").await);
        // Algorithm confusion: an HS256 token "signed" with the public key is refused.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
        )
        .unwrap();
        assert_eq!(
            get_code(&server, &format!("/sse?channel=a&token={forged}"), &[]).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{name}"
        );
    }
}

/// Every refusal of a token, API key or channel is counted once in
/// `rt_auth_failures_total{transport,reason}`, on every transport.
#[tokio::test]
async fn auth_failures_are_counted_by_transport_and_reason() {
    let server = secured(&[]).await;
    let expired = hs256(json!({"exp": now() - 30, "subscribe": ["*"]}), SECRET);
    let forged = hs256(
        json!({"exp": now() + 60, "subscribe": ["*"]}),
        "another secret",
    );
    let alice = alice(60);
    let bearer = |t: &str| format!("Bearer {t}");

    // SSE and long polls: missing, invalid, expired, forbidden.
    for (path, forbidden) in [("/sse", "news"), ("/poll", "news")] {
        let url = |channel: &str| format!("{path}?channel={channel}&timeout=0");
        assert_eq!(get_code(&server, &url("chat:a"), &[]).await.0, 401);
        for (token, status) in [(&forged, 401), (&expired, 401), (&alice, 403)] {
            let (channel, b) = if status == 403 {
                (forbidden, bearer(token))
            } else {
                ("chat:a", bearer(token))
            };
            let got = get_code(&server, &url(channel), &[("authorization", &b)]).await;
            assert_eq!(got.0, status, "{path} {got:?}");
        }
    }
    // Poll publish: missing, invalid, forbidden.
    assert_eq!(poll_publish(&server, None, "chat:a").await.0, 401);
    assert_eq!(poll_publish(&server, Some(&forged), "chat:a").await.0, 401);
    assert_eq!(poll_publish(&server, Some(&alice), "chat:bob").await.0, 403);
    // Publish API: no key, a wrong key.
    let url = server.url("/api/publish");
    let body = json!({"channel":"x","data":"x"});
    assert_eq!(post_json(&url, &[], &body).await.0, 401);
    assert_eq!(
        post_json(&url, &[("x-api-key", "wrong")], &body).await.0,
        401
    );
    // WebSocket: a bad token in the handshake (1008 after the upgrade), an expired one as a
    // message (1008), a subscription without a token (1008), a forbidden publish (error
    // reply, the connection stays) and a forbidden subscription (1008).
    let mut forged_ws = ws_open(&server, &format!("?token={forged}")).await.unwrap();
    assert_eq!(ws::closed(&mut forged_ws).await.0, 1008);
    let mut socket = ws_open(&server, "").await.unwrap();
    ws::send(&mut socket, json!({"type":"auth","token":expired})).await;
    assert_eq!(ws::next(&mut socket).await.unwrap_err().0, 1008);
    let mut socket = ws_open(&server, "").await.unwrap();
    ws::send(
        &mut socket,
        json!({"type":"subscribe","channels":["chat:a"]}),
    )
    .await;
    assert_eq!(ws::next(&mut socket).await.unwrap_err().0, 1008);
    let mut socket = ws_open(&server, &format!("?token={alice}")).await.unwrap();
    ws::send(
        &mut socket,
        json!({"type":"publish","channel":"chat:bob","data":"x"}),
    )
    .await;
    assert_eq!(ws::next(&mut socket).await.unwrap()["code"], "forbidden");
    ws::send(&mut socket, json!({"type":"subscribe","channels":["news"]})).await;
    assert_eq!(ws::next(&mut socket).await.unwrap_err().0, 1008);

    let expected = [
        ("sse", "missing", 1.0),
        ("sse", "invalid", 1.0),
        ("sse", "expired", 1.0),
        ("sse", "forbidden", 1.0),
        ("poll", "missing", 1.0),
        ("poll", "invalid", 1.0),
        ("poll", "expired", 1.0),
        ("poll", "forbidden", 1.0),
        ("poll_publish", "missing", 1.0),
        ("poll_publish", "invalid", 1.0),
        ("poll_publish", "forbidden", 1.0),
        ("api_publish", "missing", 1.0),
        ("api_publish", "invalid", 1.0),
        ("ws", "invalid", 1.0),
        ("ws", "expired", 1.0),
        ("ws", "missing", 1.0),
        ("ws", "forbidden", 2.0),
    ];
    for (transport, reason, n) in expected {
        let sample =
            format!("rt_auth_failures_total{{transport=\"{transport}\",reason=\"{reason}\"}}");
        assert_eq!(server.metric(&sample).await, n, "{sample}");
    }
    // Nothing else is counted (granted requests, other errors).
    let (_, _, body) = rt_tests::http::get(&server.url("/metrics")).await.unwrap();
    let total: f64 = String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("rt_auth_failures_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 18.0);
}

#[tokio::test]
async fn expiring_tokens_end_sse_streams_and_websockets() {
    let server = secured(&[]).await;
    let token = alice(2);
    let mut sse = SseStream::open(
        &server.url(&format!("/sse?channel=chat:x&token={token}")),
        &[],
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    let mut socket = ws_open(&server, &format!("?token={token}")).await.unwrap();
    ws::send(
        &mut socket,
        json!({"type":"subscribe","channels":["chat:x"]}),
    )
    .await;
    assert_eq!(ws::next(&mut socket).await.unwrap()["type"], "subscribed");

    // The stream ends by itself, telling the client why; the socket closes with 1008.
    assert!(
        sse.ends_within(Duration::from_secs(8)).await,
        "{}",
        sse.seen
    );
    assert!(sse.seen.contains("rt.expired"), "{}", sse.seen);
    assert_eq!(
        ws::next(&mut socket).await.unwrap_err(),
        (1008, "token_expired".into())
    );

    // A WebSocket that refreshes its token in time lives on.
    let mut refreshed = ws_open(&server, &format!("?token={}", alice(2)))
        .await
        .unwrap();
    ws::send(&mut refreshed, json!({"type":"auth","token":alice(60)})).await;
    assert_eq!(
        ws::next(&mut refreshed).await.unwrap()["type"],
        "authenticated"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws::send(&mut refreshed, json!({"type":"ping","id":1})).await;
    assert_eq!(ws::next(&mut refreshed).await.unwrap()["type"], "pong");
}

/// Reads from `s` until EOF or a reset; true if that happened within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let ended = timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (ended, got)
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_cut_off() {
    let server = Server::start(&["--header-read-timeout", "1s", "--handshake-timeout", "1s"]).await;

    // Headers one byte at a time, 5 bytes a second: never done within the timeout.
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 256];
        match timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => panic!("a slowloris request was answered"),
            Err(_) => {}
        }
    }
    assert!(
        cut_off,
        "the server waited for every byte of a slowloris request"
    );

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await.0);

    // A normal request still works, and an idle keep-alive connection is closed too.
    let mut normal = TcpStream::connect(server.addr()).await.unwrap();
    normal
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (ended, got) = closed_within(&mut normal, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(ended, "an idle keep-alive connection stayed open");
    assert!(server.metric("rt_handshake_timeouts_total").await >= 1.0);
    assert!(
        server
            .metric("rt_connections_cut_off_total{reason=\"header_timeout\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let server = Server::start(&["--max-payload", "1024", "--max-header-bytes", "8192"]).await;
    let big = "a".repeat(16 * 1024);
    let (status, _, _) = send(
        Method::GET,
        &server.url("/health"),
        &[("x-big", &big)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let body = json!({"channel":"c","data":"x".repeat(64 * 1024)});
    for (path, headers) in [
        ("/api/publish", vec![("x-api-key", "test-key")]),
        ("/poll/publish", vec![]),
    ] {
        let (status, json) = post_json(&server.url(path), &headers, &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {json}");
        assert_eq!(json["error"]["code"], "payload_too_large", "{path}");
    }
    // The server is fine afterwards.
    assert_eq!(get_code(&server, "/health", &[]).await.0, StatusCode::OK);
    assert_eq!(
        server
            .metric("rt_connections_cut_off_total{reason=\"header_too_large\"}")
            .await,
        1.0
    );
}

/// Sends a plain GET on a fresh connection and returns the raw answer (status line first).
async fn raw_get(server: &Server, path: &str) -> String {
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (_, got) = closed_within(&mut s, T).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Holds `n` connections open, then answers `GET /health` on one more (raw).
async fn hold_then_get(server: &Server, n: usize) -> (Vec<TcpStream>, String) {
    // Let the server see the close of the start-up health check before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        // Started but unfinished requests keep the connections open.
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (held, raw_get(server, "/health").await)
}

#[tokio::test]
async fn connection_limits_refuse_with_a_clear_answer() {
    let server = Server::start(&["--max-connections-per-ip", "3"]).await;
    let (mut held, answer) = hold_then_get(&server, 3).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections_from_ip"), "{answer}");
    // Freed places are reusable.
    held.clear();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let answer = raw_get(&server, "/health").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server
            .metric("rt_connections_refused_total{reason=\"per_ip\"}")
            .await
            >= 1.0
    );

    let server = Server::start(&["--max-connections", "2"]).await;
    let (held, answer) = hold_then_get(&server, 2).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(held);
    // Scraping needs a free place too.
    let deadline = tokio::time::Instant::now() + T;
    while server
        .metric("rt_connections_refused_total{reason=\"total\"}")
        .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusal not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_flooding_client_is_cut_off_while_others_keep_receiving() {
    let server = Server::start(&["--ws-rate-limit", "50", "--ws-rate-burst", "50"]).await;
    let mut quiet = SseStream::open(&server.url("/sse?channel=flood:news"), &[]).await;
    assert!(quiet.until("rt.open").await);

    let mut flooder = ws_open(&server, "").await.unwrap();
    let flood = tokio::spawn(async move {
        // Far beyond the rate limit, as fast as the socket takes it.
        for i in 0..5000 {
            let msg = json!({"type":"publish","channel":"flood:spam","data":i}).to_string();
            if flooder.send(Message::text(msg)).await.is_err() {
                break;
            }
        }
        loop {
            match timeout(T, flooder.next()).await.unwrap() {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Some(Ok(_)) => {}
                other => panic!("flooder not closed with a reason: {other:?}"),
            }
        }
    });
    for i in 0..50 {
        rt_tests::http::publish(&server.url(""), "flood:news", &format!("news-{i}")).await;
    }
    assert!(quiet.until("news-49").await, "{}", quiet.seen);
    for i in 0..50 {
        assert!(
            quiet.seen.contains(&format!("\"news-{i}\""))
                || quiet.seen.contains(&format!("news-{i}\n")),
            "news-{i} missing"
        );
    }
    let (code, reason) = timeout(Duration::from_secs(30), flood)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 1008, "{reason}");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_1007() {
    let server = Server::start(&[]).await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = ws::read_head(&mut s).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // A masked text frame whose payload is not UTF-8.
    s.write_all(&ws::masked_text(&[b'{', 0xff, 0xfe, b'}']))
        .await
        .unwrap();
    let frames = ws::raw_frames(&mut s, T).await;
    let close = ws::close_of(&frames).map(|(code, _)| code);
    assert_eq!(close, Some(1007), "{frames:?}");
}

/// `wss://` with a self-signed certificate: tokens work the same over TLS, and a client that
/// opens TCP but never starts the TLS handshake is cut off.
#[tokio::test]
async fn wss_with_tokens_and_a_silent_tls_client() {
    let cert = rt_tests::TlsCert::localhost();
    // Builds the binary; the TLS server is a second process of it (rt_tests::Server waits on
    // cleartext /health).
    let _plain = Server::start(&[]).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], rt_tests::free_port()).into();
    /// Kills the TLS server however the test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = KillOnDrop(
        std::process::Command::new(rt_tests::target_dir().join("debug/rt-server"))
            .args(["--listen", &addr.to_string(), "--jwt-hs256-secret", SECRET])
            .args(["--handshake-timeout", "1s", "--tls-cert"])
            .arg(&cert.cert_pem)
            .arg("--tls-key")
            .arg(&cert.key_pem)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    {
        let deadline = tokio::time::Instant::now() + T;
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "TLS rt-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let connector = cert.connector(&[b"http/1.1"]);
        let wss = |query: String| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.unwrap();
                let req = format!("wss://localhost:{}/ws{query}", addr.port())
                    .into_client_request()
                    .unwrap();
                timeout(T, tokio_tungstenite::client_async(req, tls))
                    .await
                    .unwrap()
            }
        };
        let (mut refused, _) = wss("?token=not.a.jwt".into()).await.unwrap();
        match refused.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}")
            }
            other => panic!("a bad token was not refused: {other:?}"),
        }
        let (mut socket, _) = wss(format!("?token={}", alice(60))).await.unwrap();
        let msg = |v: Value| Message::text(v.to_string());
        socket
            .send(msg(json!({"type":"subscribe","channels":["chat:alice"]})))
            .await
            .unwrap();
        socket
            .send(msg(
                json!({"type":"publish","channel":"chat:alice","data":"over wss"}),
            ))
            .await
            .unwrap();
        let mut got_event = false;
        while !got_event {
            match timeout(T, socket.next()).await.unwrap() {
                Some(Ok(Message::Text(t))) => {
                    got_event = t.contains("over wss") && t.contains("\"event\"")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await.0);
    }
    let _ = std::fs::remove_dir_all(cert.dir());
}

/// `POST url` with `content_type` (none when `None`) and extra headers: status and JSON body.
async fn post_as(
    url: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(t) = content_type {
        all.push(("content-type", t));
    }
    let (status, _, body) = send(Method::POST, url, &all, body.to_owned())
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Issue #16, item 2: a web page cannot publish through its visitors' browsers. Only
/// `Content-Type: application/json` publishes (which a browser sends cross-site only after a
/// preflight), and a foreign `Origin` is refused, on both HTTP publish routes.
#[tokio::test]
async fn cross_site_simple_posts_do_not_publish() {
    let body = r#"{"channel":"c","data":"csrf"}"#;
    let evil = ("origin", "https://evil.example");
    let key = ("x-api-key", "test-key");
    for cors in [None, Some("https://evil.example")] {
        let args: Vec<&str> = cors.iter().flat_map(|o| ["--cors-origins", *o]).collect();
        let server = Server::start(&args).await;
        let poll = server.url("/poll/publish");
        let api = server.url("/api/publish");
        for (url, auth) in [(&poll, None), (&api, Some(key))] {
            let mut headers: Vec<(&str, &str)> = auth.into_iter().collect();
            for simple in [
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("multipart/form-data; boundary=x"),
                None,
            ] {
                let (status, json) = post_as(url, simple, &headers, body).await;
                assert_eq!(
                    status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{url} {simple:?}: {json}"
                );
                assert_eq!(json["error"]["code"], "unsupported_media_type");
                headers.push(evil);
                let (status, json) = post_as(url, simple, &headers, body).await;
                headers.pop();
                let expected = if cors.is_some() {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(status, expected, "{url} {simple:?} {cors:?}: {json}");
            }
            // JSON from a foreign origin: refused unless that origin is allowed.
            headers.push(evil);
            let (status, json) = post_as(url, Some("application/json"), &headers, body).await;
            headers.pop();
            if cors.is_none() {
                assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {json}");
                assert_eq!(json["error"]["code"], "origin_not_allowed");
            } else {
                assert_eq!(status, StatusCode::OK, "{url}: {json}");
            }
            // A backend (no Origin) with JSON and a charset publishes.
            let (status, json) =
                post_as(url, Some("application/json; charset=utf-8"), &headers, body).await;
            assert_eq!(status, StatusCode::OK, "{url}: {json}");
        }
        // Nothing but the accepted JSON publishes was stored.
        let (_, _, answer) = send(
            Method::GET,
            &server.url("/poll?channel=c&cursor=earliest&timeout=0"),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let stored = answer["events"].as_array().unwrap().len();
        assert_eq!(stored, if cors.is_some() { 4 } else { 2 }, "{answer}");
    }
}

/// curl over cleartext HTTP/2 (prior knowledge) with an `Origin`: the status it got.
fn curl_h2_with_origin(url: &str, origin: &str, post: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
    ])
    .args(["--http2-prior-knowledge", "-m", "5", "-H"])
    .arg(format!("origin: {origin}"));
    if let Some(body) = post {
        cmd.args(["-H", "content-type: application/json", "-d", body]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    eprintln!(
        "curl {url}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn same_origin_requests_over_http2_are_same_origin() {
    // h2 requests carry `:authority`, not `Host`: the origin check must see it anyway.
    let server = Server::start(&[]).await;
    let own = server.url("");
    let own = own.trim_end_matches('/');
    let publish = server.url("/poll/publish");
    let body = r#"{"channel":"demo","data":"x"}"#;
    let same = curl_h2_with_origin(&publish, own, Some(body));
    assert_eq!(same, "200 2", "a same-origin publish over h2 was refused");
    let foreign = curl_h2_with_origin(&publish, "http://evil.example", Some(body));
    assert_eq!(foreign, "403 2");
    let api = server.url("/api/history?channel=demo");
    assert_eq!(
        curl_h2_with_origin(&api, own, None),
        "401 2",
        "refused for the key, not the origin"
    );
    assert_eq!(
        curl_h2_with_origin(&api, "http://evil.example", None),
        "403 2"
    );
}
