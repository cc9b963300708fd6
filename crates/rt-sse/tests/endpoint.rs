//! The endpoint against a real hub: exact bytes on the wire, resume, resync, lag, heartbeats,
//! shutdown, bad requests, the edge (token, origin, no authenticator), and that a vanished
//! client releases its subscription.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::service::TowerToHyperService;
use rt_core::{
    Channel, ChannelPattern, EventName, Hub, HubConfig, MemoryBackplane, NewEvent, Payload,
    Permissions, Retention,
};
use rt_http::{Body, Edge, Origins};
use rt_sse::{Config, Sse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

fn hub(history: usize, queue: usize) -> Hub {
    let retention = Retention {
        max_len: history,
        ..Retention::default()
    };
    Hub::new(
        Arc::new(MemoryBackplane::new(retention)),
        HubConfig {
            queue_capacity: queue,
            max_channels: 4,
            ..HubConfig::default()
        },
    )
}

/// The options of an endpoint open to everyone.
fn open() -> Config {
    Config::default().edge(Edge::default().allow_anonymous())
}

fn sse(hub: &Hub) -> Sse {
    Sse::new(hub.clone(), open().retry(Duration::from_millis(1500)))
}

async fn publish(hub: &Hub, channel: &str, name: &str, payload: Payload) -> u64 {
    let mut e = NewEvent::new(Channel::new(channel).unwrap(), payload);
    e.name = EventName::new(name).unwrap();
    hub.publish(e).await.unwrap().event.offset()
}

async fn text(hub: &Hub, channel: &str, data: &'static str) -> u64 {
    publish(hub, channel, "message", Payload::text(data)).await
}

async fn get(sse: &Sse, query: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut req = Request::get(format!("/sse?{query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sse.handle(req.body(()).unwrap()).await
}

/// Reads the body until it holds `blocks` blank-line-terminated blocks.
async fn read_blocks(body: &mut Body, blocks: usize) -> String {
    let mut out = String::new();
    while out.matches("\n\n").count() < blocks {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no frame within {WAIT:?}; so far: {out:?}"))
            .expect("stream ended early")
            .unwrap();
        out.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    out
}

async fn read_to_end(body: &mut Body) -> String {
    let bytes = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("stream did not end")
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Every `id:` value in `text`.
fn ids(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect()
}

#[tokio::test]
async fn frames_are_exact_and_encoded_once_per_publish() {
    let hub = hub(100, 64);
    let sse = sse(&hub);
    text(&hub, "a", "plain").await;
    publish(&hub, "a", "tick", Payload::text("two\nlines")).await;
    publish(
        &hub,
        "b",
        "message",
        Payload::text("crlf\r\nand\rcr – ünïcødé 🚀"),
    )
    .await;
    publish(&hub, "b", "blob", Payload::binary(vec![0u8, 1, 255])).await;

    let res = get(&sse, "channel=a&channel=b&lastEventId=earliest", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    assert!(res.headers().get("connection").is_none());
    let mut body = res.into_body();
    let got = read_blocks(&mut body, 5).await;
    let e = ids(&got)[0].split(',').next().unwrap().to_owned();
    let expected = format!(
        "retry: 1500\n\
         event: rt.open\n\
         data: {{\"type\":\"open\",\"cursor\":\"{e},a=0,b=0\",\"channels\":[\"a\",\"b\"]}}\n\n\
         id: {e},a=1,b=0\ndata: plain\n\n\
         id: {e},a=2,b=0\nevent: tick\ndata: two\ndata: lines\n\n\
         id: {e},a=2,b=1\ndata: crlf\ndata: and\ndata: cr – ünïcødé 🚀\n\n\
         id: {e},a=2,b=2\nevent: blob;base64\ndata: AAH/\n\n"
    );
    assert_eq!(got, expected);

    // Each subscriber gets the event as one body frame (one h2 DATA frame, one h1 chunk):
    // its own id line, then the lines encoded once for everyone.
    let mut other = get(&sse, "channel=a", &[]).await.into_body();
    read_blocks(&mut other, 1).await;
    text(&hub, "a", "shared").await;
    for body in [&mut body, &mut other] {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let block = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
        assert!(block.starts_with("id: "), "{block:?}");
        assert!(block.ends_with("\ndata: shared\n\n"), "{block:?}");
        assert_eq!(block.lines().filter(|l| l.starts_with("id: ")).count(), 1);
    }
}

#[tokio::test]
async fn one_last_event_id_resumes_every_channel_exactly_once() {
    let hub = hub(100, 64);
    let sse = sse(&hub);
    let res = get(&sse, "channel=a&channel=b&channel=c", &[]).await;
    let mut body = res.into_body();
    let open = read_blocks(&mut body, 1).await;
    text(&hub, "a", "a1").await;
    text(&hub, "b", "b1").await;
    let seen = read_blocks(&mut body, 2).await;
    let last = ids(&seen)[1].to_owned();
    assert!(last.ends_with(",a=1,b=1,c=0"), "{open}{seen}");
    // The connection is cut: its subscription goes away with the body.
    drop(body);
    assert_eq!(hub.stats().subscriptions, 0);

    text(&hub, "a", "a2").await;
    text(&hub, "c", "c1").await;
    text(&hub, "b", "b2").await;
    text(&hub, "a", "a3").await;

    // The query names "earliest", but the header (what a reconnecting browser sends) wins.
    let res = get(
        &sse,
        "channel=a&channel=b&channel=c&lastEventId=earliest",
        &[("last-event-id", &last)],
    )
    .await;
    let mut body = res.into_body();
    let got = read_blocks(&mut body, 5).await;
    let data: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert!(data[0].contains(&format!("\"cursor\":\"{last}\"")), "{got}");
    let mut events: Vec<&str> = data[1..].to_vec();
    events.sort();
    assert_eq!(events, ["a2", "a3", "b2", "c1"], "{got}");
    assert!(ids(&got).last().unwrap().ends_with(",a=3,b=2,c=1"), "{got}");
    // Live continues after the replay.
    text(&hub, "b", "b3").await;
    let live = read_blocks(&mut body, 1).await;
    assert_eq!(
        live,
        format!("id: {},a=3,b=3,c=1\ndata: b3\n\n", epoch(&last))
    );
}

fn epoch(cursor: &str) -> &str {
    cursor.split(',').next().unwrap()
}

#[tokio::test]
async fn query_parameter_resumes_in_both_spellings() {
    let hub = hub(100, 64);
    let sse = sse(&hub);
    text(&hub, "a", "a1").await;
    let mut body = get(&sse, "channel=a", &[]).await.into_body();
    let open = read_blocks(&mut body, 1).await;
    let cursor = ids(&open)[0].to_owned();
    assert!(cursor.ends_with(",a=1"), "{open}");
    drop(body);
    text(&hub, "a", "a2").await;
    for param in ["lastEventId", "lastEventID"] {
        // Percent-encoded as a URL would carry it.
        let q = format!(
            "channel=a&{param}={}",
            cursor.replace(',', "%2C").replace('=', "%3D")
        );
        let mut body = get(&sse, &q, &[]).await.into_body();
        let got = read_blocks(&mut body, 2).await;
        assert!(
            got.ends_with(&format!("id: {},a=2\ndata: a2\n\n", epoch(&cursor))),
            "{param}: {got}"
        );
    }
}

#[tokio::test]
async fn resync_when_history_cannot_cover_the_gap() {
    let hub = hub(2, 64);
    let sse = sse(&hub);
    let mut body = get(&sse, "channel=a&channel=b", &[]).await.into_body();
    let open = read_blocks(&mut body, 1).await;
    let cursor = ids(&open)[0].to_owned();
    drop(body);
    for data in ["1", "2", "3", "4"] {
        text(&hub, "a", data).await;
    }
    text(&hub, "b", "b1").await;
    let mut body = get(&sse, "channel=a&channel=b", &[("last-event-id", &cursor)])
        .await
        .into_body();
    let got = read_blocks(&mut body, 3).await;
    let e = epoch(&cursor);
    // Channel b is recovered; a lost 1 and 2 (history keeps 2): a resync names it, with the
    // cursor moved to a's head, and nothing of a is served as if it were complete.
    assert!(
        got.ends_with(&format!(
            "id: {e},a=0,b=1\ndata: b1\n\n\
             id: {e},a=4,b=1\nevent: rt.resync\ndata: {{\"type\":\"resync\",\"channels\":[\"a\"],\"cursor\":\"{e},a=4,b=1\"}}\n\n"
        )),
        "{got}"
    );
    assert!(
        !got.contains("data: 3") && !got.contains("data: 4"),
        "{got}"
    );
    text(&hub, "a", "5").await;
    assert_eq!(
        read_blocks(&mut body, 1).await,
        format!("id: {e},a=5,b=1\ndata: 5\n\n")
    );

    // A cursor of another epoch (e.g. from before a restart) resyncs every channel it names.
    let mut body = get(&sse, "channel=a", &[("last-event-id", "1234,a=1")])
        .await
        .into_body();
    let got = read_blocks(&mut body, 2).await;
    assert!(
        got.contains(&format!("id: {e},a=5\nevent: rt.resync\n")),
        "{got}"
    );
}

/// Issue #17, part 3: a client that falls a whole queue behind stays connected and gets
/// every event, from history, then live; one whose position left history gets `rt.resync`.
#[tokio::test]
async fn lagging_client_catches_up_on_the_same_stream() {
    let hub = hub(12, 4);
    let sse = sse(&hub);
    let mut body = get(&sse, "channel=a", &[]).await.into_body();
    let open = read_blocks(&mut body, 1).await;
    let e = epoch(ids(&open)[0]).to_owned();
    // The client reads nothing while 10 events pass a queue of 4.
    let datas = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    for d in datas {
        text(&hub, "a", d).await;
    }
    let got = read_blocks(&mut body, 10).await;
    let data: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data, datas);
    assert_eq!(ids(&got).last().unwrap(), &format!("{e},a=10"));
    text(&hub, "a", "live").await;
    assert_eq!(
        read_blocks(&mut body, 1).await,
        format!("id: {e},a=11\ndata: live\n\n")
    );

    // 20 more than the 12 history keeps: the stream says so and goes on from the head.
    for _ in 0..20 {
        text(&hub, "a", "x").await;
    }
    let got = read_blocks(&mut body, 1).await;
    assert!(
        got.starts_with(&format!("id: {e},a=31\nevent: rt.resync\n")),
        "{got}"
    );
    text(&hub, "a", "after").await;
    assert_eq!(
        read_blocks(&mut body, 1).await,
        format!("id: {e},a=32\ndata: after\n\n")
    );
    assert_eq!(hub.stats().subscriptions, 1);
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_busy() {
    let hub = hub(100, 64);
    let sse = Sse::new(hub.clone(), open().heartbeat(Duration::from_millis(50)));
    let mut body = get(&sse, "channel=a", &[]).await.into_body();
    read_blocks(&mut body, 1).await;
    assert_eq!(read_blocks(&mut body, 2).await, ": ping\n\n: ping\n\n");
    text(&hub, "a", "x").await;
    assert!(read_blocks(&mut body, 1).await.ends_with("data: x\n\n"));
}

#[tokio::test]
async fn shutdown_ends_the_stream_with_a_retry_hint() {
    let hub = hub(100, 64);
    let sse = sse(&hub);
    let mut body = get(&sse, "channel=a", &[]).await.into_body();
    let open = read_blocks(&mut body, 1).await;
    let cursor = ids(&open)[0].to_owned();
    hub.begin_shutdown();
    let rest = read_to_end(&mut body).await;
    let retry: u64 = rest
        .strip_prefix("retry: ")
        .and_then(|r| r.split('\n').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((1500..=3000).contains(&retry), "{rest}");
    assert!(
        rest.ends_with(&format!("\nid: {cursor}\nevent: rt.shutdown\ndata: {{\"type\":\"shutdown\",\"message\":\"the server is shutting down; reconnect with Last-Event-ID to resume\",\"cursor\":\"{cursor}\"}}\n\n")),
        "{rest}"
    );
}

async fn error_of(res: Response<Body>) -> (StatusCode, String) {
    let (status, v) = error_body(res).await;
    (status, v["error"]["code"].as_str().unwrap().to_owned())
}

/// The status and the whole JSON error body of an error answer.
async fn error_body(res: Response<Body>) -> (StatusCode, serde_json::Value) {
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let hub = hub(100, 64);
    let sse = sse(&hub);
    let long = "x".repeat(120);
    let many_long = format!("channel={long}1&channel={long}2&channel={long}3&channel={long}4");
    for (query, headers, code) in [
        ("", vec![], "no_channels"),
        ("channel=a%20b", vec![], "invalid_channel"),
        ("channel=a,b,c,d,e", vec![], "too_many_channels"),
        ("channel=a&lastEventId=nope", vec![], "invalid_cursor"),
        ("channel=a&lastEventID=1,a=01", vec![], "invalid_cursor"),
        (
            "channel=a",
            vec![("last-event-id", "zz,a=1")],
            "invalid_cursor",
        ),
        (
            "channel=a&lastEventId=earliest",
            vec![("last-event-id", "1,a")],
            "invalid_cursor",
        ),
    ] {
        let (status, got) = error_of(get(&sse, query, &headers).await).await;
        assert_eq!(
            (status, got.as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{query} {headers:?}"
        );
    }
    let mut req = Request::get("/sse?channel=a")
        .header(
            "last-event-id",
            http::HeaderValue::from_bytes(b"1,a=\xff").unwrap(),
        )
        .body(())
        .unwrap();
    *req.method_mut() = Method::GET;
    assert_eq!(error_of(sse.handle(req).await).await.1, "invalid_cursor");
    // 4 channels are allowed, but their names could not fit in one Last-Event-ID.
    let hub8k = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig {
            max_channels: 100,
            ..HubConfig::default()
        },
    );
    let q: Vec<String> = (0..60).map(|i| format!("channel={long}{i}")).collect();
    let (status, code) = error_of(get(&Sse::new(hub8k, open()), &q.join("&"), &[]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "too_many_channels")
    );
    assert_eq!(get(&sse, &many_long, &[]).await.status(), StatusCode::OK);

    let post = Request::post("/sse?channel=a").body(()).unwrap();
    let res = sse.handle(post).await;
    assert_eq!(res.headers()["allow"], "GET, OPTIONS");
    assert_eq!(
        error_of(res).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let hub = hub(100, 64);
    let edge = Edge::default()
        .allow_anonymous()
        .origins(Origins::parse("https://app.example"));
    let sse = Sse::new(hub.clone(), Config::default().edge(edge));
    let preflight = Request::options("/sse?channel=a")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .body(())
        .unwrap();
    let res = sse.handle(preflight).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = get(&sse, "channel=a", &[("origin", "https://app.example")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = get(&sse, "channel=a", &[("origin", "https://evil.example")]).await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

/// Over a real socket: a client that vanishes mid-stream releases its subscription.
#[tokio::test]
async fn a_vanished_client_releases_its_subscription() {
    let hub = hub(100, 64);
    let sse = Sse::new(hub.clone(), open().heartbeat(Duration::from_millis(50)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(sse.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /sse?channel=a&channel=b HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        clients.push(tcp);
    }
    assert_eq!(hub.stats().subscriptions, 5);
    assert_eq!(hub.stats().channels, 2);
    drop(clients);
    tokio::time::timeout(WAIT, async {
        while hub.stats().subscriptions != 0 || hub.stats().channels != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("subscriptions leaked: {:?}", hub.stats()));
    server.abort();
}

/// Tokens: none may subscribe to `ok:*`; `user` too, as subject `u`; `expiring` too, for
/// 300 ms from when it is verified; anything else is invalid.
#[derive(Debug)]
struct Grants;

impl rt_http::Authenticator for Grants {
    fn authenticate(&self, token: Option<&str>) -> Result<Permissions, rt_core::Error> {
        let grant = vec![ChannelPattern::new("ok:*").unwrap()];
        let expires = match token {
            None => return Ok(Permissions::anonymous().allow_subscribe(grant)),
            Some("user") => None,
            Some("expiring") => Some(SystemTime::now() + Duration::from_millis(300)),
            Some(_) => return Err(rt_core::Error::Unauthorized("unknown token".into())),
        };
        Ok(Permissions::new(Some("u".into()), expires).allow_subscribe(grant))
    }
}

#[tokio::test]
async fn permissions_limit_channels_and_expiry_ends_the_stream() {
    let hub = hub(100, 64);
    let edge = Edge::default().authenticator(Arc::new(Grants));
    let sse = Sse::new(hub.clone(), Config::default().edge(edge));
    let request = |query: &str, token: Option<&str>| {
        let mut req = Request::get(format!("/sse?{query}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(()).unwrap()
    };
    let res = sse
        .handle(request("channel=ok:1&channel=secret", None))
        .await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let res = sse.handle(request("channel=secret", Some("user"))).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(hub.stats().subscriptions, 0);

    let res = sse.handle(request("channel=ok:1", Some("expiring"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let open = read_blocks(&mut body, 1).await;
    let cursor = ids(&open)[0].to_owned();
    let rest = read_to_end(&mut body).await;
    assert!(
        rest.starts_with(&format!(
            "id: {cursor}\nevent: rt.expired\ndata: {{\"type\":\"expired\""
        )),
        "{rest}"
    );
    assert_eq!(hub.stats().subscriptions, 0);

    // A token that does not verify is refused like a missing one, with its own message.
    let res = sse.handle(request("channel=ok:1", Some("forged"))).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn without_an_authenticator_every_request_is_refused() {
    let hub = hub(100, 64);
    let sse = Sse::new(hub.clone(), Config::default());
    for headers in [vec![], vec![("authorization", "Bearer any")]] {
        let (status, v) = error_body(get(&sse, "channel=a", &headers).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("allow_anonymous"), "{message}");
    }
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let hub = hub(100, 64);
    let edge = Edge::default()
        .allow_anonymous()
        .origins(Origins::parse("https://app.example"));
    let sse = sse_with(&hub, edge);
    let from = |origin: &'static str| [("host", "rt.test:8080"), ("origin", origin)];
    for origin in ["https://evil.example", "http://rt.test", "null"] {
        let (status, v) = error_body(get(&sse, "channel=a", &from(origin)).await).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("origin_not_allowed")),
            "{origin}: {v}"
        );
    }
    assert_eq!(hub.stats().subscriptions, 0);
    let preflight = Request::options("/sse?channel=a")
        .header("host", "rt.test:8080")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .body(())
        .unwrap();
    assert_eq!(
        error_of(sse.handle(preflight).await).await,
        (StatusCode::FORBIDDEN, "origin_not_allowed".into())
    );

    // The endpoint's own pages need no listing and get no CORS headers; listed ones get them.
    let res = get(&sse, "channel=a", &from("http://rt.test:8080")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = get(&sse, "channel=a", &from("https://app.example")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // Without `Origin` (not a browser page), nothing is checked.
    let res = get(&sse, "channel=a", &[("host", "rt.test:8080")]).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The default is same-origin only.
    let sse = sse_with(&hub, Edge::default().allow_anonymous());
    let res = get(&sse, "channel=a", &from("https://app.example")).await;
    assert_eq!(error_of(res).await.1, "origin_not_allowed");
    let res = get(&sse, "channel=a", &from("http://rt.test:8080")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

fn sse_with(hub: &Hub, edge: Edge) -> Sse {
    Sse::new(hub.clone(), Config::default().edge(edge))
}
