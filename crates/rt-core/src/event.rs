//! Events and their positions in a channel's stream.

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

use crate::error::{excerpt, Error};
use crate::name::{Channel, EventName};

/// The incarnation of a backplane's history.
///
/// Offsets are only comparable within one epoch. It changes whenever history is lost (a restart
/// of the in-memory engine, a flushed Redis), so a cursor from an older epoch is recognised as
/// unrecoverable instead of being matched against unrelated offsets. Displayed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A fresh, unpredictable epoch (never zero).
    pub fn random() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // RandomState is seeded from the OS per process, so two nodes started at the same
        // instant still get different epochs.
        let v = std::collections::hash_map::RandomState::new().hash_one(nanos);
        Epoch(v.max(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl FromStr for Epoch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let valid = !s.is_empty()
            && s.len() <= 16
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match valid.then(|| u64::from_str_radix(s, 16)) {
            Some(Ok(v)) => Ok(Epoch(v)),
            _ => Err(Error::InvalidCursor(format!(
                "epoch {:?} is not 1 to 16 lowercase hex digits",
                excerpt(s)
            ))),
        }
    }
}

impl Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where an event sits: its channel's epoch and its offset.
///
/// Offsets start at 1 and grow by exactly one per event in a channel, so a subscriber that
/// saw offset `n` knows the next event is `n + 1` and can detect any gap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Position {
    /// The history incarnation the offset belongs to.
    pub epoch: Epoch,
    /// The event's offset within its channel.
    pub offset: u64,
}

/// An event's body: UTF-8 text or raw bytes, shared (never copied) by every subscriber.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// UTF-8 text. The bytes are guaranteed valid UTF-8.
    Text(Text),
    /// Arbitrary bytes.
    Binary(Bytes),
}

/// Bytes known to be valid UTF-8.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Text(Bytes);

impl Text {
    /// Checks `bytes` for UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Validated on construction; a failure here is impossible, and an empty string is the
        // harmless answer if it ever were.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes, shared.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }
}

impl Payload {
    /// A text payload.
    pub fn text(s: impl Into<Text>) -> Self {
        Payload::Text(s.into())
    }

    /// A binary payload.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Payload::Binary(b.into())
    }

    /// The raw bytes (UTF-8 for text).
    pub fn bytes(&self) -> &Bytes {
        match self {
            Payload::Text(t) => t.bytes(),
            Payload::Binary(b) => b,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a binary payload.
    pub fn is_binary(&self) -> bool {
        matches!(self, Payload::Binary(_))
    }

    /// The payload as it appears in a JSON `data` field: text as is, binary as standard base64
    /// (with `"encoding": "base64"` beside it).
    pub fn to_json_string(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Payload::Text(t) => t.as_str().into(),
            Payload::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        }
    }
}

/// The wire formats whose encoding of an event is cached on the event itself, so that one
/// publish is encoded once per format and not once per subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wire {
    /// The canonical JSON object ([`Event::json`]), used by WebSocket text frames and polling.
    Json,
    /// A WebSocket binary frame.
    WsBinary,
    /// The `event:`/`data:` lines of an SSE frame.
    Sse,
    /// The payload of the event's WebSocket frame compressed with permessage-deflate (RFC
    /// 7692) on its own, without context takeover: one compression per publish, shared by
    /// every connection that negotiated the extension without it.
    WsDeflate,
}

impl Wire {
    const COUNT: usize = 4;
}

/// One published event, immutable and shared by reference (`Arc<Event>`) with every subscriber.
pub struct Event {
    channel: Channel,
    position: Position,
    name: EventName,
    payload: Payload,
    time_ms: u64,
    encoded: [OnceLock<Bytes>; Wire::COUNT],
}

impl Event {
    /// Builds an event. Backplanes call this when they assign a position.
    pub fn new(
        channel: Channel,
        position: Position,
        name: EventName,
        payload: Payload,
        time_ms: u64,
    ) -> Self {
        Event {
            channel,
            position,
            name,
            payload,
            time_ms,
            encoded: Default::default(),
        }
    }

    /// The channel the event was published to.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The event's position.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Shorthand for `position().offset`.
    pub fn offset(&self) -> u64 {
        self.position.offset
    }

    /// Shorthand for `position().epoch`.
    pub fn epoch(&self) -> Epoch {
        self.position.epoch
    }

    /// The event name (`message` by default).
    pub fn name(&self) -> &EventName {
        &self.name
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Publish time in milliseconds since the Unix epoch, as stamped by the backplane.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// This event's encoding for `wire`, computed by `encode` on first use and shared by every
    /// later caller. Borrowed: a transport that copies it into its own buffer takes no
    /// reference (a shared count that every subscriber's core would write).
    pub fn encoded(&self, wire: Wire, encode: impl FnOnce(&Event) -> Bytes) -> &Bytes {
        self.encoded[wire as usize].get_or_init(|| encode(self))
    }

    /// The canonical JSON object of the event (see `docs/protocol.md`), encoded once:
    ///
    /// `{"type":"event","channel":"c","offset":7,"epoch":"9f2c","event":"message","data":"hi","time":1764115200123}`
    ///
    /// A binary payload is base64 in `data`, with `"encoding":"base64"`.
    pub fn json(&self) -> &Bytes {
        self.encoded(Wire::Json, |e| {
            #[derive(Serialize)]
            struct Json<'a> {
                r#type: &'static str,
                channel: &'a Channel,
                offset: u64,
                epoch: Epoch,
                event: &'a EventName,
                data: std::borrow::Cow<'a, str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                encoding: Option<&'static str>,
                time: u64,
            }
            let json = Json {
                r#type: "event",
                channel: &e.channel,
                offset: e.position.offset,
                epoch: e.position.epoch,
                event: &e.name,
                data: e.payload.to_json_string(),
                encoding: e.payload.is_binary().then_some("base64"),
                time: e.time_ms,
            };
            // Serialising plain strings and integers cannot fail.
            Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
        })
    }
}

/// Two events are the same event when they sit at the same position of the same channel.
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.channel == other.channel && self.position == other.position
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("channel", &self.channel)
            .field("position", &self.position)
            .field("name", &self.name)
            .field("payload_len", &self.payload.len())
            .field("time_ms", &self.time_ms)
            .finish()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(payload: Payload) -> Event {
        Event::new(
            Channel::new("c").unwrap(),
            Position {
                epoch: Epoch(0xab),
                offset: 7,
            },
            EventName::message(),
            payload,
            5,
        )
    }

    #[test]
    fn json_text_and_binary() {
        let e = ev(Payload::text("hi \"there\"\n"));
        let v: serde_json::Value = serde_json::from_slice(e.json()).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["channel"], "c");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["epoch"], "ab");
        assert_eq!(v["event"], "message");
        assert_eq!(v["data"], "hi \"there\"\n");
        assert_eq!(v["time"], 5);
        assert!(v.get("encoding").is_none());

        let e = ev(Payload::binary(vec![0u8, 255, 1]));
        let v: serde_json::Value = serde_json::from_slice(e.json()).unwrap();
        assert_eq!(v["data"], "AP8B");
        assert_eq!(v["encoding"], "base64");
    }

    #[test]
    fn encoding_is_cached_and_shared() {
        let e = ev(Payload::text("x"));
        let a = e.json();
        let b = e.json();
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "second call must reuse the first encoding"
        );
        let mut calls = 0;
        e.encoded(Wire::Sse, |_| {
            calls += 1;
            Bytes::from_static(b"s")
        });
        e.encoded(Wire::Sse, |_| {
            calls += 1;
            Bytes::from_static(b"t")
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn epoch_text() {
        assert_eq!(Epoch(255).to_string(), "ff");
        assert_eq!("ff".parse::<Epoch>().unwrap(), Epoch(255));
        for bad in ["", "FF", "xyz", "12345678901234567"] {
            assert!(bad.parse::<Epoch>().is_err(), "{bad}");
        }
        assert_ne!(Epoch::random(), Epoch::random());
    }
}
