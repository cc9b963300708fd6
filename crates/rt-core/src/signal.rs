//! Signals: messages between nodes that are not events.
//!
//! An application backend asks one node to end a user's connections, or to take a user off a
//! channel; that user may be connected to any node. The node sends a [`Signal`] through
//! [`Backplane::signal`](crate::Backplane::signal), and every node (the sender included)
//! receives it on its [`Sink::signal`](crate::Sink::signal). Each node also sends the joins and
//! leaves of its presence channels as signals ([`Signal::Presence`]). Unlike events, signals
//! are not stored, have no offsets and are not replayed: a node that is cut off from the
//! backplane while a signal is sent never sees it (best effort).

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::changes::Changes;
use crate::error::Error;
use crate::name::Channel;

/// A message to every node. Encoded as JSON on the wire ([`Signal::encode`]); a node that
/// meets a variant it does not know (sent by a newer node) ignores it.
///
/// # Examples
///
/// ```
/// use rt_core::Signal;
///
/// let s = Signal::Disconnect { subject: "user-1".into(), reconnect: false, reason: "banned".into() };
/// assert_eq!(Signal::decode(&s.encode()).unwrap(), s);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Signal {
    /// End every connection of `subject` (the token's `sub`).
    Disconnect {
        /// Whose connections end.
        subject: String,
        /// Whether the client may connect again (a logout or ban says no).
        reconnect: bool,
        /// Why, for the client and for logs.
        reason: String,
    },
    /// Take `channel` out of every subscription of `subject`.
    Unsubscribe {
        /// Whose subscriptions lose the channel.
        subject: String,
        /// The channel they lose.
        channel: Channel,
    },
    /// Joins and leaves of a presence channel on the sending node, for the local subscribers
    /// of that channel on every node.
    Presence(Changes),
}

impl Signal {
    /// The subject the signal is about, if it is about one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Signal::Disconnect { subject, .. } | Signal::Unsubscribe { subject, .. } => {
                Some(subject)
            }
            Signal::Presence(_) => None,
        }
    }

    /// The wire form: JSON, tagged by `type`.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing strings and booleans into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the wire form; [`Error::BadRequest`] for anything else, including a variant
    /// this node does not know.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("not a signal this node knows: {e}")))
    }
}

/// Every signal about a subject a node hears: made by
/// [`Hub::subject_signals`](crate::Hub::subject_signals).
#[derive(Debug)]
pub struct SubjectSignals {
    rx: broadcast::Receiver<Signal>,
}

impl SubjectSignals {
    pub(crate) fn new(rx: broadcast::Receiver<Signal>) -> Self {
        SubjectSignals { rx }
    }

    /// The next signal; `Err(n)` when this reader fell so far behind that `n` signals were
    /// dropped for it (it goes on with the oldest one still queued); `None` once the hub is
    /// gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Signal, u64>> {
        match self.rx.recv().await {
            Ok(signal) => Some(Ok(signal)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_tagged_json() {
        let s = Signal::Unsubscribe {
            subject: "u".into(),
            channel: Channel::new("chat").unwrap(),
        };
        assert_eq!(
            String::from_utf8(s.encode()).unwrap(),
            r#"{"type":"unsubscribe","subject":"u","channel":"chat"}"#
        );
        assert_eq!(Signal::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.subject(), Some("u"));
    }

    #[test]
    fn unknown_or_invalid_signals_are_errors() {
        for bad in [
            &br#"{"type":"join","subject":"u"}"#[..],
            br#"{"type":"unsubscribe","subject":"u","channel":"not ok"}"#,
            b"\xff",
        ] {
            assert_eq!(Signal::decode(bad).unwrap_err().code(), "bad_request");
        }
    }
}
