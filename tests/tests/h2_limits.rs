//! HTTP/2 limits end to end (`--h2-max-streams`, `--max-header-bytes`): a well-behaved client
//! (hyper) and a raw one that ignores the server's SETTINGS never get more concurrent streams
//! than the limit, an oversized header list is refused with `431` on its own stream, and the
//! connection keeps serving afterwards.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use rt_tests::sse::SseStream;
use rt_tests::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const T: Duration = Duration::from_secs(10);
const MAX_STREAMS: usize = 4;

async fn server() -> Server {
    Server::start(&[
        "--h2-max-streams",
        &MAX_STREAMS.to_string(),
        "--max-header-bytes",
        "8192",
    ])
    .await
}

fn get(server: &Server, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{}{path}", server.addr()))
        .body(Empty::new())
        .unwrap()
}

/// hyper honours SETTINGS_MAX_CONCURRENT_STREAMS: of `MAX_STREAMS + 2` SSE streams asked for
/// at once, `MAX_STREAMS` are answered and the others wait in the client until one ends.
/// (Requests sent before the server's SETTINGS arrive are refused like the raw client's
/// below: the first stream is awaited alone so that the client knows the limit.)
#[tokio::test]
async fn a_client_honouring_settings_gets_no_more_than_the_stream_limit() {
    let server = server().await;
    let sender = server.h2c().await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let spawn_get = |i: usize| {
        let (mut sender, done_tx) = (sender.clone(), done_tx.clone());
        let req = get(&server, &format!("/sse?channel=h2-limit-{i}"));
        tokio::spawn(async move {
            let res = sender.send_request(req).await.unwrap();
            let _ = done_tx.send((i, res));
        });
    };
    spawn_get(0);
    let (i, res) = timeout(T, done.recv()).await.unwrap().unwrap();
    let mut open = BTreeMap::from([(i, SseStream::from_response(res))]);
    for i in 1..MAX_STREAMS + 2 {
        spawn_get(i);
    }
    while open.len() < MAX_STREAMS {
        let (i, res) = timeout(T, done.recv()).await.unwrap().unwrap();
        assert_eq!(
            (res.status(), res.version()),
            (StatusCode::OK, Version::HTTP_2)
        );
        open.insert(i, SseStream::from_response(res));
    }
    // The limit is reached: the other requests get no stream (a negative check, so a wait).
    assert!(
        timeout(Duration::from_millis(1500), done.recv())
            .await
            .is_err(),
        "more than {MAX_STREAMS} concurrent streams on one connection"
    );
    // Ending one stream lets exactly one waiting request through, on the same connection.
    let first = *open.keys().next().unwrap();
    drop(open.remove(&first));
    let (i, res) = timeout(T, done.recv()).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut s = SseStream::from_response(res);
    assert_eq!(
        s.event().await.event.as_deref(),
        Some("rt.open"),
        "stream {i}"
    );
    for s in open.values_mut() {
        assert_eq!(s.event().await.event.as_deref(), Some("rt.open"));
    }
    assert!(timeout(Duration::from_millis(300), done.recv())
        .await
        .is_err());
    let health = rt_tests::http::get(&server.url("/health")).await.unwrap();
    assert_eq!(health.0, StatusCode::OK);
}

/// A header list over `--max-header-bytes` is answered `431` on its stream; the connection
/// and its other streams go on.
#[tokio::test]
async fn an_oversized_header_list_is_refused_on_its_stream_only() {
    let server = server().await;
    let mut sender = server.h2c().await;
    let res = sender
        .send_request(get(&server, "/sse?channel=h2-big"))
        .await
        .unwrap();
    let mut sse = SseStream::from_response(res);
    assert_eq!(sse.event().await.event.as_deref(), Some("rt.open"));

    let mut big = get(&server, "/health");
    big.headers_mut()
        .insert("x-big", "a".repeat(12 * 1024).parse().unwrap());
    let res = timeout(T, sender.send_request(big)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let res = timeout(T, sender.send_request(get(&server, "/health")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    rt_tests::http::publish(&server.url(""), "h2-big", "still streaming").await;
    assert_eq!(sse.event().await.data.as_deref(), Some("still streaming"));
}

/// A raw HTTP/2 client that writes frames itself, to do what hyper would not.
struct RawH2 {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// Frame types and codes of RFC 9113 used here.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

impl RawH2 {
    /// Connects, exchanges SETTINGS (acknowledging the server's) and returns the server's.
    async fn connect(server: &Server) -> (RawH2, BTreeMap<u16, u32>) {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut h2 = RawH2 {
            tcp,
            buf: Vec::new(),
        };
        h2.send(SETTINGS, 0, 0, &[]).await;
        let (mut settings, mut acked) = (None, false);
        while settings.is_none() || !acked {
            let (kind, flags, _, payload) = h2.frame().await;
            match (kind, flags & 1) {
                (SETTINGS, 1) => acked = true,
                (SETTINGS, _) => {
                    let pairs = payload.chunks(6).map(|c| {
                        let id = u16::from_be_bytes([c[0], c[1]]);
                        (id, u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
                    });
                    settings = Some(pairs.collect::<BTreeMap<_, _>>());
                    h2.send(SETTINGS, 1, 0, &[]).await;
                }
                _ => {}
            }
        }
        (h2, settings.unwrap())
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.tcp.write_all(&f).await.unwrap();
    }

    /// `GET path` on `stream` (headers as HPACK literals, no compression state needed).
    async fn get(&mut self, stream: u32, authority: &str, path: &str) {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ] {
            // Literal header field without indexing, new name; lengths below 127.
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        // END_STREAM | END_HEADERS
        self.send(HEADERS, 0x5, stream, &block).await;
    }

    /// The next frame: type, flags, stream and payload.
    async fn frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let (kind, flags) = (self.buf[3], self.buf[4]);
                    let stream =
                        u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & !(1 << 31);
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return (kind, flags, stream, payload);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = timeout(T, self.tcp.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// What each of `streams` got first: `Ok(())` response headers, `Err(code)` a reset.
    async fn outcomes(&mut self, streams: &[u32]) -> BTreeMap<u32, Result<(), u32>> {
        let mut got = BTreeMap::new();
        let deadline = Instant::now() + T;
        while got.len() < streams.len() {
            assert!(
                Instant::now() < deadline,
                "no answer on every stream: {got:?}"
            );
            let (kind, _, stream, payload) = self.frame().await;
            assert_ne!(kind, GOAWAY, "the server ended the connection: {payload:?}");
            if !streams.contains(&stream) || got.contains_key(&stream) {
                continue;
            }
            match kind {
                HEADERS => {
                    got.insert(stream, Ok(()));
                }
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    got.insert(stream, Err(code));
                }
                DATA => panic!("DATA before HEADERS on stream {stream}"),
                _ => {}
            }
        }
        got
    }
}

/// A client that ignores SETTINGS_MAX_CONCURRENT_STREAMS and opens more streams at once gets
/// the extra ones refused (`REFUSED_STREAM`, safe to retry), keeps its connection, and gets a
/// new stream once one of its streams ends.
#[tokio::test]
async fn streams_over_the_limit_are_refused_and_the_connection_goes_on() {
    let server = server().await;
    let (mut h2, settings) = RawH2::connect(&server).await;
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) and SETTINGS_MAX_HEADER_LIST_SIZE (0x6).
    assert_eq!(
        settings.get(&0x3),
        Some(&(MAX_STREAMS as u32)),
        "{settings:?}"
    );
    assert_eq!(settings.get(&0x6), Some(&8192), "{settings:?}");

    let authority = server.addr().to_string();
    let ids: Vec<u32> = (0..MAX_STREAMS as u32 + 2).map(|i| 2 * i + 1).collect();
    for id in &ids {
        h2.get(*id, &authority, &format!("/sse?channel=raw-{id}"))
            .await;
    }
    let got = h2.outcomes(&ids).await;
    let (served, refused) = ids.split_at(MAX_STREAMS);
    for id in served {
        assert_eq!(got[id], Ok(()), "stream {id}: {got:?}");
    }
    for id in refused {
        assert_eq!(got[id], Err(REFUSED_STREAM), "stream {id}: {got:?}");
    }

    // Ending one stream makes room for a new one on the same connection.
    h2.send(RST_STREAM, 0, ids[0], &CANCEL.to_be_bytes()).await;
    let next = ids.last().unwrap() + 2;
    h2.get(next, &authority, "/health").await;
    assert_eq!(h2.outcomes(&[next]).await[&next], Ok(()));
    let health = rt_tests::http::get(&server.url("/health")).await.unwrap();
    assert_eq!(health.0, StatusCode::OK);
}
