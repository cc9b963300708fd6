//! The bytes on the wire: event blocks, control events, heartbeats.
//!
//! An event block has two parts: the `event:`/`data:` lines, which are the same for every
//! subscriber and cached on the event ([`Wire::Sse`]), and the `id:` line, which is the
//! connection's own cursor. Field order inside a block does not matter to an EventSource.
//! They are joined into one buffer, with every other delivery already queued, so that a
//! burst is one body frame: one HTTP/1.1 chunk, one HTTP/2 DATA frame (a client's h2 stack
//! may treat a stream of tiny DATA frames as a flood and close the connection).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rt_core::{Channel, Cursor, Event, Wire};
use serde::Serialize;

/// Suffix of the `event:` field of an event whose payload is binary, sent as base64.
pub const BINARY_SUFFIX: &str = ";base64";

/// Name of the control event that opens every stream.
pub const OPEN: &str = "rt.open";
/// Name of the control event that shows the client what the connect hook answered as `data`,
/// right after [`OPEN`]; it has no `id:`, so the cursor does not move.
pub const CONNECTED: &str = "rt.connected";
/// Name of the control event sent when continuity was lost on some channels.
pub const RESYNC: &str = "rt.resync";
/// Name of the last event of a stream ended by a server shutdown.
pub const SHUTDOWN: &str = "rt.shutdown";
/// Name of the last event of a stream whose token expired.
pub const EXPIRED: &str = "rt.expired";
/// Name of the control event sent when the application took a channel out of the stream.
pub const UNSUBSCRIBED: &str = "rt.unsubscribed";
/// Name of the last event of a stream ended by the application (the server API's
/// `POST /api/disconnect`).
pub const DISCONNECT: &str = "rt.disconnect";
/// Name of the control event that carries joins and leaves of a presence channel.
pub const PRESENCE: &str = "rt.presence";

/// The heartbeat comment.
pub(crate) const PING: &[u8] = b": ping\n\n";

/// The shared part of `event`'s block: `event:` (when not `message`) and `data:` lines, then
/// the blank line that dispatches it. Encoded once per event, whatever the subscriber count.
pub(crate) fn event_lines(event: &Event) -> &Bytes {
    event.encoded(Wire::Sse, |e| {
        let payload = e.payload();
        let data = payload.to_json_string();
        let mut buf = Vec::with_capacity(data.len() + e.name().as_str().len() + 24);
        if payload.is_binary() || !e.name().is_message() {
            buf.extend_from_slice(b"event: ");
            buf.extend_from_slice(e.name().as_str().as_bytes());
            if payload.is_binary() {
                buf.extend_from_slice(BINARY_SUFFIX.as_bytes());
            }
            buf.push(b'\n');
        }
        data_lines(&mut buf, &data);
        buf.push(b'\n');
        Bytes::from(buf)
    })
}

/// The `id:` line of a connection after an event.
pub(crate) fn id_line(cursor: &Cursor) -> Bytes {
    Bytes::from(format!("id: {cursor}\n"))
}

/// Appends `event`'s whole block for a stream now at `cursor`: the `id:` line, then the
/// shared lines.
pub(crate) fn push_event_block(buf: &mut BytesMut, cursor: &Cursor, event: &Event) {
    use std::fmt::Write;
    // Borrowed: copied below, so the shared encoding's count is not touched.
    let lines = event_lines(event);
    buf.reserve(lines.len() + 64);
    // Writing to a `BytesMut` cannot fail.
    let _ = writeln!(buf, "id: {cursor}");
    buf.extend_from_slice(lines);
}

/// Appends `text` as `data:` lines. Every SSE line break (`\r\n`, `\r`, `\n`) starts a new
/// line, so no carriage return can leak into a field; an EventSource joins the lines with
/// `\n`. The space after the colon is always written so that a line starting with a space
/// keeps it (the parser removes exactly one).
fn data_lines(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' | b'\r' => {
                push_data(buf, &bytes[start..i]);
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_data(buf, &bytes[start..]);
}

fn push_data(buf: &mut Vec<u8>, line: &[u8]) {
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(line);
    buf.push(b'\n');
}

/// A control event: its name, JSON data, and optionally the cursor as `id:` and a `retry:`.
pub(crate) fn control(
    name: &str,
    data: &impl Serialize,
    id: Option<&Cursor>,
    retry: Option<Duration>,
) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    if let Some(retry) = retry {
        buf.extend_from_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
    }
    if let Some(cursor) = id {
        buf.extend_from_slice(&id_line(cursor));
    }
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    // JSON text never holds a raw line break, so it is one data line.
    let json = serde_json::to_string(data).unwrap_or_default();
    push_data(&mut buf, json.as_bytes());
    buf.push(b'\n');
    Bytes::from(buf)
}

/// Data of [`OPEN`].
#[derive(Serialize)]
pub(crate) struct Open<'a> {
    pub(crate) r#type: &'static str,
    pub(crate) cursor: String,
    pub(crate) channels: Vec<&'a Channel>,
}

/// Data of [`CONNECTED`].
#[derive(Serialize)]
pub(crate) struct Connected<'a> {
    pub(crate) r#type: &'static str,
    pub(crate) subject: Option<&'a str>,
    pub(crate) data: &'a serde_json::Value,
}

/// Data of [`RESYNC`] and [`UNSUBSCRIBED`].
#[derive(Serialize)]
pub(crate) struct Resync<'a> {
    pub(crate) r#type: &'static str,
    pub(crate) channels: &'a [Channel],
    pub(crate) cursor: String,
}

/// The last block of a stream ended by the server: [`SHUTDOWN`] or [`EXPIRED`],
/// with the cursor to resume from.
pub(crate) fn end(name: &'static str, cursor: &Cursor, retry: Option<Duration>) -> Bytes {
    let (r#type, message) = match name {
        EXPIRED => (
            "expired",
            "the token has expired; reconnect with a new token and Last-Event-ID to resume",
        ),
        _ => (
            "shutdown",
            "the server is shutting down; reconnect with Last-Event-ID to resume",
        ),
    };
    let body = End {
        r#type,
        message,
        cursor: cursor.to_string(),
    };
    control(name, &body, Some(cursor), retry)
}

/// The last block of a stream ended by the application: [`DISCONNECT`], saying whether the
/// client may come back, with the cursor to resume from if it does.
pub(crate) fn disconnect(cursor: &Cursor, reconnect: bool, reason: &str) -> Bytes {
    #[derive(Serialize)]
    struct Disconnect<'a> {
        r#type: &'static str,
        reconnect: bool,
        reason: &'a str,
        cursor: String,
    }
    let body = Disconnect {
        r#type: "disconnect",
        reconnect,
        reason,
        cursor: cursor.to_string(),
    };
    control(DISCONNECT, &body, Some(cursor), None)
}

#[derive(Serialize)]
struct End {
    r#type: &'static str,
    message: &'static str,
    cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rt_core::{Epoch, EventName, Payload, Position};

    fn event(name: &str, payload: Payload) -> Event {
        Event::new(
            Channel::new("c").unwrap(),
            Position {
                epoch: Epoch(1),
                offset: 1,
            },
            EventName::new(name).unwrap(),
            payload,
            0,
        )
    }

    fn text(name: &str, s: &'static str) -> String {
        String::from_utf8(event_lines(&event(name, Payload::text(s))).to_vec()).unwrap()
    }

    #[test]
    fn default_name_is_implicit_and_others_are_named() {
        assert_eq!(text("message", "hi"), "data: hi\n\n");
        assert_eq!(text("tick", "hi"), "event: tick\ndata: hi\n\n");
    }

    #[test]
    fn an_event_is_one_block_with_its_id_line_first() {
        let e = event("message", Payload::text("hi"));
        let mut cursor = Cursor::new(Epoch(1));
        cursor.advance(e.channel(), e.position());
        let mut block = BytesMut::new();
        push_event_block(&mut block, &cursor, &e);
        assert_eq!(block, [id_line(&cursor), event_lines(&e).clone()].concat());
        assert_eq!(&block[..], format!("id: {cursor}\ndata: hi\n\n").as_bytes());
        // The shared lines are encoded once per event, whatever the subscriber count.
        assert_eq!(event_lines(&e).as_ptr(), event_lines(&e).as_ptr());
    }

    #[test]
    fn every_line_break_starts_a_data_line() {
        assert_eq!(
            text("message", "a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(text("message", ""), "data: \n\n");
        assert_eq!(text("message", "\n"), "data: \ndata: \n\n");
        assert_eq!(text("message", "a\r\n"), "data: a\ndata: \n\n");
        assert_eq!(
            text("message", "\r\r\n\n"),
            "data: \ndata: \ndata: \ndata: \n\n"
        );
        assert_eq!(text("message", " lead"), "data:  lead\n\n");
    }

    #[test]
    fn binary_is_base64_with_a_marked_name() {
        let e = event("blob", Payload::binary(vec![0u8, 255, 10, 13]));
        assert_eq!(
            &event_lines(&e)[..],
            b"event: blob;base64\ndata: AP8KDQ==\n\n"
        );
        let e = event("message", Payload::binary(vec![1u8]));
        assert_eq!(
            &event_lines(&e)[..],
            b"event: message;base64\ndata: AQ==\n\n"
        );
    }

    #[test]
    fn control_events_carry_cursor_and_retry() {
        let mut cursor = Cursor::new(Epoch(0xab));
        cursor.set(Channel::new("a").unwrap(), 3);
        let b = end(SHUTDOWN, &cursor, Some(Duration::from_millis(1500)));
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "retry: 1500\nid: ab,a=3\nevent: rt.shutdown\ndata: {\"type\":\"shutdown\",\"message\":\"the server is shutting down; reconnect with Last-Event-ID to resume\",\"cursor\":\"ab,a=3\"}\n\n"
        );
    }
}
