//! The messages of the rt WebSocket protocol (see `docs/protocol.md`, section WebSocket).

use bytes::{BufMut, Bytes, BytesMut};
use rt_core::{
    Channel, Cursor, Error, Event, EventName, MessageId, NewEvent, Payload, PublishRequest,
};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A message from the client.
#[derive(Debug)]
pub(crate) enum Inbound {
    Subscribe {
        channels: Vec<Channel>,
        cursor: Option<String>,
        acks: bool,
    },
    Unsubscribe {
        channels: Vec<Channel>,
    },
    Publish(NewEvent, Option<String>),
    Ack {
        channel: Channel,
        offset: u64,
    },
    Ping {
        id: Option<serde_json::Value>,
    },
    Auth {
        token: String,
    },
}

/// A request that failed, with the client message id to echo (for publishes).
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) error: Error,
    pub(crate) id: Option<String>,
}

impl From<Error> for Rejected {
    fn from(error: Error) -> Self {
        Rejected { error, id: None }
    }
}

/// A parser's message cut short: serde quotes the offending value, which is untrusted input.
fn cut(e: serde_json::Error) -> String {
    let mut s = e.to_string();
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn bad(message: String) -> Rejected {
    Error::BadRequest(message).into()
}

fn channels(names: Vec<String>) -> Result<Vec<Channel>, Error> {
    if names.is_empty() {
        return Err(Error::NoChannels);
    }
    names.iter().map(|n| Channel::new(n)).collect()
}

/// Checks one client frame exactly as a connection parses it: `Ok` when the server would act
/// on it, otherwise the error the client would be sent in an `error` message. For tools that
/// validate messages offline, and for the fuzz target of the parser.
///
/// ```
/// let ok = br#"{"type":"subscribe","channels":["news"]}"#;
/// assert!(rt_ws::check_client_frame(ok, false).is_ok());
/// let bad = rt_ws::check_client_frame(b"{nope", false).unwrap_err();
/// assert_eq!(bad.code(), "bad_request");
/// ```
pub fn check_client_frame(frame: &[u8], binary: bool) -> Result<(), Error> {
    let parsed = if binary {
        parse_binary(&Bytes::copy_from_slice(frame))
    } else {
        parse_text(frame)
    };
    parsed.map(drop).map_err(|rejected| rejected.error)
}

/// Parses a text frame.
pub(crate) fn parse_text(text: &[u8]) -> Result<Inbound, Rejected> {
    #[derive(Deserialize)]
    struct Head {
        r#type: String,
    }
    #[derive(Deserialize)]
    struct Subscribe {
        channels: Vec<String>,
        #[serde(default)]
        cursor: Option<String>,
        #[serde(default)]
        acks: bool,
    }
    #[derive(Deserialize)]
    struct Unsubscribe {
        channels: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Ack {
        channel: String,
        offset: u64,
    }
    #[derive(Deserialize)]
    struct Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct AuthMsg {
        token: String,
    }
    fn de<'a, T: Deserialize<'a>>(text: &'a [u8], kind: &str) -> Result<T, Rejected> {
        serde_json::from_slice(text).map_err(|e| bad(format!("invalid {kind} message: {}", cut(e))))
    }
    let head: Head = serde_json::from_slice(text).map_err(|e| {
        bad(format!(
            "invalid message: {}; send a JSON object with a \"type\" field",
            cut(e)
        ))
    })?;
    match head.r#type.as_str() {
        "subscribe" => {
            let s: Subscribe = de(text, "subscribe")?;
            Ok(Inbound::Subscribe {
                channels: channels(s.channels)?,
                cursor: s.cursor,
                acks: s.acks,
            })
        }
        "unsubscribe" => {
            let u: Unsubscribe = de(text, "unsubscribe")?;
            Ok(Inbound::Unsubscribe {
                channels: channels(u.channels)?,
            })
        }
        "publish" => {
            let p = PublishRequest::from_json(text)?;
            let id = p.id.clone();
            match p.into_new_event() {
                Ok(event) => Ok(Inbound::Publish(event, id)),
                Err(error) => Err(Rejected { error, id }),
            }
        }
        "ack" => {
            let a: Ack = de(text, "ack")?;
            Ok(Inbound::Ack {
                channel: Channel::new(&a.channel)?,
                offset: a.offset,
            })
        }
        "ping" => {
            let p: Ping = de(text, "ping")?;
            Ok(Inbound::Ping { id: p.id })
        }
        "auth" => {
            let a: AuthMsg = de(text, "auth")?;
            Ok(Inbound::Auth { token: a.token })
        }
        other => Err(bad(format!(
            "unknown message type {:?}; expected subscribe, unsubscribe, publish, ack, ping or auth",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Splits a binary frame into its JSON header and payload: a 4-byte big-endian header length,
/// the header, then the payload.
fn split_binary(frame: &Bytes) -> Option<(&[u8], Bytes)> {
    let len = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(len)?;
    Some((frame.get(4..end)?, frame.slice(end..)))
}

/// Parses a binary frame: a publish of a binary payload.
pub(crate) fn parse_binary(frame: &Bytes) -> Result<Inbound, Rejected> {
    #[derive(Deserialize)]
    struct Header {
        r#type: String,
        channel: String,
        #[serde(default)]
        event: Option<String>,
        #[serde(default)]
        id: Option<String>,
    }
    let (header, payload) = split_binary(frame).ok_or_else(|| {
        bad("a binary frame starts with a 4-byte big-endian header length, then the JSON header, then the payload".into())
    })?;
    let h: Header = serde_json::from_slice(header)
        .map_err(|e| bad(format!("invalid binary frame header: {}", cut(e))))?;
    if h.r#type != "publish" {
        return Err(bad(
            "binary frames from clients can only be of type \"publish\"".into(),
        ));
    }
    let id = h.id.clone();
    let event = (|| {
        Ok::<_, Error>(NewEvent {
            channel: Channel::new(&h.channel)?,
            name: match &h.event {
                Some(n) => EventName::new(n)?,
                None => EventName::message(),
            },
            payload: Payload::Binary(payload),
            idempotency_key: h.id.as_deref().map(MessageId::new).transpose()?,
        })
    })();
    event
        .map(|e| Inbound::Publish(e, id.clone()))
        .map_err(|error| Rejected { error, id })
}

/// A text frame from JSON bytes, without copying or re-validating them.
pub(crate) fn text_frame(json: Bytes) -> Message {
    Message::Frame(Frame::message(json, OpCode::Data(Data::Text), true))
}

fn json_frame<T: Serialize>(value: &T) -> Message {
    text_frame(json_bytes(value))
}

fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    // Serialising our own structs of strings and numbers cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// The frame carrying `event`: its canonical JSON object in a text frame, or for a binary
/// payload a binary frame (header length, JSON header without `data`, raw payload). Both are
/// encoded once per event and shared by every connection.
pub(crate) fn event_frame(event: &Event) -> Message {
    match event_payload(event) {
        (Data::Text, json) => text_frame(json.clone()),
        (_, bytes) => Message::Binary(bytes.clone()),
    }
}

/// The kind and payload of the frame carrying `event` (see [`event_frame`]).
pub(crate) fn event_payload(event: &Event) -> (Data, &Bytes) {
    match event.payload() {
        Payload::Text(_) => (Data::Text, event.json()),
        Payload::Binary(payload) => {
            let bytes = event.encoded(rt_core::Wire::WsBinary, |e| {
                #[derive(Serialize)]
                struct Header<'a> {
                    r#type: &'static str,
                    channel: &'a Channel,
                    offset: u64,
                    epoch: String,
                    event: &'a EventName,
                    time: u64,
                }
                let header = serde_json::to_vec(&Header {
                    r#type: "event",
                    channel: e.channel(),
                    offset: e.offset(),
                    epoch: e.epoch().to_string(),
                    event: e.name(),
                    time: e.time_ms(),
                })
                .unwrap_or_default();
                let mut out = BytesMut::with_capacity(4 + header.len() + payload.len());
                out.put_u32(header.len() as u32);
                out.put_slice(&header);
                out.put_slice(payload);
                out.freeze()
            });
            (Data::Binary, bytes)
        }
    }
}

/// `{"type":"subscribed","channels":[..],"recovered":false,"resynced":[..],"cursor":".."}`
pub(crate) fn subscribed(
    channels: &[Channel],
    joined: &rt_core::Joined,
    cursor: &Cursor,
) -> Message {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        channels: &'a [Channel],
        recovered: bool,
        resynced: &'a [Channel],
        cursor: String,
    }
    json_frame(&M {
        r#type: "subscribed",
        channels,
        recovered: joined.recovered(),
        resynced: &joined.resynced,
        cursor: cursor.to_string(),
    })
}

/// `{"type":"authenticated","subject":"..","dropped":[..],"cursor":"..","data":..}`; without
/// `cursor` when the connection holds no channel (there is no position to resume from), and
/// without `data` when the connect hook showed none.
pub(crate) fn authenticated(
    subject: Option<&str>,
    dropped: &[Channel],
    cursor: Option<&Cursor>,
    data: Option<&serde_json::Value>,
) -> Message {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        subject: Option<&'a str>,
        dropped: &'a [Channel],
        #[serde(skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a serde_json::Value>,
    }
    json_frame(&M {
        r#type: "authenticated",
        subject,
        dropped,
        cursor: cursor.map(Cursor::to_string),
        data,
    })
}

/// `{"type":"connected","subject":"..","data":..}`: the first message of a connection whose
/// connect hook shows the client `data`.
pub(crate) fn connected(subject: Option<&str>, data: &serde_json::Value) -> Message {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        subject: Option<&'a str>,
        data: &'a serde_json::Value,
    }
    json_frame(&M {
        r#type: "connected",
        subject,
        data,
    })
}

/// `{"type":"unsubscribed","channels":[..],"cursor":".."}`, and `resync` with the same fields.
pub(crate) fn channels_message(
    kind: &'static str,
    channels: &[Channel],
    cursor: &Cursor,
) -> Message {
    text_frame(channels_json(kind, channels, cursor))
}

/// The JSON of [`channels_message`].
pub(crate) fn channels_json(kind: &'static str, channels: &[Channel], cursor: &Cursor) -> Bytes {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        channels: &'a [Channel],
        cursor: String,
    }
    json_bytes(&M {
        r#type: kind,
        channels,
        cursor: cursor.to_string(),
    })
}

/// `{"type":"unsubscribed","channels":[..],"cursor":"..","server":true}`: the application took
/// `channel` out of the connection (the answer to the client's own `unsubscribe` has no
/// `server`).
pub(crate) fn unsubscribed_by_server(channel: &Channel, cursor: &Cursor) -> Message {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        channels: [&'a Channel; 1],
        cursor: String,
        server: bool,
    }
    json_frame(&M {
        r#type: "unsubscribed",
        channels: [channel],
        cursor: cursor.to_string(),
        server: true,
    })
}

/// `{"type":"presence","channel":"..","joins":[..],"leaves":[..]}`: connections joined or
/// left a presence channel of this connection.
pub(crate) fn presence(changes: &rt_core::Changes) -> Message {
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        #[serde(flatten)]
        changes: &'a rt_core::Changes,
    }
    json_frame(&M {
        r#type: "presence",
        changes,
    })
}

/// `{"type":"error","code":"..","message":"..","id":".."}`
pub(crate) fn error(code: &'static str, message: &str, id: Option<&str>) -> Message {
    rt_http::count_error(code);
    #[derive(Serialize)]
    struct M<'a> {
        r#type: &'static str,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    }
    json_frame(&M {
        r#type: "error",
        code,
        message,
        id,
    })
}

/// The answer to a publish.
pub(crate) fn published(ack: &rt_core::PublishAck) -> Message {
    json_frame(ack)
}

/// `{"type":"pong","id":..,"time":..}`
pub(crate) fn pong(id: Option<serde_json::Value>) -> Message {
    #[derive(Serialize)]
    struct M {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
        time: u64,
    }
    json_frame(&M {
        r#type: "pong",
        id,
        time: rt_core::now_ms(),
    })
}

/// `{"type":"heartbeat","time":..}`
pub(crate) fn heartbeat() -> Message {
    #[derive(Serialize)]
    struct M {
        r#type: &'static str,
        time: u64,
    }
    json_frame(&M {
        r#type: "heartbeat",
        time: rt_core::now_ms(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_client_message() {
        let m = parse_text(
            br#"{"type":"subscribe","channels":["a","b"],"cursor":"earliest","acks":true}"#,
        )
        .unwrap();
        assert!(
            matches!(m, Inbound::Subscribe { ref channels, ref cursor, acks: true } if channels.len() == 2 && cursor.as_deref() == Some("earliest"))
        );
        let m = parse_text(br#"{"type":"publish","channel":"a","data":"x","id":"m1"}"#).unwrap();
        assert!(matches!(m, Inbound::Publish(_, Some(ref id)) if id == "m1"));
        let m = parse_text(br#"{"type":"ack","channel":"a","offset":3}"#).unwrap();
        assert!(matches!(m, Inbound::Ack { offset: 3, .. }));
        assert!(matches!(
            parse_text(br#"{"type":"ping","id":7}"#).unwrap(),
            Inbound::Ping { id: Some(_) }
        ));
        assert!(matches!(
            parse_text(br#"{"type":"unsubscribe","channels":["a"]}"#).unwrap(),
            Inbound::Unsubscribe { .. }
        ));
    }

    #[test]
    fn bad_messages_are_errors_with_codes() {
        let code = |t: &[u8]| parse_text(t).unwrap_err().error.code();
        assert_eq!(code(b"{nope"), "bad_request");
        assert_eq!(code(b"[]"), "bad_request");
        assert_eq!(code(br#"{"type":"dance"}"#), "bad_request");
        assert_eq!(
            code(br#"{"type":"subscribe","channels":[]}"#),
            "no_channels"
        );
        assert_eq!(
            code(br#"{"type":"subscribe","channels":["a b"]}"#),
            "invalid_channel"
        );
        assert_eq!(
            code(br#"{"type":"ack","channel":"a","offset":-1}"#),
            "bad_request"
        );
        let r =
            parse_text(br#"{"type":"publish","channel":"a b","data":"x","id":"m9"}"#).unwrap_err();
        assert_eq!(
            (r.error.code(), r.id.as_deref()),
            ("invalid_channel", Some("m9"))
        );
    }

    fn payload(m: &Message) -> Bytes {
        match m {
            Message::Frame(f) => Bytes::copy_from_slice(f.payload()),
            Message::Binary(b) => b.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn event_frames_are_encoded_once_and_shared() {
        let ev = |p| {
            Event::new(
                Channel::new("c").unwrap(),
                rt_core::Position {
                    epoch: rt_core::Epoch(0xab),
                    offset: 3,
                },
                EventName::message(),
                p,
                9,
            )
        };
        let text = ev(Payload::text("hi"));
        let (a, b) = (event_frame(&text), event_frame(&text));
        assert_eq!(payload(&a), text.json());
        match (&a, &b) {
            (Message::Frame(x), Message::Frame(y)) => {
                assert_eq!(
                    x.payload().as_ptr(),
                    y.payload().as_ptr(),
                    "one encoding, shared"
                )
            }
            other => panic!("{other:?}"),
        }
        let binary = ev(Payload::binary(vec![0u8, 255]));
        let (a, b) = (event_frame(&binary), event_frame(&binary));
        let (Message::Binary(x), Message::Binary(y)) = (&a, &b) else {
            panic!("{a:?}")
        };
        assert_eq!(x.as_ptr(), y.as_ptr(), "one encoding, shared");
        let (header, data) = split_binary(x).unwrap();
        let header: serde_json::Value = serde_json::from_slice(header).unwrap();
        assert_eq!(header["type"], "event");
        assert_eq!(header["offset"], 3);
        assert_eq!(header["epoch"], "ab");
        assert!(header.get("data").is_none());
        assert_eq!(&data[..], &[0, 255]);
    }

    #[test]
    fn binary_layout() {
        let header = br#"{"type":"publish","channel":"bin","id":"b1"}"#;
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(header);
        frame.extend_from_slice(&[0, 255, 7]);
        match parse_binary(&Bytes::from(frame)).unwrap() {
            Inbound::Publish(e, id) => {
                assert_eq!(e.payload, Payload::binary(vec![0u8, 255, 7]));
                assert_eq!(id.as_deref(), Some("b1"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [&b""[..], &[0, 0, 0, 9, b'{'][..], &[255, 255, 255, 255][..]] {
            assert_eq!(
                parse_binary(&Bytes::copy_from_slice(bad))
                    .unwrap_err()
                    .error
                    .code(),
                "bad_request"
            );
        }
    }
}
