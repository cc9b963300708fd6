//! The one encoding of an event in Redis, shared by history entries, pub/sub messages and
//! idempotency keys: `EPOCH OFFSET TIME KIND NAME CHANNEL\nPAYLOAD`.
//!
//! It is written by `script.lua` (so that Redis, not a node, stamps position and time) and
//! read here. Names and channels never contain spaces or newlines, and the payload is the raw
//! bytes after the first newline, so binary payloads need no escaping.

use std::sync::Arc;

use bytes::Bytes;
use rt_core::{Channel, Epoch, Event, EventName, Payload, Position, Text};

/// Kind marker of a text payload.
pub(crate) const TEXT: &str = "t";
/// Kind marker of a binary payload.
pub(crate) const BINARY: &str = "b";

/// The kind marker of `payload`.
pub(crate) fn kind(payload: &Payload) -> &'static str {
    if payload.is_binary() {
        BINARY
    } else {
        TEXT
    }
}

/// Decodes a message; `None` when it is not one (another program wrote under our prefix).
pub(crate) fn decode(msg: &[u8]) -> Option<Arc<Event>> {
    let split = msg.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&msg[..split]).ok()?;
    let body = Bytes::copy_from_slice(&msg[split + 1..]);
    let mut fields = header.split(' ');
    let epoch: Epoch = fields.next()?.parse().ok()?;
    let offset: u64 = fields.next()?.parse().ok()?;
    let time_ms: u64 = fields.next()?.parse().ok()?;
    let payload = match fields.next()? {
        TEXT => Payload::Text(Text::from_utf8(body).ok()?),
        BINARY => Payload::Binary(body),
        _ => return None,
    };
    let name = EventName::new(fields.next()?).ok()?;
    let channel = Channel::new(fields.next()?).ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some(Arc::new(Event::new(
        channel,
        Position { epoch, offset },
        name,
        payload,
        time_ms,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_and_binary() {
        let e = decode(b"ab 7 1700000000123 t price.update a:b\nhi\nthere").unwrap();
        assert_eq!(e.epoch(), Epoch(0xab));
        assert_eq!(e.offset(), 7);
        assert_eq!(e.time_ms(), 1_700_000_000_123);
        assert_eq!(e.name().as_str(), "price.update");
        assert_eq!(e.channel().as_str(), "a:b");
        assert_eq!(e.payload(), &Payload::text("hi\nthere"));

        let e = decode(b"1 1 0 b message c\n\x00\xff").unwrap();
        assert_eq!(e.payload(), &Payload::binary(vec![0u8, 255]));
        let e = decode(b"1 2 0 t message c\n").unwrap();
        assert!(e.payload().is_empty());
    }

    #[test]
    fn rejects_foreign_messages() {
        for bad in [
            &b""[..],
            b"no newline",
            b"1 1 0 t message\nx",
            b"1 1 0 t message c extra\nx",
            b"zz 1 0 t message c\nx",
            b"1 -1 0 t message c\nx",
            b"1 1 0 x message c\nx",
            b"1 1 0 t bad/name c\nx",
            b"1 1 0 t message c\n\xff",
        ] {
            assert!(decode(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
