//! Long and short polling (`/poll`, `/poll/publish`) through the real binary over real
//! sockets.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use rt_tests::http::{curl_h2_prior_knowledge, get, post_json, publish, send};
use rt_tests::sse::SseStream;
use rt_tests::ws;
use rt_tests::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /poll?{query}`: the status and JSON body.
async fn poll(server: &Server, query: &str) -> (StatusCode, Value) {
    let (status, headers, body) = get(&server.url(&format!("/poll?{query}"))).await.unwrap();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "application/json");
    (status, serde_json::from_slice(&body).unwrap())
}

/// A successful poll's body.
async fn poll_ok(server: &Server, query: &str) -> Value {
    let (status, body) = poll(server, query).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn enc(cursor: &Value) -> String {
    // Cursors hold `,` and `=` only besides name characters; `:` and `/` too for channels.
    cursor
        .as_str()
        .unwrap()
        .replace(',', "%2C")
        .replace('=', "%3D")
}

fn events(answer: &Value) -> &Vec<Value> {
    answer["events"].as_array().unwrap()
}

/// The server's count of open subscriptions (held polls here), from `/health`.
async fn subscriptions(server: &Server) -> u64 {
    let (_, _, body) = get(&server.url("/health")).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["subscriptions"].as_u64().unwrap()
}

/// Waits (bounded) until the server holds exactly `n` subscriptions.
async fn wait_subscriptions(server: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = subscriptions(server).await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server holds {now} subscriptions, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a raw HTTP/1.1 `GET` on its own connection, without reading the answer.
async fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads a whole `Connection: close` answer: status and JSON body.
async fn raw_answer(mut stream: TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn long_poll_is_released_by_a_publish_and_only_then() {
    let server = Server::start(&[]).await;
    let base = server.url("");
    let first = poll_ok(&server, "channel=news&timeout=0").await;
    let cursor = enc(&first["cursor"]);

    let url = server.url(&format!("/poll?channel=news&cursor={cursor}&timeout=25"));
    let held = tokio::spawn(async move {
        let started = Instant::now();
        let (_, _, body) = get(&url).await.unwrap();
        (
            started.elapsed(),
            serde_json::from_slice::<Value>(&body).unwrap(),
        )
    });
    wait_subscriptions(&server, 1).await;

    // Events on other channels do not release it.
    publish(&base, "sport", "goal").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a publish elsewhere released the poll");
    assert_eq!(subscriptions(&server).await, 1);

    let ack = publish(&base, "news", "hello").await;
    let (elapsed, answer) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the publish did not release the poll")
        .unwrap();
    assert!(elapsed < Duration::from_secs(25), "released by the timeout");
    let got = events(&answer);
    assert_eq!(got.len(), 1, "{answer}");
    assert_eq!(got[0]["data"], "hello");
    assert_eq!(got[0]["channel"], "news");
    assert_eq!(got[0]["offset"], ack["offset"]);
    assert_eq!(got[0]["epoch"], ack["epoch"]);
    assert_eq!(got[0]["type"], "event");
    assert_eq!(answer["recovered"], true);
    assert_eq!(
        answer["cursor"],
        format!("{},news=1", ack["epoch"].as_str().unwrap())
    );
    wait_subscriptions(&server, 0).await;
}

#[tokio::test]
async fn a_poll_that_times_out_answers_an_empty_list() {
    let server = Server::start(&[]).await;
    let started = Instant::now();
    let answer = poll_ok(&server, "channel=quiet&timeout=1").await;
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(events(&answer).len(), 0);
    assert_eq!(answer["recovered"], true);
    assert!(answer["cursor"].as_str().unwrap().ends_with(",quiet=0"));

    // The timeout is capped by --poll-max-timeout.
    let server = Server::start(&["--poll-max-timeout", "1s"]).await;
    let started = Instant::now();
    let answer = poll_ok(&server, "channel=quiet&timeout=3600").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(events(&answer).len(), 0);
    // Issue #16, item 8: every out-of-range number is capped, however long.
    for huge in [
        "9999999999",
        "18446744073709551615",
        "18446744073709551616.25",
    ] {
        let started = Instant::now();
        let answer = poll_ok(&server, &format!("channel=quiet&timeout={huge}")).await;
        assert!(started.elapsed() < Duration::from_secs(20), "{huge}");
        assert_eq!(events(&answer).len(), 0);
    }
}

#[tokio::test]
async fn short_poll_answers_at_once_with_what_is_there() {
    let server = Server::start(&[]).await;
    let base = server.url("");
    // Live start: nothing yet, and the cursor is the live position.
    let live = poll_ok(&server, "channel=a&timeout=0").await;
    assert_eq!(events(&live).len(), 0);
    for data in ["1", "2", "3"] {
        publish(&base, "a", data).await;
    }
    let all = poll_ok(&server, "channel=a&timeout=0&cursor=earliest").await;
    let data: Vec<_> = events(&all).iter().map(|e| e["data"].clone()).collect();
    assert_eq!(data, ["1", "2", "3"]);
    let from_live = poll_ok(
        &server,
        &format!("channel=a&timeout=0&cursor={}", enc(&live["cursor"])),
    )
    .await;
    assert_eq!(events(&from_live), events(&all));
    let nothing = poll_ok(
        &server,
        &format!("channel=a&timeout=0&cursor={}", enc(&all["cursor"])),
    )
    .await;
    assert_eq!(events(&nothing).len(), 0);
    assert_eq!(nothing["cursor"], all["cursor"]);

    // The same over HTTP/2 (cleartext prior knowledge), e.g. behind an h2 proxy.
    let text = curl_h2_prior_knowledge(&server.url("/poll?channel=a&timeout=0&cursor=earliest"));
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "not HTTP/2: {text}");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), all);
}

#[tokio::test]
async fn batches_catch_up_over_several_polls_with_nothing_lost_or_repeated() {
    let server = Server::start(&["--poll-batch", "7"]).await;
    let base = server.url("");
    let mut sent: HashMap<&str, Vec<String>> = HashMap::new();
    let mut publish_some = async |from: usize, to: usize| {
        for i in from..to {
            let channel = if i % 3 == 0 { "b" } else { "a" };
            let data = format!("m{i}");
            publish(&base, channel, &data).await;
            sent.entry(channel).or_default().push(data);
        }
    };
    publish_some(0, 40).await;

    let mut got: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut cursor = "earliest".to_owned();
    let mut polls = 0;
    loop {
        let answer = poll_ok(&server, &format!("channel=a,b&timeout=0&cursor={cursor}")).await;
        assert_eq!(answer["recovered"], true);
        let batch = events(&answer);
        assert!(batch.len() <= 7, "batch of {}", batch.len());
        for e in batch {
            got.entry(e["channel"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    e["offset"].as_u64().unwrap(),
                    e["data"].as_str().unwrap().to_owned(),
                ));
        }
        cursor = enc(&answer["cursor"]);
        polls += 1;
        // Events published between polls, while no request is held, are served too.
        if polls == 3 {
            publish_some(40, 50).await;
        }
        if batch.is_empty() {
            break;
        }
        assert!(polls < 100);
    }
    assert!(
        polls >= 50 / 7,
        "{polls} polls for 50 events in batches of 7"
    );
    for (channel, data) in &sent {
        let received = &got[*channel];
        let offsets: Vec<u64> = received.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (1..=data.len() as u64).collect();
        assert_eq!(offsets, expected, "channel {channel}: lost or repeated");
        let texts: Vec<&String> = received.iter().map(|(_, d)| d).collect();
        assert_eq!(texts, data.iter().collect::<Vec<_>>());
    }

    // And from that cursor a held poll gets the next event only.
    let url = server.url(&format!("/poll?channel=a,b&cursor={cursor}&timeout=20"));
    let held = tokio::spawn(async move { get(&url).await.unwrap() });
    wait_subscriptions(&server, 1).await;
    publish(&base, "b", "last").await;
    let (_, _, body) = held.await.unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let last = events(&answer);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["data"], "last");
    assert_eq!(last[0]["offset"], sent["b"].len() as u64 + 1);
}

#[tokio::test]
async fn a_cursor_that_cannot_be_honoured_says_so_with_the_live_position() {
    let mut server = Server::start(&["--history-size", "5"]).await;
    let base = server.url("");
    let start = poll_ok(&server, "channel=h&timeout=0").await;
    for i in 0..10 {
        publish(&base, "h", &i.to_string()).await;
    }
    // Older than the retained history: answered at once, even as a long poll.
    let started = Instant::now();
    let answer = poll_ok(
        &server,
        &format!("channel=h&timeout=20&cursor={}", enc(&start["cursor"])),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(answer["recovered"], false);
    assert_eq!(answer["resynced"], json!(["h"]));
    assert_eq!(events(&answer).len(), 0);
    let live = answer["cursor"].clone();
    assert!(live.as_str().unwrap().ends_with(",h=10"), "{live}");
    // The live position continues with exactly the next event.
    publish(&base, "h", "next").await;
    let next = poll_ok(
        &server,
        &format!("channel=h&timeout=0&cursor={}", enc(&live)),
    )
    .await;
    assert_eq!(next["recovered"], true);
    assert_eq!(events(&next).len(), 1);
    assert_eq!(events(&next)[0]["offset"], 11);

    // A cursor of another epoch (the in-memory history restarted).
    let old = next["cursor"].clone();
    server.restart().await;
    let base = server.url("");
    publish(&base, "h", "new epoch").await;
    let answer = poll_ok(
        &server,
        &format!("channel=h&timeout=20&cursor={}", enc(&old)),
    )
    .await;
    assert_eq!(answer["recovered"], false);
    assert_eq!(answer["resynced"], json!(["h"]));
    assert_ne!(
        answer["cursor"].as_str().unwrap().split(',').next(),
        old.as_str().unwrap().split(',').next()
    );
    assert!(answer["cursor"].as_str().unwrap().ends_with(",h=1"));
}

#[tokio::test]
async fn polling_clients_publish_with_the_common_shape_and_idempotent_ids() {
    let server = Server::start(&["--max-payload", "64"]).await;
    let url = server.url("/poll/publish");
    let (status, ack) =
        post_json(&url, &[], &json!({"channel":"chat","data":"hi","id":"c-1"})).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["type"], "published");
    assert_eq!(ack["offset"], 1);
    assert_eq!(ack["duplicate"], false);
    let (_, again) = post_json(&url, &[], &json!({"channel":"chat","data":"hi","id":"c-1"})).await;
    assert_eq!(again["offset"], 1);
    assert_eq!(again["duplicate"], true);
    let (_, bin) = post_json(
        &url,
        &[],
        &json!({"channel":"chat","data":"AP8=","encoding":"base64","event":"blob"}),
    )
    .await;
    assert_eq!(bin["offset"], 2);

    let answer = poll_ok(&server, "channel=chat&timeout=0&cursor=earliest").await;
    let got = events(&answer);
    assert_eq!(got.len(), 2, "the retried id was published once");
    assert_eq!(got[1]["encoding"], "base64");
    assert_eq!(got[1]["event"], "blob");

    for (body, status, code) in [
        (
            json!({"channel":"a b","data":"x"}).to_string(),
            400,
            "invalid_channel",
        ),
        (
            json!({"channel":"c","data":"x","id":""}).to_string(),
            400,
            "invalid_message_id",
        ),
        (
            json!({"channel":"c","event":"no spaces","data":"x"}).to_string(),
            400,
            "invalid_event_name",
        ),
        (json!({"data":"x"}).to_string(), 400, "bad_request"),
        ("{not json".to_owned(), 400, "bad_request"),
        (
            json!({"channel":"c","data":"x".repeat(100)}).to_string(),
            413,
            "payload_too_large",
        ),
        ("x".repeat(200_000), 413, "payload_too_large"),
    ] {
        let (s, _, b) = send(
            Method::POST,
            &url,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s.as_u16(), v["error"]["code"].as_str().unwrap()),
            (status, code),
            "{v}"
        );
    }
}

#[tokio::test]
async fn bad_polls_are_4xx_json_errors() {
    let server = Server::start(&["--max-channels", "2"]).await;
    for (query, code) in [
        ("timeout=0", "no_channels"),
        ("channel=", "invalid_channel"),
        ("channel=a%20b", "invalid_channel"),
        ("channel=a,b,c", "too_many_channels"),
        ("channel=a&cursor=nope", "invalid_cursor"),
        ("channel=a&cursor=ff,a=01", "invalid_cursor"),
        ("channel=a&timeout=-1", "bad_request"),
        ("channel=a&timeout=soon", "bad_request"),
        ("channel=a&timeout=1e9", "bad_request"),
        ("channel=a&session=nope", "invalid_session"),
        ("channel=a&session=0123456789abcdef", "invalid_session"),
    ] {
        let (status, body) = poll(&server, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    for (method, path) in [
        (Method::POST, "/poll"),
        (Method::GET, "/poll/publish"),
        (Method::DELETE, "/poll"),
    ] {
        let (status, headers, body) = send(method, &server.url(path), &[], "").await.unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(headers.contains_key("allow"));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");
    }
    assert_eq!(subscriptions(&server).await, 0);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let server = Server::start(&["--cors-origins", "https://app.example"]).await;
    let preflight = |origin: &'static str, path: &'static str| {
        let url = server.url(path);
        async move {
            send(
                Method::OPTIONS,
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
                "",
            )
            .await
            .unwrap()
        }
    };
    for path in ["/poll", "/poll/publish"] {
        let (status, headers, _) = preflight("https://app.example", path).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example"
        );
        assert!(headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert!(headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("content-type"));
        let (status, headers, _) = preflight("https://evil.example", path).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key("access-control-allow-origin"));
    }
    // Answers (errors included) carry the header for allowed origins only.
    let (get, post) = (Method::GET, Method::POST);
    let path = "/poll?channel=c&timeout=0";
    let headers = from_app(&server, get.clone(), path, &[], "", StatusCode::OK).await;
    assert_eq!(headers["cache-control"], "no-store");
    let no_channel = "/poll?timeout=0";
    from_app(&server, get, no_channel, &[], "", StatusCode::BAD_REQUEST).await;
    let json = [("content-type", "application/json")];
    let publish = r#"{"channel":"c","data":"x"}"#;
    from_app(
        &server,
        post,
        "/poll/publish",
        &json,
        publish,
        StatusCode::OK,
    )
    .await;
    let (_, headers, _) = send(
        Method::GET,
        &server.url("/poll?channel=c&timeout=0"),
        &[("origin", "https://evil.example")],
        "",
    )
    .await
    .unwrap();
    assert!(!headers.contains_key("access-control-allow-origin"));
}

/// Sends a request with `extra` headers to `path` from the allowed origin
/// `https://app.example`; asserts the answer's status and that it allows that origin.
async fn from_app(
    server: &Server,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: &'static str,
    status: StatusCode,
) -> http::HeaderMap {
    let headers: Vec<_> = [("origin", "https://app.example")]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let (got, headers, _) = send(method, &server.url(path), &headers, body)
        .await
        .unwrap();
    assert_eq!(got, status);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    headers
}

#[tokio::test]
async fn abandoned_polls_cost_nothing_afterwards() {
    let server = Server::start(&[]).await;
    let mut sockets = Vec::new();
    for i in 0..300 {
        let channel = format!("gone-{}", i % 7);
        sockets.push(
            raw_get(
                server.addr(),
                &format!("/poll?channel={channel},shared&timeout=30"),
            )
            .await,
        );
    }
    wait_subscriptions(&server, 300).await;
    drop(sockets);
    // Hyper drops each held poll's future when its connection closes, and with it the waiter.
    wait_subscriptions(&server, 0).await;
    let (_, _, body) = get(&server.url("/health")).await.unwrap();
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["channels"], 0, "{health}");

    // The channel still works for the next poll. (Polls held before a publish carry the
    // cursor of a short poll, so the publish cannot slip in before they joined the channel.)
    let base = server.url("");
    let cursor = enc(&poll_ok(&server, "channel=shared&timeout=0").await["cursor"]);
    let held = raw_get(
        server.addr(),
        &format!("/poll?channel=shared&timeout=20&cursor={cursor}"),
    )
    .await;
    wait_subscriptions(&server, 1).await;
    publish(&base, "shared", "after").await;
    let (status, answer) = raw_answer(held).await;
    assert_eq!(status, 200);
    assert_eq!(events(&answer)[0]["data"], "after");
}

#[tokio::test]
async fn shutdown_answers_held_polls_with_their_cursor() {
    let mut server = Server::start(&[]).await;
    let first = poll_ok(&server, "channel=s&timeout=0").await;
    let held = raw_get(server.addr(), "/poll?channel=s&timeout=30").await;
    wait_subscriptions(&server, 1).await;
    let reader = tokio::spawn(raw_answer(held));
    let exit = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    let (status, answer) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(events(&answer).len(), 0);
    assert_eq!(answer["cursor"], first["cursor"]);
    assert!(
        exit.is_some_and(|s| s.success()),
        "the server did not exit gracefully: {exit:?}"
    );
}

#[tokio::test]
async fn two_thousand_held_long_polls_are_all_released_by_one_publish() {
    const POLLS: usize = 2000;
    let server = Server::start(&["--poll-max-timeout", "120s"]).await;
    let addr = server.addr();
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        // From the live cursor, so that each poll gets the publish even if it had not joined
        // the channel yet when the publish came.
        let cursor = enc(&poll_ok(&server, "channel=crowd&timeout=0").await["cursor"]);
        let path = format!("/poll?channel=crowd&timeout=100&cursor={cursor}");
        let mut readers = Vec::with_capacity(POLLS);
        for _ in 0..POLLS {
            let stream = raw_get(addr, &path).await;
            readers.push(tokio::spawn(raw_answer(stream)));
        }
        wait_subscriptions(&server, POLLS as u64).await;
        let ack = publish(&server.url(""), "crowd", "everyone").await;
        let mut released = 0;
        for reader in readers {
            let (status, answer) = reader.await.unwrap();
            assert_eq!(status, 200, "{answer}");
            let got = events(&answer);
            assert_eq!(got.len(), 1, "{answer}");
            assert_eq!(got[0]["offset"], ack["offset"]);
            assert_eq!(got[0]["data"], "everyone");
            released += 1;
        }
        released
    })
    .await
    .expect("2,000 held polls were not all released within 120 s");
    assert_eq!(result, POLLS);
    wait_subscriptions(&server, 0).await;
}

#[tokio::test]
async fn a_poll_publish_reaches_sse_and_websocket_subscribers_with_one_cursor_model() {
    let server = Server::start(&[]).await;
    let mut sse = SseStream::open_ok(&server.url("/sse?channel=room"), &[]).await;
    let open = sse.event().await;
    assert_eq!(open.event.as_deref(), Some("rt.open"), "{open:?}");
    let before = open.id.clone().unwrap();

    let mut ws = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut ws, &["room"], None).await;
    wait_subscriptions(&server, 2).await;

    let (status, ack) = post_json(
        &server.url("/poll/publish"),
        &[],
        &json!({"channel": "room", "data": "from a polling client", "id": "p-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");

    let block = sse.event().await;
    assert_eq!(
        block.data.as_deref(),
        Some("from a polling client"),
        "{block:?}"
    );
    let ws_event = ws::recv(&mut ws).await;
    assert_eq!(ws_event["type"], "event");
    assert_eq!(ws_event["data"], "from a polling client");
    assert_eq!(ws_event["offset"], ack["offset"]);

    // One cursor model: the SSE ids are poll cursors, and a poll answers the very event
    // object the WebSocket sent.
    let replay = poll_ok(
        &server,
        &format!("channel=room&timeout=0&cursor={}", enc(&json!(before))),
    )
    .await;
    assert_eq!(events(&replay).len(), 1);
    assert_eq!(events(&replay)[0], ws_event);
    let id = block.id.unwrap();
    assert_eq!(replay["cursor"].as_str().unwrap(), id);
    let after = poll_ok(
        &server,
        &format!("channel=room&timeout=0&cursor={}", enc(&json!(id))),
    )
    .await;
    assert_eq!(events(&after).len(), 0);

    // A retried publish (same id) reaches nobody twice.
    let (_, again) = post_json(
        &server.url("/poll/publish"),
        &[],
        &json!({"channel": "room", "data": "from a polling client", "id": "p-1"}),
    )
    .await;
    assert_eq!(again["duplicate"], true);
    publish(&server.url(""), "room", "next").await;
    assert_eq!(sse.event().await.data.as_deref(), Some("next"));
    assert_eq!(ws::recv(&mut ws).await["data"], "next");
}

#[tokio::test]
async fn any_node_answers_a_poll_without_sticky_sessions() {
    let url = rt_tests::redis_url();
    let prefix = rt_tests::unique("poll-nodes");
    let args = [
        "--backplane",
        url.as_str(),
        "--redis-prefix",
        prefix.as_str(),
    ];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;

    let first = poll_ok(&a, "channel=feed&timeout=0").await;
    for i in 1..=3 {
        let (status, ack) = post_json(
            &a.url("/poll/publish"),
            &[],
            &json!({"channel": "feed", "data": format!("a{i}")}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    // Node B continues node A's cursor exactly.
    let caught_up = poll_ok(
        &b,
        &format!("channel=feed&timeout=5&cursor={}", enc(&first["cursor"])),
    )
    .await;
    let data: Vec<_> = events(&caught_up)
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(data, ["a1", "a2", "a3"]);
    assert_eq!(caught_up["recovered"], true);

    // A poll held on A is released by a publish from a polling client on B.
    let held_url = a.url(&format!(
        "/poll?channel=feed&timeout=25&cursor={}",
        enc(&caught_up["cursor"])
    ));
    let held = tokio::spawn(async move { get(&held_url).await.unwrap() });
    wait_subscriptions(&a, 1).await;
    let (status, ack) = post_json(
        &b.url("/poll/publish"),
        &[],
        &json!({"channel": "feed", "data": "b1", "id": "b-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let (_, _, body) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(events(&answer).len(), 1, "{answer}");
    assert_eq!(events(&answer)[0]["data"], "b1");
    assert_eq!(events(&answer)[0]["offset"], 4);
    let done = poll_ok(
        &b,
        &format!("channel=feed&timeout=0&cursor={}", enc(&answer["cursor"])),
    )
    .await;
    assert_eq!(events(&done).len(), 0);
}

/// Issue #16, item 1: whatever cursor the server hands out, it accepts back. A channel set
/// whose cursor could outgrow the limit is refused up front, alike on every transport, and
/// the largest cursor a subscription can hold resumes a poll (in the URL) and an SSE stream
/// (as `Last-Event-ID`) within the default 16 KiB request head, with room for other headers.
#[tokio::test]
async fn every_cursor_handed_out_is_accepted_back() {
    let server = Server::start(&[]).await;
    // The issue's repro: 100 channels of 79 bytes, a cursor of over 8,192 bytes.
    let too_many: Vec<String> = (0..100)
        .map(|i| format!("c{i:03}{}", "x".repeat(75)))
        .collect();
    let (status, body) = poll(
        &server,
        &format!("channel={}&timeout=0", too_many.join(",")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "too_many_channels", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("6144"), "{message}");
    let sse = SseStream::open(
        &server.url(&format!("/sse?channel={}", too_many.join(","))),
        &[],
    )
    .await;
    assert_eq!(sse.status, StatusCode::BAD_REQUEST);
    let mut socket = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::send(
        &mut socket,
        json!({"type": "subscribe", "channels": too_many}),
    )
    .await;
    let answer = ws::recv(&mut socket).await;
    assert_eq!(answer["code"], "too_many_channels", "{answer}");

    // The largest channel set that is accepted, with the longest names.
    let names: Vec<String> = (0..40)
        .map(|i| format!("{i:03}{}", "y".repeat(125)))
        .collect();
    let list = names.join(",");
    publish(&server.url(""), &names[7], "x").await;
    let first = poll_ok(
        &server,
        &format!("channel={list}&cursor=earliest&timeout=0"),
    )
    .await;
    assert_eq!(events(&first).len(), 1);
    // Sent back exactly as given, unencoded (`,` `=` `:` `@` `/` are valid in a query).
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let again = poll_ok(
        &server,
        &format!("channel={list}&cursor={cursor}&timeout=0"),
    )
    .await;
    assert_eq!(again["recovered"], true, "{again}");
    // The longest cursor these channels can produce: every offset at its 20-digit maximum.
    let epoch = cursor.split(',').next().unwrap();
    let mut longest = format!("{epoch:0>16}");
    for n in &names {
        longest.push_str(&format!(",{n}={}", u64::MAX));
    }
    assert!(
        longest.len() <= 6144 && longest.len() > 6000,
        "{}",
        longest.len()
    );
    // A 3 KB header stands for a token, cookies and the rest of a browser's request.
    let filler = "f".repeat(3000);
    let url = server.url(&format!("/poll?channel={list}&cursor={longest}&timeout=0"));
    let (status, _, body) = send(Method::GET, &url, &[("x-filler", &filler)], Vec::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let sse = SseStream::open(
        &server.url(&format!("/sse?channel={list}")),
        &[("last-event-id", &longest), ("x-filler", &filler)],
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    let mut socket = ws::connect(&server.ws_url("/ws"), &[]).await;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let answer = ws::subscribe(&mut socket, &names, Some(&cursor)).await;
    assert_eq!(answer["recovered"], true, "{answer}");
}

/// Issue #16, item 7: a 413 states the real limits and the real size, not "91478 bytes
/// exceeds the limit of 91477".
#[tokio::test]
async fn too_large_publishes_are_told_the_real_size_and_limits() {
    let server = Server::start(&["--max-payload", "65536"]).await;
    let body = json!({"channel": "c", "data": "x".repeat(200_000)});
    let size = body.to_string().len();
    for (path, headers) in [
        ("/poll/publish", vec![]),
        ("/api/publish", vec![("x-api-key", "test-key")]),
    ] {
        let (status, json) = post_json(&server.url(path), &headers, &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {json}");
        assert_eq!(json["error"]["code"], "payload_too_large");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("of {size} bytes")), "{message}");
        assert!(message.contains("limit of 91477 bytes"), "{message}");
        assert!(message.contains("up to 65536 bytes"), "{message}");
        assert!(!message.contains("91478"), "{message}");
    }
}

#[tokio::test]
async fn polls_keep_a_session_only_for_presence_or_when_they_name_one() {
    let server = Server::start(&[]).await;
    // No channel keeps presence here: the server keeps nothing between polls.
    let answer = poll_ok(&server, "channel=a&timeout=0").await;
    assert!(answer.get("session").is_none(), "{answer}");
    assert!(answer.get("presence").is_none(), "{answer}");
    // A well-formed session the node does not know starts a new one; echoed, it is kept.
    let unknown = "0".repeat(32);
    let answer = poll_ok(&server, &format!("channel=a&timeout=0&session={unknown}")).await;
    let session = answer["session"].as_str().unwrap().to_owned();
    assert!(session.len() == 32 && session != unknown, "{answer}");
    let again = poll_ok(&server, &format!("channel=a&timeout=0&session={session}")).await;
    assert_eq!(again["session"], session.as_str(), "{again}");
}
