//! WebSocket transport (`rt.v1`): one socket carries subscribe, events, acks, publishes and
//! their answers (docs/protocol.md, "WebSocket").

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rt_core::{Channel, Cursor};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::driver::Conn;
use crate::error::{Error, TOKEN_REFUSALS};
use crate::event::{Incoming, PublishAck, Transport, WireEvent};
use crate::publish::{Answer, Link};

/// Acknowledgements are sent once this many events are unacknowledged, or [`ACK_DELAY`]
/// after the first: well below the server's window (1024 by default), and few messages
/// under its inbound rate limit (100/s by default).
const ACK_EVERY: usize = 128;
const ACK_DELAY: Duration = Duration::from_millis(200);

/// What the server sends in text frames (docs/protocol.md, "Server → client").
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ServerMessage {
    Event(WireEvent),
    /// The connect hook's `data`, first.
    Connected {
        data: serde_json::Value,
    },
    /// The answer to an `auth`, with the connect hook's `data` when it answered some.
    Authenticated {
        #[serde(default)]
        data: Option<serde_json::Value>,
    },
    Subscribed {
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default = "yes")]
        recovered: bool,
        #[serde(default)]
        resynced: Vec<String>,
        #[serde(default)]
        cursor: Option<String>,
    },
    Resync {
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default)]
        cursor: Option<String>,
    },
    /// The answer to an `unsubscribe`, or with `server: true` the server taking channels out.
    Unsubscribed {
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default)]
        server: bool,
    },
    Published(PublishAck),
    Error {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        id: Option<String>,
    },
    /// `heartbeat`, `pong` and anything newer than this client: liveness only.
    #[serde(other)]
    Other,
}

fn yes() -> bool {
    true
}

/// A client WebSocket, over TCP or TLS.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket of `request`, over TLS with `tls` for `wss://`.
async fn connect(
    request: tungstenite::handshake::client::Request,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Socket, tungstenite::Error> {
    let tls = tokio_tungstenite::Connector::Rustls(tls.clone());
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(tls)).await?;
    Ok(ws)
}

/// Runs one WebSocket connection until it ends; returns why.
pub(crate) async fn run(conn: &mut Conn<'_>) -> Error {
    let link = conn.link();
    let result = session(conn, &link).await;
    link.detach();
    match result {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session(conn: &mut Conn<'_>, link: &Link) -> Result<Infallible, Error> {
    let config = conn.config();
    let connect_timeout = config.connect_timeout;
    let heartbeat = config.heartbeat;
    let acks_on = config.acks;
    // The URL's cursor is where the channels a connect hook joins start (they are joined
    // before any subscribe), so they resume exactly like the subscription's own.
    let resume = conn.resume();
    let url = if resume.is_empty() {
        config.endpoints.ws.to_string()
    } else {
        crate::http::query_url(config.endpoints.ws.as_str(), [], &[("cursor", &resume)])
    };
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static("rt.v1"),
    );
    if let Some(token) = conn.token() {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Protocol("the token is not a valid header value".into()))?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    let deadline = Instant::now() + connect_timeout;
    let mut ws = match tokio::time::timeout_at(deadline, connect(request, &config.tls)).await {
        Err(_) => {
            return Err(Error::Timeout {
                what: "WebSocket handshake",
                after: connect_timeout,
            })
        }
        Ok(Err(tungstenite::Error::Http(res))) => {
            let body = res.body().as_deref().unwrap_or_default();
            let (code, message) = crate::http::error_body(body);
            return Err(Error::http(
                "WebSocket handshake",
                Some(Transport::Ws),
                res.status().as_u16(),
                code,
                message,
            ));
        }
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(ws)) => ws,
    };

    let mut subscribe = serde_json::json!({
        "type": "subscribe",
        "channels": conn.channels().iter().map(Channel::as_str).collect::<Vec<_>>(),
    });
    if !resume.is_empty() {
        subscribe["cursor"] = resume.into();
    }
    if acks_on {
        subscribe["acks"] = true.into();
    }
    ws.send(Message::text(subscribe.to_string())).await?;

    let (outbox, mut outgoing) = mpsc::unbounded_channel::<String>();
    let mut unacked: BTreeMap<Channel, u64> = BTreeMap::new();
    let mut unacked_count = 0usize;
    let mut silent_until = deadline;
    let mut ack_at: Option<Instant> = None;
    loop {
        let ack_timer = async {
            match ack_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = ws.next() => {
                silent_until = Instant::now() + heartbeat;
                let message = match read {
                    None => return Err(Error::Disconnected("the WebSocket ended without a close".into())),
                    Some(read) => read?,
                };
                let event = match message {
                    Message::Text(text) => {
                        let message: ServerMessage = serde_json::from_str(text.as_str())
                            .map_err(|e| Error::Protocol(format!("a WebSocket message this client cannot read ({e}): {}", excerpt(text.as_str()))))?;
                        match message {
                            ServerMessage::Event(wire) => Some(Incoming::from_wire(wire, None)?),
                            other => {
                                control(conn, link, &outbox, other).await?;
                                None
                            }
                        }
                    }
                    Message::Binary(bytes) => Some(binary_event(bytes)?),
                    Message::Close(frame) => return Err(close_error(frame)),
                    // Pings are answered by tungstenite; they are liveness only.
                    _ => None,
                };
                if let Some(event) = event {
                    let (channel, offset) = (event.channel.clone(), event.offset);
                    conn.deliver(event).await?;
                    if acks_on {
                        // Cumulative: everything up to `offset` is in the subscription's queue.
                        unacked.insert(channel, offset);
                        unacked_count += 1;
                        ack_at.get_or_insert_with(|| Instant::now() + ACK_DELAY);
                    }
                }
            }
            Some(frame) = outgoing.recv() => ws.send(Message::text(frame)).await?,
            () = ack_timer => {}
            () = tokio::time::sleep_until(silent_until) => {
                return Err(Error::Timeout {
                    what: if conn.is_open() { "WebSocket (no heartbeat: presumed dead)" } else { "WebSocket subscribe" },
                    after: if conn.is_open() { heartbeat } else { connect_timeout },
                });
            }
        }
        let due = ack_at.is_some_and(|at| at <= Instant::now());
        if unacked_count >= ACK_EVERY || due {
            for (channel, offset) in std::mem::take(&mut unacked) {
                let ack = serde_json::json!({"type": "ack", "channel": channel.as_str(), "offset": offset});
                ws.feed(Message::text(ack.to_string())).await?;
            }
            ws.flush().await?;
            unacked_count = 0;
            ack_at = None;
        }
    }
}

/// Everything but events.
async fn control(
    conn: &mut Conn<'_>,
    link: &Link,
    outbox: &mpsc::UnboundedSender<String>,
    message: ServerMessage,
) -> Result<(), Error> {
    match message {
        // Channels the server's connect hook joined the connection to, none of the client's:
        // not the answer that opens it (that one comes next), but their position and events
        // are kept like the client's own.
        ServerMessage::Subscribed {
            channels,
            recovered,
            resynced,
            cursor,
        } if !channels.is_empty()
            && !channels
                .iter()
                .any(|c| conn.channels().iter().any(|own| own.as_str() == c)) =>
        {
            conn.joined(&channels);
            if let Some(cursor) = cursor.as_deref().filter(|c| !c.is_empty()) {
                conn.position(&parse_cursor(cursor)?, !recovered).await?;
            }
            if !recovered {
                let lost = if resynced.is_empty() {
                    channels
                } else {
                    resynced
                };
                conn.resync(lost).await?;
            }
        }
        ServerMessage::Subscribed {
            recovered,
            resynced,
            cursor,
            ..
        } => {
            if let Some(cursor) = cursor.as_deref().filter(|c| !c.is_empty()) {
                conn.position(&parse_cursor(cursor)?, !recovered).await?;
            }
            conn.open(recovered).await?;
            link.attach(outbox.clone());
            if !recovered {
                conn.resync(resynced).await?;
            }
        }
        ServerMessage::Resync { channels, cursor } => {
            if let Some(cursor) = cursor.as_deref().filter(|c| !c.is_empty()) {
                conn.position(&parse_cursor(cursor)?, true).await?;
            }
            conn.resync(channels).await?;
        }
        ServerMessage::Unsubscribed {
            channels,
            server: true,
        } => conn.unsubscribed(channels).await?,
        ServerMessage::Unsubscribed { server: false, .. } => {}
        ServerMessage::Published(ack) => link.answer(&ack.id.clone(), Answer::Ack(ack)),
        ServerMessage::Error { code, message, id } => match id {
            Some(id) => link.answer(&id, Answer::Refused { code, message }),
            // Before `subscribed`, the subscribe itself was refused (a bad cursor, too many
            // channels): this connection cannot work.
            None if !conn.is_open() => return Err(Error::Refused { code, message }),
            // Afterwards, an answer to an ack: nothing to do about it here.
            None => {}
        },
        ServerMessage::Connected { data }
        | ServerMessage::Authenticated {
            data: Some(data), ..
        } => conn.connected(data).await?,
        ServerMessage::Event(_) | ServerMessage::Authenticated { .. } | ServerMessage::Other => {}
    }
    Ok(())
}

fn parse_cursor(text: &str) -> Result<Cursor, Error> {
    text.parse()
        .map_err(|e| Error::Protocol(format!("the server sent a bad cursor: {e}")))
}

/// An event from a binary frame: a 4-byte big-endian header length, the JSON header (the
/// event object without `data`), then the raw payload.
fn binary_event(frame: Bytes) -> Result<Incoming, Error> {
    let bad = |why: &str| Error::Protocol(format!("a binary frame that is not an rt event: {why}"));
    let len_bytes: [u8; 4] = frame
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("shorter than 4 bytes"))?;
    let end = 4 + u32::from_be_bytes(len_bytes) as usize;
    let header = frame
        .get(4..end)
        .ok_or_else(|| bad("its header length exceeds the frame"))?;
    let wire: WireEvent = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    Incoming::from_wire(wire, Some(frame.slice(end..)))
}

/// The error for a close: a policy close (1008) carries a machine-readable reason, and a
/// token refusal among them makes the client fetch a fresh token.
fn close_error(frame: Option<CloseFrame>) -> Error {
    let Some(frame) = frame else {
        return Error::Closed {
            code: 1005,
            reason: String::new(),
        };
    };
    let code = u16::from(frame.code);
    let reason = frame.reason.as_str().to_owned();
    if code == 4000 || code == 4001 {
        return Error::ServerDisconnect {
            transport: Transport::Ws,
            reconnect: code == 4000,
            reason,
        };
    }
    if code == 1008 && TOKEN_REFUSALS.contains(&reason.as_str()) {
        return Error::TokenRefused {
            transport: Transport::Ws,
            code: reason,
        };
    }
    Error::Closed { code, reason }
}

/// The start of a message, for an error.
fn excerpt(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::Data;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn binary_frames_carry_their_header_and_raw_payload() {
        let header =
            br#"{"type":"event","channel":"c","offset":8,"epoch":"9f2c","event":"blob","time":5}"#;
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(header);
        frame.extend_from_slice(&[0, 255, 1]);
        let e = binary_event(Bytes::from(frame)).unwrap();
        assert_eq!((e.channel.as_str(), e.offset, e.epoch.0), ("c", 8, 0x9f2c));
        assert_eq!(e.data, Data::Binary(Bytes::from_static(&[0, 255, 1])));
        assert!(binary_event(Bytes::from_static(&[0, 0, 1])).is_err());
        assert!(binary_event(Bytes::from_static(&[0, 0, 0, 9, b'{'])).is_err());
    }

    #[test]
    fn token_refusals_are_told_apart_from_other_closes() {
        let close = |code: u16, reason: &str| {
            close_error(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))
        };
        assert!(matches!(
            close(4001, "banned"),
            Error::ServerDisconnect {
                reconnect: false,
                ..
            }
        ));
        assert!(matches!(
            close(4000, "moved"),
            Error::ServerDisconnect {
                reconnect: true,
                ..
            }
        ));
        assert_eq!(
            close(1008, "token_expired").token_refusal(),
            Some("token_expired")
        );
        assert_eq!(close(1008, "forbidden").token_refusal(), None);
        assert!(matches!(
            close(1013, "lagged: x"),
            Error::Closed { code: 1013, .. }
        ));
    }
}
