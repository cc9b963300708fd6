//! Server-Sent Events transport (docs/protocol.md, "Server-Sent Events").
//!
//! Each event's `id:` is the connection's whole cursor after it, so the event's channel and
//! offset are the one channel that moved since the previous cursor.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rt_core::{Channel, Cursor};
use serde::Deserialize;
use tokio::time::Instant;

use crate::driver::Conn;
use crate::error::Error;
use crate::event::{decode, Incoming, Transport};
use crate::http::query_url;

/// The suffix of the event name of a binary (base64) payload.
const BINARY_SUFFIX: &str = ";base64";

/// Runs one SSE stream until it ends; returns why.
pub(crate) async fn run(conn: &mut Conn<'_>) -> Error {
    match session(conn).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session(conn: &mut Conn<'_>) -> Result<Infallible, Error> {
    let config = conn.config();
    let (http, connect_timeout, heartbeat) = (
        config.http.clone(),
        config.connect_timeout,
        config.heartbeat,
    );
    let resume = conn.resume();
    let extra: &[(&str, &str)] = if resume.is_empty() {
        &[]
    } else {
        &[("lastEventId", &resume)]
    };
    let url = query_url(
        &config.endpoints.sse,
        conn.channels().iter().map(Channel::as_str),
        extra,
    );
    let req = crate::http::request(http::Method::GET, &url, conn.token())
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::Protocol(format!("cannot build the SSE request: {e}")))?;
    let deadline = Instant::now() + connect_timeout;
    let res = tokio::time::timeout_at(
        deadline,
        crate::http::send(&http, req, "SSE", Some(Transport::Sse)),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "SSE connect",
        after: connect_timeout,
    })??;
    let content_type = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Protocol(format!(
            "SSE answered with {content_type:?}, not text/event-stream"
        )));
    }
    let mut body = res.into_body();
    let mut parser = Parser::default();
    let mut stream = Stream {
        previous: resume.parse().ok(),
    };
    loop {
        let (limit, what) = if conn.is_open() {
            (heartbeat, "SSE (no ping: presumed dead)")
        } else {
            (
                deadline.saturating_duration_since(Instant::now()),
                "SSE open",
            )
        };
        let frame = match tokio::time::timeout(limit, body.frame()).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what,
                    after: if conn.is_open() {
                        heartbeat
                    } else {
                        connect_timeout
                    },
                })
            }
            Ok(None) => return Err(Error::Disconnected("the SSE stream ended".into())),
            Ok(Some(Err(e))) => {
                return Err(Error::Request {
                    url,
                    source: Box::new(e),
                })
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for block in parser.push(&data) {
            stream.block(conn, block).await?;
        }
    }
}

/// The connection's position before the next event.
struct Stream {
    previous: Option<Cursor>,
}

/// The `data` of `rt.*` control events.
#[derive(Debug, Default, Deserialize)]
struct Control {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    /// Of `rt.disconnect`.
    #[serde(default)]
    reconnect: Option<bool>,
    /// Of `rt.connected`: the connect hook's data.
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    reason: String,
}

impl Stream {
    async fn block(&mut self, conn: &mut Conn<'_>, block: Block) -> Result<(), Error> {
        if let Some(control) = block.event.strip_prefix("rt.") {
            return self.control(conn, control, &block).await;
        }
        let next: Cursor = block
            .id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                Error::Protocol(format!("an SSE event without a cursor id ({:?})", block.id))
            })?;
        let moved = identify(self.previous.as_ref(), &next, conn.known())?;
        self.previous = Some(next.clone());
        if let Some((channel, offset)) = moved {
            let (name, binary) = match block.event.strip_suffix(BINARY_SUFFIX) {
                Some(name) => (name.to_owned(), true),
                None => (block.event, false),
            };
            let event = Incoming {
                channel,
                epoch: next.epoch(),
                offset,
                name: Some(name),
                data: decode(block.data, binary)?,
                time: None,
            };
            conn.deliver(event).await?;
        }
        conn.adopt(&next);
        Ok(())
    }

    async fn control(
        &mut self,
        conn: &mut Conn<'_>,
        name: &str,
        block: &Block,
    ) -> Result<(), Error> {
        let body: Control = serde_json::from_str(&block.data).unwrap_or_default();
        let cursor: Option<Cursor> = body
            .cursor
            .as_deref()
            .or(block.id.as_deref())
            .and_then(|c| c.parse().ok());
        if let Some(c) = &cursor {
            self.previous = Some(c.clone());
        }
        match (name, cursor) {
            ("open", cursor) => {
                // Channels of the stream beyond the client's own: the server's connect hook
                // joined them.
                conn.joined(&body.channels);
                // Without an id (a stream from `earliest`) the cursor only places the next
                // events: the client resumes from `earliest` until it has seen one.
                if let (Some(c), Some(_)) = (cursor, &block.id) {
                    conn.position(&c, false).await?;
                }
                conn.open(true).await?;
            }
            ("connected", _) => {
                if let Some(data) = body.data {
                    conn.connected(data).await?;
                }
            }
            ("resync", cursor) => {
                if let Some(c) = cursor {
                    conn.position(&c, true).await?;
                }
                conn.resync(body.channels).await?;
            }
            ("expired", cursor) => {
                if let Some(c) = cursor {
                    conn.position(&c, false).await?;
                }
                return Err(Error::TokenRefused {
                    transport: Transport::Sse,
                    code: "token_expired".into(),
                });
            }
            ("unsubscribed", cursor) => {
                if let Some(c) = cursor {
                    conn.position(&c, false).await?;
                }
                conn.unsubscribed(body.channels).await?;
            }
            ("disconnect", cursor) => {
                if let Some(c) = cursor {
                    conn.position(&c, false).await?;
                }
                return Err(Error::ServerDisconnect {
                    transport: Transport::Sse,
                    reconnect: body.reconnect != Some(false),
                    reason: body.reason,
                });
            }
            // rt.lagged and rt.shutdown end the stream; the reconnect resumes from here.
            (_, Some(c)) => conn.position(&c, false).await?,
            (_, None) => {}
        }
        Ok(())
    }
}

/// The channel and offset of the event whose cursor is `next`. `previous` is the
/// connection's cursor before it (none at the start of a live stream); `known` is the
/// client's own cursor, used when the stream gave no reference in this epoch yet. Channels
/// a reference lacks count as offset 0.
fn identify(
    previous: Option<&Cursor>,
    next: &Cursor,
    known: Option<&Cursor>,
) -> Result<Option<(Channel, u64)>, Error> {
    let same_epoch = |c: &&Cursor| c.epoch() == next.epoch();
    let base = previous.filter(same_epoch).or(known.filter(same_epoch));
    let mut moved = None;
    for (channel, offset) in next.iter() {
        if base.and_then(|b| b.offset(channel)).unwrap_or(0) == offset {
            continue;
        }
        if let Some((first, _)) = &moved {
            return Err(Error::Protocol(format!(
                "cannot tell which channel an SSE event belongs to: both {first} and {channel} moved"
            )));
        }
        moved = Some((channel.clone(), offset));
    }
    Ok(moved)
}

/// One dispatched `text/event-stream` block.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    event: String,
    data: String,
    id: Option<String>,
}

/// The `text/event-stream` parser (WHATWG rules): `\r\n`, `\r` and `\n` end lines, a blank
/// line dispatches, `:` starts a comment, one space after the colon is dropped, and an `id`
/// containing NUL is ignored. Unlike `EventSource`, a block's id is its own (not carried to
/// the next block): rt puts one on every event.
#[derive(Debug, Default)]
struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    id: Option<String>,
}

impl Parser {
    fn push(&mut self, chunk: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                b'\n' => self.end_line(&mut out),
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<Block>) {
        let bytes = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&bytes);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let id = self.id.take();
            let mut data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return;
            }
            data.pop();
            out.push(Block {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
                id,
            });
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_blocks_across_chunks_and_line_endings() {
        let mut p = Parser::default();
        let mut got = p.push(b"retry: 3000\r\n: ping\r\nid: 1,a=1\r\nevent: tick\r");
        got.extend(p.push(b"\ndata: x\r\ndata:y\r\n\r\ndata: z\n"));
        got.extend(p.push(b"\nid\n\n"));
        assert_eq!(
            got,
            vec![
                Block {
                    event: "tick".into(),
                    data: "x\ny".into(),
                    id: Some("1,a=1".into())
                },
                Block {
                    event: "message".into(),
                    data: "z".into(),
                    id: None
                },
            ]
        );
    }

    #[test]
    fn the_channel_that_moved_is_the_events() {
        let c = |s: &str| s.parse::<Cursor>().unwrap();
        let prev = c("1,a=3,b=7");
        let moved = identify(Some(&prev), &c("1,a=3,b=8"), None)
            .unwrap()
            .unwrap();
        assert_eq!((moved.0.as_str(), moved.1), ("b", 8));
        // A live stream's first event: a channel never seen counts from 0.
        let moved = identify(None, &c("1,a=1,b=0"), None).unwrap().unwrap();
        assert_eq!((moved.0.as_str(), moved.1), ("a", 1));
        // Another epoch: placed against what the client knows of that epoch.
        let moved = identify(Some(&prev), &c("2,a=5,b=2"), Some(&c("2,a=5,b=1")))
            .unwrap()
            .unwrap();
        assert_eq!((moved.0.as_str(), moved.1), ("b", 2));
        assert!(identify(Some(&prev), &c("1,a=4,b=8"), None).is_err());
        assert!(identify(Some(&prev), &prev, None).unwrap().is_none());
    }
}
