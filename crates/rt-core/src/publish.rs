//! The JSON shape of a publish, shared by the HTTP API, WebSocket and polling clients.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::backplane::{MessageId, NewEvent, Published};
use crate::error::Error;
use crate::event::{Epoch, Payload};
use crate::name::{Channel, EventName};

/// A publish as clients send it:
/// `{"channel": "chat", "event": "message", "data": "hi", "encoding": "base64", "id": "m-1"}`.
///
/// `data` may be a string (sent as is) or any other JSON value (sent as its JSON text).
/// With `"encoding": "base64"` the string is decoded to a binary payload. `id` is the
/// client message id that makes retries idempotent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PublishRequest {
    /// Target channel.
    pub channel: String,
    /// Event name (default `message`).
    #[serde(default)]
    pub event: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
    /// `"base64"` for a binary payload.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Client message id (idempotency key).
    #[serde(default)]
    pub id: Option<String>,
}

impl PublishRequest {
    /// Parses a JSON body.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))
    }

    /// Validates every field and builds the event to publish.
    pub fn into_new_event(self) -> Result<NewEvent, Error> {
        let channel = Channel::new(&self.channel)?;
        let name = match &self.event {
            Some(n) => EventName::new(n)?,
            None => EventName::message(),
        };
        let payload = match (self.encoding.as_deref(), self.data) {
            (None, serde_json::Value::String(s)) => Payload::text(s),
            (None, other) => Payload::text(other.to_string()),
            (Some("base64"), serde_json::Value::String(s)) => Payload::binary(
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| Error::BadRequest(format!("data is not valid base64: {e}")))?,
            ),
            (Some("base64"), _) => {
                return Err(Error::BadRequest(
                    "with encoding base64, data must be a string".into(),
                ))
            }
            (Some(other), _) => {
                return Err(Error::BadRequest(format!(
                    "unknown encoding {:?}; use \"base64\" or leave it out",
                    crate::error::excerpt(other)
                )))
            }
        };
        let idempotency_key = self.id.as_deref().map(MessageId::new).transpose()?;
        Ok(NewEvent {
            channel,
            name,
            payload,
            idempotency_key,
        })
    }
}

/// The answer to a publish: where the event was stored.
///
/// `{"type":"published","id":"m-1","channel":"chat","offset":42,"epoch":"9f2c","duplicate":false}`
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublishAck {
    /// Always `published`.
    pub r#type: &'static str,
    /// The client message id, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The channel.
    pub channel: Channel,
    /// The assigned offset.
    pub offset: u64,
    /// The epoch of the offset.
    pub epoch: Epoch,
    /// True when this was a retry of an already published message.
    pub duplicate: bool,
}

impl PublishAck {
    /// The ack for `published`, echoing the client's message id.
    pub fn new(published: &Published, id: Option<String>) -> Self {
        PublishAck {
            r#type: "published",
            id,
            channel: published.event.channel().clone(),
            offset: published.event.offset(),
            epoch: published.event.epoch(),
            duplicate: published.duplicate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let r = PublishRequest::from_json(br#"{"channel":"c","data":"hi","id":"m1"}"#).unwrap();
        let e = r.into_new_event().unwrap();
        assert_eq!(e.payload, Payload::text("hi"));
        assert_eq!(e.idempotency_key.unwrap().as_str(), "m1");

        let r = PublishRequest::from_json(br#"{"channel":"c","data":{"a":[1,2]}}"#).unwrap();
        assert_eq!(
            r.into_new_event().unwrap().payload,
            Payload::text(r#"{"a":[1,2]}"#)
        );

        let r = PublishRequest::from_json(
            br#"{"channel":"c","data":"AP8=","encoding":"base64","event":"bin"}"#,
        )
        .unwrap();
        let e = r.into_new_event().unwrap();
        assert_eq!(e.payload, Payload::binary(vec![0u8, 255]));
        assert_eq!(e.name.as_str(), "bin");
    }

    #[test]
    fn errors() {
        assert_eq!(
            PublishRequest::from_json(b"{nope").unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(
            PublishRequest::from_json(br#"{"channel":"c"}"#)
                .unwrap_err()
                .code(),
            "bad_request"
        );
        let bad = |j: &str| {
            PublishRequest::from_json(j.as_bytes())
                .unwrap()
                .into_new_event()
                .unwrap_err()
                .code()
        };
        assert_eq!(bad(r#"{"channel":"a b","data":"x"}"#), "invalid_channel");
        assert_eq!(
            bad(r#"{"channel":"c","event":"a b","data":"x"}"#),
            "invalid_event_name"
        );
        assert_eq!(
            bad(r#"{"channel":"c","data":"!!","encoding":"base64"}"#),
            "bad_request"
        );
        assert_eq!(
            bad(r#"{"channel":"c","data":"x","encoding":"hex"}"#),
            "bad_request"
        );
        assert_eq!(
            bad(r#"{"channel":"c","data":"x","id":""}"#),
            "invalid_message_id"
        );
    }
}
