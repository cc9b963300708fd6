//! Server-Sent Events against the real rt-server binary: framing read by a WHATWG-style parser,
//! heartbeats, exact multi-channel resume after a cut connection, resync, lag, shutdown, bad
//! input, `curl -N`, 100 streams on one HTTP/2 connection (h2c), HTTPS with ALPN `h2`, and the
//! Node `eventsource` package as a real EventSource.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rt_tests::http::{post_json, send};
use rt_tests::sse::SseStream;
use rt_tests::Server;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// Opens a stream on `path` over a fresh HTTP/1.1 connection.
async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> SseStream {
    SseStream::open(&server.url(path), headers).await
}

async fn publish(server: &Server, body: Value) -> Value {
    let (status, ack) = post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "test-key")],
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    ack
}

/// `epoch,a=1,b=2` as a map of offsets (the epoch under "").
fn cursor(id: &str) -> BTreeMap<String, u64> {
    let mut parts = id.split(',');
    let mut map = BTreeMap::new();
    map.insert(
        String::new(),
        u64::from_str_radix(parts.next().unwrap(), 16).unwrap(),
    );
    for p in parts {
        let (c, o) = p.split_once('=').unwrap();
        map.insert(c.to_owned(), o.parse().unwrap());
    }
    map
}

#[tokio::test]
async fn framing_named_multiline_unicode_binary_and_heartbeats() {
    let server = Server::start(&["--sse-heartbeat", "300ms", "--sse-retry", "2s"]).await;
    let mut s = open(&server, "/sse?channel=prices&channel=trades", &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.headers["content-type"], "text/event-stream");
    assert_eq!(s.headers["cache-control"], "no-cache");
    assert_eq!(s.headers["x-accel-buffering"], "no");

    let first = s.event().await;
    assert_eq!(first.retry, Some(2000));
    assert_eq!(first.event.as_deref(), Some("rt.open"));
    let start = cursor(first.id.as_deref().unwrap());
    assert_eq!(first.data_json()["cursor"], first.id.clone().unwrap());
    assert_eq!(first.data_json()["channels"], json!(["prices", "trades"]));
    assert_eq!((start["prices"], start["trades"]), (0, 0));

    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (
            json!({"channel":"prices","event":"tick","data":"l1\nl2\n\nl4\n"}),
            Some("tick"),
            "l1\nl2\n\nl4\n",
        ),
        (
            json!({"channel":"trades","data":"ünïcødé – 🚀 \"q\" : x"}),
            None,
            "ünïcødé – 🚀 \"q\" : x",
        ),
        (
            json!({"channel":"trades","data":{"n":1,"s":"a\nb"}}),
            None,
            "{\"n\":1,\"s\":\"a\\nb\"}",
        ),
        (json!({"channel":"prices","data":""}), None, ""),
        (
            json!({"channel":"prices","data":" leading space"}),
            None,
            " leading space",
        ),
        // SSE cannot carry a CR inside data: CRLF and CR arrive as line feeds, never as fields.
        (
            json!({"channel":"prices","data":"a\r\nb\rc"}),
            None,
            "a\nb\nc",
        ),
        (
            json!({"channel":"trades","event":"blob","encoding":"base64","data":"AAH/Cg0="}),
            Some("blob;base64"),
            "AAH/Cg0=",
        ),
    ];
    let mut expect = start.clone();
    for (body, event, data) in cases {
        let channel = body["channel"].as_str().unwrap().to_owned();
        let ack = publish(&server, body).await;
        let got = s.event().await;
        assert_eq!(got.event.as_deref(), event);
        assert_eq!(got.data.as_deref(), Some(data));
        *expect.get_mut(&channel).unwrap() = ack["offset"].as_u64().unwrap();
        assert_eq!(
            cursor(got.id.as_deref().unwrap()),
            expect,
            "id is the whole connection's cursor"
        );
    }

    // Idle: heartbeat comments, about every 300 ms.
    let ping = tokio::time::timeout(Duration::from_secs(3), s.block())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ping.comments, ["ping"]);
    assert_eq!(ping.data, None);
}

/// The connection is cut mid-stream; reconnecting with the last seen id as `Last-Event-ID`
/// delivers every missed event of every channel exactly once, then live.
#[tokio::test]
async fn resume_after_a_cut_connection_is_exact_on_every_channel() {
    let server = Server::start(&[]).await;
    let path = "/sse?channel=a&channel=b&channel=c";
    let mut s = open(&server, path, &[]).await;
    s.event().await;
    let chans = ["a", "b", "c"];
    for i in 0..9 {
        publish(
            &server,
            json!({"channel": chans[i % 3], "data": format!("{}{i}", chans[i % 3])}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut last = String::new();
    for _ in 0..4 {
        let e = s.event().await;
        seen.push(e.data.unwrap());
        last = e.id.unwrap();
    }
    drop(s); // cut: events 4..9 were in flight
    for i in 9..15 {
        publish(
            &server,
            json!({"channel": chans[i % 3], "data": format!("{}{i}", chans[i % 3])}),
        )
        .await;
    }

    let mut s = open(&server, path, &[("last-event-id", &last)]).await;
    let first = s.event().await;
    assert_eq!(first.event.as_deref(), Some("rt.open"));
    assert_eq!(first.id.as_deref(), Some(last.as_str()));
    for _ in 4..15 {
        let e = s.event().await;
        assert_eq!(e.event, None, "no resync or control event expected: {e:?}");
        seen.push(e.data.unwrap());
    }
    publish(&server, json!({"channel":"b","data":"sentinel"})).await;
    assert_eq!(
        s.event().await.data.as_deref(),
        Some("sentinel"),
        "nothing repeated before it"
    );
    let mut all = seen.clone();
    all.sort_by_key(|d| d[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..15).map(|i| format!("{}{i}", chans[i % 3])).collect();
    assert_eq!(all, expected, "every event exactly once: {seen:?}");
    for c in chans {
        let order: Vec<&String> = seen.iter().filter(|d| d.starts_with(c)).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|d| d[1..].parse::<u32>().unwrap());
        assert_eq!(order, sorted, "per-channel order");
    }
}

#[tokio::test]
async fn resume_value_from_query_earliest_and_header_precedence() {
    let server = Server::start(&[]).await;
    for d in ["1", "2", "3"] {
        publish(&server, json!({"channel":"q","data":d})).await;
    }
    // Mercure's spelling and value: everything retained.
    let mut s = open(&server, "/sse?channel=q&lastEventID=earliest", &[]).await;
    let first = s.event().await;
    assert_eq!(
        first.id, None,
        "an earliest stream resumes by its URL until its first event"
    );
    let mut ids = Vec::new();
    for d in ["1", "2", "3"] {
        let e = s.event().await;
        assert_eq!(e.data.as_deref(), Some(d));
        ids.push(e.id.unwrap());
    }
    // lastEventId in the query (percent-encoded) resumes after event 1...
    let q = ids[0].replace(',', "%2C").replace('=', "%3D");
    let mut s = open(&server, &format!("/sse?channel=q&lastEventId={q}"), &[]).await;
    s.event().await;
    assert_eq!(s.event().await.data.as_deref(), Some("2"));
    // ...but the header wins over it.
    let mut s = open(
        &server,
        &format!("/sse?channel=q&lastEventId={q}"),
        &[("last-event-id", &ids[1])],
    )
    .await;
    s.event().await;
    assert_eq!(s.event().await.data.as_deref(), Some("3"));
}

#[tokio::test]
async fn resync_when_history_cannot_cover_the_gap() {
    let server = Server::start(&["--history-size", "2"]).await;
    let mut s = open(&server, "/sse?channel=g&channel=h", &[]).await;
    let start = s.event().await.id.unwrap();
    drop(s);
    for d in ["1", "2", "3", "4"] {
        publish(&server, json!({"channel":"g","data":d})).await;
    }
    publish(&server, json!({"channel":"h","data":"h1"})).await;
    let mut s = open(
        &server,
        "/sse?channel=g&channel=h",
        &[("last-event-id", &start)],
    )
    .await;
    s.event().await;
    let h1 = s.event().await;
    assert_eq!(
        h1.data.as_deref(),
        Some("h1"),
        "h is still covered by history"
    );
    let resync = s.event().await;
    assert_eq!(resync.event.as_deref(), Some("rt.resync"));
    assert_eq!(resync.data_json()["channels"], json!(["g"]));
    let id = resync.id.clone().unwrap();
    assert_eq!(resync.data_json()["cursor"], id);
    assert_eq!(cursor(&id)["g"], 4, "g continues from its head");
    publish(&server, json!({"channel":"g","data":"live"})).await;
    let live = s.event().await;
    assert_eq!(live.data.as_deref(), Some("live"));
    assert_eq!(cursor(live.id.as_deref().unwrap())["g"], 5);

    // A cursor from another epoch (e.g. before a restart) resyncs too.
    let mut s = open(&server, "/sse?channel=g", &[("last-event-id", "abc,g=2")]).await;
    s.event().await;
    let resync = s.event().await;
    assert_eq!(resync.event.as_deref(), Some("rt.resync"));
    assert_eq!(resync.data_json()["channels"], json!(["g"]));
}

#[tokio::test]
async fn bad_requests_get_4xx_json() {
    let server = Server::start(&["--max-channels", "3"]).await;
    type Case<'a> = (
        Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/sse",
            vec![],
            StatusCode::BAD_REQUEST,
            "no_channels",
        ),
        (
            Method::GET,
            "/sse?channel=bad%20name",
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_channel",
        ),
        (
            Method::GET,
            "/sse?channel=a&channel=b,c,d",
            vec![],
            StatusCode::BAD_REQUEST,
            "too_many_channels",
        ),
        (
            Method::GET,
            "/sse?channel=a&lastEventId=not-a-cursor",
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/sse?channel=a",
            vec![("last-event-id", "ff,a=-1")],
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            Method::POST,
            "/sse?channel=a",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/sse?channel=a",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, headers, status, code) in cases {
        let (got, h, body) = send(method.clone(), &server.url(path), &headers, Bytes::new())
            .await
            .unwrap();
        assert_eq!(got, status, "{method} {path}");
        assert_eq!(h["content-type"], "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The server is still fine.
    let mut s = open(&server, "/sse?channel=a", &[]).await;
    assert_eq!(s.event().await.event.as_deref(), Some("rt.open"));
}

/// Issue #17, part 3: a client that stops reading overflows its queue, and is not closed: it
/// gets every event in order, the missed ones from history, on the same stream, then live.
#[tokio::test]
async fn lagging_client_catches_up_on_the_same_stream() {
    let server = Server::start(&[
        "--queue-capacity",
        "8",
        "--history-size",
        "1000",
        "--max-payload",
        "65536",
    ])
    .await;
    let mut s = open(&server, "/sse?channel=lag", &[]).await;
    s.event().await;
    // Far more than socket buffers, hyper's buffer and the queue hold together.
    let n = 600;
    let pad = "x".repeat(60_000);
    for i in 0..n {
        publish(
            &server,
            json!({"channel":"lag","data":format!("{i} {pad}")}),
        )
        .await;
    }
    for i in 0..n {
        let e = s.event().await;
        assert_eq!(e.event, None, "event {i}");
        assert_eq!(e.data.unwrap().split(' ').next().unwrap(), i.to_string());
    }
    // It did fall behind the live stream (the lag is seen when it reads again).
    server.wait_metric("rt_lagged_total", |v| v >= 1.0).await;
    publish(&server, json!({"channel":"lag","data":"live"})).await;
    let e = s.event().await;
    assert_eq!(e.data.as_deref(), Some("live"));
    assert!(e.id.unwrap().ends_with(&format!(",lag={}", n + 1)));
}

#[tokio::test]
async fn graceful_shutdown_ends_streams_with_a_retry_hint() {
    let mut server = Server::start(&["--sse-retry", "1s"]).await;
    let mut s = open(&server, "/sse?channel=bye", &[]).await;
    let id = s.event().await.id.unwrap();
    let reader = tokio::spawn(async move {
        let b = s.event().await;
        (b, s.block().await)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the server did not exit in time");
    assert!(status.success());
    let (b, after) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(b.event.as_deref(), Some("rt.shutdown"));
    assert_eq!(b.id.as_deref(), Some(id.as_str()));
    let retry = b.retry.unwrap();
    assert!((1000..=2000).contains(&retry), "{retry}");
    assert!(after.is_none(), "the stream ends after rt.shutdown");
}

async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn curl_n_streams_events() {
    let server = Server::start(&[]).await;
    let mut curl = std::process::Command::new("curl")
        .args([
            "-N",
            "-sS",
            "--max-time",
            "20",
            &server.url("/sse?channel=curl"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let stdout = curl.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    loop {
        if next_line(&mut rx).await == "event: rt.open" {
            break;
        }
    }
    publish(
        &server,
        json!({"channel":"curl","event":"note","data":"hello\ncurl"}),
    )
    .await;
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("data: curl") {
        lines.push(next_line(&mut rx).await);
    }
    let from = lines.iter().position(|l| l.starts_with("id: ")).unwrap();
    assert!(lines[from].ends_with(",curl=1"), "{lines:?}");
    assert_eq!(
        &lines[from + 1..],
        ["event: note", "data: hello", "data: curl"]
    );
    let _ = curl.kill();
    let _ = curl.wait();
}

/// 100 SSE streams multiplexed on ONE HTTP/2 cleartext (prior knowledge) connection, each
/// getting its own events.
#[tokio::test]
async fn hundred_streams_on_one_h2c_connection() {
    let server = Server::start(&[]).await;
    let streams = hundred_streams(server.h2c().await, &format!("http://{}", server.addr())).await;
    check_streams(&server, streams).await;
}

async fn hundred_streams(
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    base: &str,
) -> Vec<SseStream> {
    let mut pending = Vec::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        let req = Request::get(format!("{base}/sse?channel=h2-{i}&channel=h2-all"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        pending.push(tokio::spawn(async move {
            sender.send_request(req).await.unwrap()
        }));
    }
    let mut streams = Vec::new();
    for p in pending {
        let res = tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), Version::HTTP_2);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade"] {
            assert!(
                res.headers().get(hop).is_none(),
                "hop-by-hop header {hop} on HTTP/2"
            );
        }
        let mut s = SseStream::from_response(res);
        assert_eq!(s.event().await.event.as_deref(), Some("rt.open"));
        streams.push(s);
    }
    streams
}

async fn check_streams(server: &Server, mut streams: Vec<SseStream>) {
    for i in 0..100 {
        publish(
            server,
            json!({"channel": format!("h2-{i}"), "data": format!("for {i}")}),
        )
        .await;
    }
    publish(server, json!({"channel": "h2-all", "data": "everyone"})).await;
    for (i, s) in streams.iter_mut().enumerate() {
        let mine = s.event().await;
        assert_eq!(mine.data, Some(format!("for {i}")));
        let all = s.event().await;
        assert_eq!(all.data.as_deref(), Some("everyone"));
        let c = cursor(all.id.as_deref().unwrap());
        assert_eq!((c[&format!("h2-{i}")], c["h2-all"]), (1, 1));
    }
}

/// HTTPS with a self-signed certificate: ALPN picks `h2` and SSE streams multiplex on it.
#[tokio::test]
async fn tls_with_alpn_h2_carries_sse() {
    let cert = rt_tests::TlsCert::localhost();
    // A cleartext server shares the build; the TLS one is a second process of the same binary.
    let plain = Server::start(&[]).await;
    let tls = rt_tests::TlsServer::start(&cert, &[]).await;

    let connector = cert.connector(&[b"h2", b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(tls.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must pick h2"
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    let req = Request::get("https://localhost/sse?channel=secure")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.clone().send_request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    let mut s = SseStream::from_response(res);
    assert_eq!(s.event().await.event.as_deref(), Some("rt.open"));
    let body = json!({"channel":"secure","event":"tls","data":"over h2"}).to_string();
    // Published over the same TLS connection, on another HTTP/2 stream.
    let req = Request::post("https://localhost/api/publish")
        .header("x-api-key", "test-key")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let res = sender.clone().send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let e = s.event().await;
    assert_eq!(e.event.as_deref(), Some("tls"));
    assert_eq!(e.data.as_deref(), Some("over h2"));

    // curl, as users would: ALPN gives HTTP/2 by default and HTTP/1.1 when asked.
    let url = format!("https://localhost:{}/health", tls.addr().port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.addr().port());
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                flag,
                "--resolve",
                &resolve,
                "--cacert",
            ])
            .arg(&cert.cert_pem)
            .args(["-w", "\n%{http_version}", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with(&format!("\n{version}")),
            "{flag}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(plain);
    let _ = std::fs::remove_dir_all(cert.dir());
}

/// The Node `eventsource` package: named events, a server-side disconnect, and automatic
/// resume with `Last-Event-ID` with nothing lost. See tests/js/sse-eventsource.mjs.
#[tokio::test]
async fn node_eventsource_resumes_after_a_server_side_disconnect() {
    let server = Server::start(&["--sse-retry", "200ms"]).await;
    let dir = rt_tests::node_modules();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("sse-eventsource.mjs"))
            .arg(server.url(""))
            .arg("test-key")
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node script timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: 12 events"), "{stdout}\n{stderr}");
}

async fn subscriptions(server: &Server) -> u64 {
    let (_, _, body) = rt_tests::http::get(&server.url("/health")).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["subscriptions"].as_u64().unwrap()
}

/// Clients that vanish (HTTP/1.1 sockets closed, an HTTP/2 connection dropped) leave no
/// subscription behind.
#[tokio::test]
async fn vanished_clients_release_their_subscriptions() {
    let server = Server::start(&["--sse-heartbeat", "200ms"]).await;
    let mut h1 = Vec::new();
    for i in 0..20 {
        let mut s = open(&server, &format!("/sse?channel=gone-{i}&channel=gone"), &[]).await;
        s.event().await;
        h1.push(s);
    }
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let mut h2 = Vec::new();
    for i in 0..20 {
        let req = Request::get(format!("http://{}/sse?channel=gone-h2-{i}", server.addr()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.clone().send_request(req).await.unwrap();
        let mut s = SseStream::from_response(res);
        s.event().await;
        h2.push(s);
    }
    assert_eq!(subscriptions(&server).await, 40);
    drop(h1);
    conn.abort();
    drop((h2, sender));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = subscriptions(&server).await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} subscriptions leaked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads from `tcp` until `buf` holds `until` (or the connection ends).
async fn read_until(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, until: &[u8]) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        while !buf.windows(until.len()).any(|w| w == until) {
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until:?} in {}", String::from_utf8_lossy(buf)));
}

/// SSE over HTTP/1.1 is served without hyper (the lean path) while the requests on a
/// connection are SSE ones; the first other request hands the connection to hyper. Both
/// answer pipelined requests in order on one keep-alive connection, and a stream is chunked.
#[tokio::test]
async fn http1_keep_alive_and_pipelining_across_sse_and_other_routes() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&[]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    // An SSE refusal (lean path), another, then /health (hyper), in one write.
    tcp.write_all(
        b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /sse?channel=bad%20name HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, b"\"status\"").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let first = text.find("no_channels").expect(&text);
    let second = text.find("invalid_channel").expect(&text);
    let third = text.rfind("HTTP/1.1 200 OK").expect(&text);
    assert!(first < second && second < third, "{text}");
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert_eq!(
        text.matches("content-type: application/json").count(),
        3,
        "{text}"
    );
    // Still open after hyper's answer: a stream on the same connection, through hyper now.
    tcp.write_all(b"GET /sse?channel=ka HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    got.clear();
    read_until(&mut tcp, &mut got, b"rt.open").await;
    drop(tcp);

    // A stream on a fresh connection (lean path): chunked, each event a chunk of its own.
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /sse?channel=ka HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, b"rt.open").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for header in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "cache-control: no-cache",
        "date: ",
    ] {
        assert!(text.contains(header), "{header} missing: {text}");
    }
    publish(
        &server,
        json!({"channel": "ka", "data": "over the lean path"}),
    )
    .await;
    read_until(&mut tcp, &mut got, b"over the lean path\n\n\r\n").await;
    // Each chunk: its size in hex, CRLF, that many bytes, CRLF.
    let body = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let mut rest = body;
    let mut chunks = 0;
    while !rest.is_empty() {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        assert_eq!(&rest[line + 2 + size..line + 4 + size], b"\r\n");
        rest = &rest[line + 4 + size..];
        chunks += 1;
    }
    assert_eq!(chunks, 2, "{}", String::from_utf8_lossy(body));
}
