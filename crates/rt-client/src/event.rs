//! What a subscription hands out, what a publish sends, and the wire shapes behind them.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use rt_core::{Channel, Epoch};
use serde::Deserialize;

use crate::error::Error;

/// A way to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// WebSocket at `/ws`, subprotocol `rt.v1`: events, publishes and acks on one socket.
    Ws,
    /// Server-Sent Events at `/sse`.
    Sse,
    /// Long polling at `/poll`.
    Poll,
    /// Short polling at `/poll` (`timeout=0`, every [`Client::poll_interval`]): for clients
    /// that must not hold a request open. Not among the defaults.
    ///
    /// [`Client::poll_interval`]: crate::Client::poll_interval
    ShortPoll,
}

impl Transport {
    /// The default transports, best first: the default order of fallback.
    pub const ALL: [Transport; 3] = [Transport::Ws, Transport::Sse, Transport::Poll];
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::ShortPoll => "short-poll",
        })
    }
}

/// A payload: text, or bytes (published as binary; decoded from base64 whatever the
/// transport carried it as).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// A text payload.
    Text(String),
    /// A binary payload.
    Binary(Bytes),
}

impl Data {
    /// The payload's bytes (a text's UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(s) => s.as_bytes(),
            Data::Binary(b) => b,
        }
    }

    /// The text, for a text payload.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) => Some(s),
            Data::Binary(_) => None,
        }
    }
}

/// One event, handed out once per `(channel, offset)`, in offset order per channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The channel.
    pub channel: Channel,
    /// Its position in the channel: one more than the previous event's.
    pub offset: u64,
    /// The history incarnation the offset belongs to.
    pub epoch: Epoch,
    /// The event name (`message` unless the publisher named it).
    pub name: String,
    /// The payload.
    pub data: Data,
    /// Publish time in milliseconds since the Unix epoch (WebSocket and polling; SSE does
    /// not carry it).
    pub time: Option<u64>,
    /// The transport it came over.
    pub transport: Transport,
}

/// What a [`Subscription`](crate::Subscription) yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum Update {
    /// A new event.
    Event(Event),
    /// The server took `channels` out of the subscription for the application
    /// (`POST /api/unsubscribe`): nothing more of them comes, and reconnects leave them out.
    Unsubscribed {
        /// The channels taken out.
        channels: Vec<Channel>,
        /// The transport that told.
        transport: Transport,
    },
    /// The server ended the subscription for the application with `reconnect: false`
    /// (`POST /api/disconnect`): this is the last update; the stream ends after it.
    Disconnected {
        /// The transport it came over.
        transport: Transport,
        /// The application's reason.
        reason: String,
    },
    /// Continuity was lost on `channels` (the server's history no longer covers the gap, or
    /// its epoch changed): events were missed there, reload their state. They go on live.
    Resync {
        /// The channels that skipped events.
        channels: Vec<Channel>,
        /// The transport that told.
        transport: Transport,
    },
    /// What the server's connect hook (`--proxy-connect`) shows the client as its `data`:
    /// right after the [`Update::Open`] of a connection it answered some for.
    Connected {
        /// The application's data, any JSON.
        data: serde_json::Value,
        /// The transport it came over.
        transport: Transport,
    },
    /// A connection is open (the first, or one replacing a lost one).
    Open {
        /// Its transport.
        transport: Transport,
        /// `false` when the server could not replay everything after the cursor (a
        /// [`Update::Resync`] names the channels).
        recovered: bool,
    },
    /// An attempt over `transport` failed, or its connection ended; the next attempt comes
    /// after `retry_in` (zero when falling back to the next transport, or retrying with a
    /// fresh token).
    Retrying {
        /// The transport that failed.
        transport: Transport,
        /// Why.
        error: Error,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
}

/// A message to publish.
///
/// # Examples
///
/// ```
/// use rt_client::Message;
///
/// let m = Message::text("chat", "hi").event("said").id("m-1");
/// # let _ = m;
/// ```
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) channel: String,
    pub(crate) event: Option<String>,
    pub(crate) data: Data,
    pub(crate) id: Option<String>,
}

impl Message {
    /// A text message on `channel`.
    pub fn text(channel: impl Into<String>, data: impl Into<String>) -> Self {
        Message {
            channel: channel.into(),
            event: None,
            data: Data::Text(data.into()),
            id: None,
        }
    }

    /// A binary message on `channel` (sent as base64; subscribers get the bytes back).
    pub fn binary(channel: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Message {
            channel: channel.into(),
            event: None,
            data: Data::Binary(data.into()),
            id: None,
        }
    }

    /// Names the event (default `message`).
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Sets the client message id that makes retries idempotent. Without one, a random id is
    /// generated per [`publish`](crate::Subscription::publish) call.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The publish JSON (docs/protocol.md, "Publishing") with client message id `id`.
    pub(crate) fn body(&self, id: &str) -> serde_json::Value {
        let mut body = serde_json::json!({ "channel": self.channel, "id": id });
        match &self.data {
            Data::Text(s) => body["data"] = s.as_str().into(),
            Data::Binary(b) => {
                body["data"] = base64::engine::general_purpose::STANDARD.encode(b).into();
                body["encoding"] = "base64".into();
            }
        }
        if let Some(event) = &self.event {
            body["event"] = event.as_str().into();
        }
        body
    }
}

/// The server's acknowledgement of a publish: the event is stored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PublishAck {
    /// The client message id.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// The event's offset.
    pub offset: u64,
    /// The event's epoch, lowercase hex.
    pub epoch: String,
    /// `true` when a retry found the message already stored (same id, within the server's
    /// idempotency window): published once all the same.
    #[serde(default)]
    pub duplicate: bool,
}

/// The event object of WebSocket text frames and poll answers, and the header of WebSocket
/// binary frames (without `data`).
#[derive(Debug, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) channel: String,
    pub(crate) offset: u64,
    pub(crate) epoch: String,
    #[serde(default)]
    pub(crate) event: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<String>,
    #[serde(default)]
    pub(crate) encoding: Option<String>,
    #[serde(default)]
    pub(crate) time: Option<u64>,
}

/// An event read off the wire, validated: its channel and epoch parsed, its payload decoded.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) channel: Channel,
    pub(crate) epoch: Epoch,
    pub(crate) offset: u64,
    pub(crate) name: Option<String>,
    pub(crate) data: Data,
    pub(crate) time: Option<u64>,
}

impl Incoming {
    /// `wire` with `binary` as its payload when it came in a binary frame.
    pub(crate) fn from_wire(wire: WireEvent, binary: Option<Bytes>) -> Result<Incoming, Error> {
        let channel = Channel::new(&wire.channel)
            .map_err(|e| Error::Protocol(format!("event with a bad channel: {e}")))?;
        let epoch = wire
            .epoch
            .parse()
            .map_err(|e| Error::Protocol(format!("event with a bad epoch: {e}")))?;
        let data = match (binary, wire.data) {
            (Some(bytes), _) => Data::Binary(bytes),
            (None, data) => decode(
                data.unwrap_or_default(),
                wire.encoding.as_deref() == Some("base64"),
            )?,
        };
        Ok(Incoming {
            channel,
            epoch,
            offset: wire.offset,
            name: wire.event,
            data,
            time: wire.time,
        })
    }

    pub(crate) fn into_event(self, transport: Transport) -> Event {
        Event {
            channel: self.channel,
            offset: self.offset,
            epoch: self.epoch,
            name: self.name.unwrap_or_else(|| "message".to_owned()),
            data: self.data,
            time: self.time,
            transport,
        }
    }
}

/// A payload that is text, or base64 of binary when `base64`.
pub(crate) fn decode(data: String, base64: bool) -> Result<Data, Error> {
    if !base64 {
        return Ok(Data::Text(data));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map(|b| Data::Binary(b.into()))
        .map_err(|e| Error::Protocol(format!("a binary payload that is not base64: {e}")))
}
