//! WebSocket clients for tests: tungstenite with JSON messages, and a raw frame reader for
//! what tungstenite would hide or refuse (pings, close frames of a peer that never reads).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

/// A tungstenite client connection.
pub type Ws = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket over an HTTP/2 stream (RFC 8441): see [`connect_h2`].
pub type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What a WebSocket runs over: a TCP (or TLS) connection, or an HTTP/2 stream. The helpers
/// below take either.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// How long a read or a handshake waits.
pub const WAIT: Duration = Duration::from_secs(15);

/// Opens a WebSocket to `url` with extra request headers; the handshake's HTTP status when
/// the server refuses it.
pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().expect("a valid ws:// URL");
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("a valid header name"),
            v.parse().expect("a valid header value"),
        );
    }
    match timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("no WebSocket handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("WebSocket connect to {url} failed: {e}"),
    }
}

/// Opens a WebSocket to `url`, or says why not (refused, reset, an HTTP status, no handshake
/// within [`WAIT`]): for clients of a server that may be killed or starved under them.
pub async fn dial(url: &str) -> Result<Ws, String> {
    match timeout(WAIT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no WebSocket handshake within {WAIT:?}")),
    }
}

/// Opens a WebSocket on an HTTP/2 connection with an extended CONNECT (RFC 8441) to `uri`
/// (`http://host/ws?...`) with `protocol` as its `:protocol`, `Sec-WebSocket-Version: 13` and
/// the `rt.v1` subprotocol unless `headers` name them (a header given an empty value is left
/// out); the status and body of the answer when it is not `200`. The connection must have received the server's SETTINGS
/// (send it a request first): hyper refuses an extended CONNECT before it knows the server
/// allows them.
pub async fn connect_h2(
    sender: &mut SendRequest<Empty<Bytes>>,
    uri: &str,
    protocol: &'static str,
    headers: &[(&str, &str)],
) -> Result<H2Ws, (u16, String)> {
    let mut req = http::Request::connect(uri)
        .version(http::Version::HTTP_2)
        .extension(hyper::ext::Protocol::from_static(protocol));
    let defaults = [
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "rt.v1"),
    ];
    for (k, v) in defaults
        .iter()
        .filter(|(k, _)| !headers.iter().any(|(h, _)| h == k))
    {
        req = req.header(*k, *v);
    }
    for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).expect("a valid request");
    let mut res = timeout(WAIT, sender.send_request(req))
        .await
        .expect("no answer to the extended CONNECT in time")
        .expect("extended CONNECT failed");
    if res.status() != http::StatusCode::OK {
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.expect("the error body");
        return Err((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ));
    }
    let upgraded = timeout(WAIT, hyper::upgrade::on(&mut res))
        .await
        .expect("no upgraded stream in time")
        .expect("the CONNECT stream");
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Opens a WebSocket to `url` (with extra headers); panics if it is refused.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Ws {
    try_connect(url, headers)
        .await
        .unwrap_or_else(|status| panic!("WebSocket handshake to {url} refused: {status}"))
}

/// Sends `v` as a text message.
pub async fn send<S: Io>(ws: &mut WebSocketStream<S>, v: Value) {
    timeout(WAIT, ws.send(Message::text(v.to_string())))
        .await
        .expect("WebSocket send timed out")
        .expect("WebSocket send failed");
}

/// The next message that is not a heartbeat: JSON text, or a binary frame as
/// `{"binary": header, "payload": [bytes]}`; `Err((code, reason))` when the server closes
/// (`1006` if the socket ends without a close frame).
pub async fn next<S: Io>(ws: &mut WebSocketStream<S>) -> Result<Value, (u16, String)> {
    loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("no WebSocket message in time")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("a JSON text message");
                if v["type"] != "heartbeat" {
                    return Ok(v);
                }
            }
            Some(Ok(Message::Binary(b))) => {
                let len = u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as usize;
                let header: Value =
                    serde_json::from_slice(&b[4..4 + len]).expect("a JSON binary header");
                return Ok(json!({"binary": header, "payload": b[4 + len..].to_vec()}));
            }
            Some(Ok(Message::Close(Some(f)))) => return Err((f.code.into(), f.reason.to_string())),
            Some(Ok(Message::Close(None))) => return Err((1005, String::new())),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("WebSocket error: {e}"),
            None => return Err((1006, "ended without a close frame".into())),
        }
    }
}

/// [`next`], panicking when the server closes.
pub async fn recv<S: Io>(ws: &mut WebSocketStream<S>) -> Value {
    next(ws)
        .await
        .unwrap_or_else(|close| panic!("unexpected close {close:?}"))
}

/// Reads until the server's close frame, skipping messages; returns its code and reason.
pub async fn closed<S: Io>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    loop {
        if let Err(close) = next(ws).await {
            return close;
        }
    }
}

/// Subscribes to `channels` (from `cursor` if given) and returns the `subscribed` answer.
pub async fn subscribe<S: Io>(
    ws: &mut WebSocketStream<S>,
    channels: &[&str],
    cursor: Option<&str>,
) -> Value {
    let mut m = json!({"type": "subscribe", "channels": channels});
    if let Some(c) = cursor {
        m["cursor"] = json!(c);
    }
    send(ws, m).await;
    let answer = recv(ws).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    answer
}

/// Reads an HTTP response head (up to and including the blank line) from `s` byte by byte,
/// so that nothing after it (the first WebSocket frames) is consumed.
pub async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    head
}

/// A masked client text frame (any bytes, even invalid UTF-8) shorter than 126 bytes.
pub fn masked_text(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads raw server frames from `s` until a close frame, EOF or `within`; returns
/// (opcode, payload) of each.
pub async fn raw_frames(s: &mut TcpStream, within: Duration) -> Vec<(u8, Vec<u8>)> {
    let mut data = Vec::new();
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Parse every complete frame at the front of `data`.
        loop {
            if data.len() < 2 {
                break;
            }
            let op = data[0] & 0x0f;
            let (len, hl) = match data[1] & 0x7f {
                126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
                127 if data.len() >= 10 => (
                    u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                n if n < 126 => (n as usize, 2),
                _ => break,
            };
            if data.len() < hl + len {
                break;
            }
            frames.push((op, data[hl..hl + len].to_vec()));
            data.drain(..hl + len);
            if op == 8 {
                return frames;
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buf[..n]),
            _ => return frames,
        }
    }
}

/// The code and reason of the close frame among `frames`, if any.
pub fn close_of(frames: &[(u8, Vec<u8>)]) -> Option<(u16, String)> {
    frames.iter().find(|(op, _)| *op == 8).map(|(_, p)| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            String::from_utf8_lossy(&p[2..]).into_owned(),
        )
    })
}
