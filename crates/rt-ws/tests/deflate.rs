//! permessage-deflate (RFC 7692) through rt-ws's endpoint over real loopback sockets, with a
//! raw client that frames and inflates by hand, so that the bits on the wire (RSV1, the
//! compressed payloads) are what is checked: negotiation, compressed subscribes and events,
//! events compressed once per publish, context takeover, and a zip bomb closed with 1009.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::sync::Arc;
use std::time::Duration;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_ws::Compression;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Serves rt-ws with `compression` (and anonymous clients) on a free port.
async fn serve(compression: Compression) -> (std::net::SocketAddr, Hub) {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let config = rt_ws::Config::default()
        .compression(compression)
        .edge(rt_http::Edge::default().allow_anonymous());
    let ws = rt_ws::WebSocket::new(hub.clone(), config);
    (support::serve(ws).await, hub)
}

/// A WebSocket client speaking frames by hand.
struct Client {
    tcp: TcpStream,
    /// The answer's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
    /// The inflater of the server's messages, kept across them (the server may take over
    /// its context).
    inflater: Decompress,
}

/// One frame from the server.
#[derive(Debug)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, offer: Option<&str>) -> Client {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: rt.v1\r\n{offer}\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_string())
        });
        Client {
            tcp,
            extensions,
            inflater: Decompress::new(false),
        }
    }

    /// Sends one masked frame.
    async fn frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&out).await.unwrap();
    }

    /// Sends `text` compressed, in `parts` frames.
    async fn send_compressed(&mut self, text: &str, parts: usize) {
        let packed = deflate(text.as_bytes());
        let size = packed.len().div_ceil(parts).max(1);
        let chunks: Vec<&[u8]> = packed.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let first = i == 0;
            let opcode = if first { 1 } else { 0 };
            self.frame(i + 1 == chunks.len(), first, opcode, chunk)
                .await;
        }
    }

    async fn read_frame(&mut self) -> Frame {
        timeout(Duration::from_secs(10), async {
            let b0 = self.tcp.read_u8().await.unwrap();
            let b1 = self.tcp.read_u8().await.unwrap();
            assert_eq!(b1 & 0x80, 0, "the server does not mask");
            let len = match b1 & 0x7f {
                126 => u64::from(self.tcp.read_u16().await.unwrap()),
                127 => self.tcp.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0; len as usize];
            self.tcp.read_exact(&mut payload).await.unwrap();
            Frame {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                opcode: b0 & 0x0f,
                payload,
            }
        })
        .await
        .expect("no frame within 10 s")
    }

    /// The next data message that is not a heartbeat, inflated when compressed; with whether
    /// it was compressed and its size on the wire.
    async fn message(&mut self) -> (Value, bool, usize) {
        loop {
            let f = self.read_frame().await;
            if f.opcode >= 8 {
                continue;
            }
            assert!(f.fin, "the server does not fragment");
            let text = if f.rsv1 {
                inflate(&mut self.inflater, &f.payload)
            } else {
                f.payload.clone()
            };
            let v: Value = serde_json::from_slice(&text).unwrap();
            if v["type"] != "heartbeat" {
                return (v, f.rsv1, f.payload.len());
            }
        }
    }

    /// The close code the server sent.
    async fn close_code(&mut self) -> u16 {
        loop {
            let f = self.read_frame().await;
            if f.opcode == 8 {
                return u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
        }
    }
}

/// Raw deflate of one message, as a client sends it (no context takeover).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.len() < out.capacity());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

async fn publish(hub: &Hub, text: String) {
    hub.publish(NewEvent::new(
        Channel::new("news").unwrap(),
        Payload::text(text),
    ))
    .await
    .unwrap();
}

/// A JSON-ish text that compresses several times, like real events.
fn news(i: usize) -> String {
    (0..20)
        .map(|k| format!("{{\"headline\":\"story {i}-{k}\",\"section\":\"world\",\"score\":{k}}}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn negotiated_compression_carries_subscribes_and_events() {
    let (addr, hub) = serve(Compression::shared()).await;
    let mut a = Client::connect(addr, Some("permessage-deflate; client_max_window_bits")).await;
    assert_eq!(
        a.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    // A compressed subscribe in three frames.
    a.send_compressed(r#"{"type":"subscribe","channels":["news"]}"#, 3)
        .await;
    assert_eq!(a.message().await.0["type"], "subscribed");
    let mut b = Client::connect(addr, Some("permessage-deflate")).await;
    b.send_compressed(r#"{"type":"subscribe","channels":["news"]}"#, 1)
        .await;
    assert_eq!(b.message().await.0["type"], "subscribed");

    let text = news(1);
    publish(&hub, text.clone()).await;
    let (ev, compressed, wire) = a.message().await;
    assert!(
        compressed,
        "an event of {} bytes goes compressed",
        text.len()
    );
    assert_eq!(ev["data"], text.as_str());
    assert!(
        wire * 3 < text.len(),
        "{wire} bytes on the wire for {}",
        text.len()
    );
    // The other connection gets the very bytes compressed once for the publish.
    let (ev_b, _, wire_b) = b.message().await;
    assert_eq!((ev_b, wire_b), (ev, wire));

    // Small events go as they are.
    publish(&hub, "hi".into()).await;
    let (ev, compressed, _) = a.message().await;
    assert_eq!((ev["data"].as_str(), compressed), (Some("hi"), false));
}

#[tokio::test]
async fn without_an_offer_or_when_off_nothing_is_compressed() {
    let (addr, hub) = serve(Compression::shared()).await;
    let mut plain = Client::connect(addr, None).await;
    assert_eq!(plain.extensions, None);
    plain
        .frame(
            true,
            false,
            1,
            br#"{"type":"subscribe","channels":["news"]}"#,
        )
        .await;
    assert_eq!(plain.message().await.0["type"], "subscribed");
    publish(&hub, news(2)).await;
    assert!(!plain.message().await.1);

    let (addr, _) = serve(Compression::off()).await;
    let mut off = Client::connect(addr, Some("permessage-deflate")).await;
    assert_eq!(off.extensions, None);
    // RSV1 without the extension fails the connection (1002).
    off.send_compressed(r#"{"type":"subscribe","channels":["news"]}"#, 1)
        .await;
    assert_eq!(off.close_code().await, 1002);
}

#[tokio::test]
async fn context_takeover_shrinks_similar_events() {
    let (addr, hub) = serve(Compression::context_takeover()).await;
    let mut c = Client::connect(addr, Some("permessage-deflate; client_max_window_bits")).await;
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    c.send_compressed(r#"{"type":"subscribe","channels":["news"]}"#, 1)
        .await;
    assert_eq!(c.message().await.0["type"], "subscribed");
    let mut sizes = Vec::new();
    for i in 0..3 {
        let text = news(i);
        publish(&hub, text.clone()).await;
        let (ev, compressed, wire) = c.message().await;
        assert!(compressed);
        assert_eq!(ev["data"], text.as_str());
        sizes.push(wire);
    }
    // The later events refer back to the earlier ones in the shared window.
    assert!(sizes[2] * 2 < sizes[0], "{sizes:?}");

    // A client asking for no context takeover gets it.
    let d = Client::connect(addr, Some("permessage-deflate; server_no_context_takeover")).await;
    assert_eq!(
        d.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[tokio::test]
async fn a_zip_bomb_is_closed_with_1009() {
    let (addr, _) = serve(Compression::shared()).await;
    let mut c = Client::connect(addr, Some("permessage-deflate")).await;
    // 16 MiB of zeros, about 16 KiB compressed; the message limit is 64 KiB.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 << 10);
    c.frame(true, true, 1, &bomb).await;
    assert_eq!(c.close_code().await, 1009);
}

#[tokio::test]
async fn corrupt_compressed_data_fails_the_connection() {
    let (addr, _) = serve(Compression::shared()).await;
    let mut c = Client::connect(addr, Some("permessage-deflate")).await;
    // Block type 3 does not exist.
    c.frame(true, true, 1, &[0xff, 0xff, 0xff]).await;
    assert_eq!(c.close_code().await, 1002);
}

#[tokio::test]
async fn invalid_offers_are_declined() {
    let (addr, _) = serve(Compression::shared()).await;
    for offer in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery",
        "x-webkit-deflate-frame",
    ] {
        let c = Client::connect(addr, Some(offer)).await;
        assert_eq!(c.extensions, None, "{offer}");
    }
    // The first valid offer is taken.
    let c = Client::connect(
        addr,
        Some("permessage-deflate; mystery, permessage-deflate; server_max_window_bits=\"10\""),
    )
    .await;
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
    );
}
