//! The JSON of hook calls and answers (docs/protocol.md, "Backend hooks").

use serde::{Deserialize, Serialize};

/// `POST` to the connect hook.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectCall<'a> {
    pub(crate) transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
}

/// `POST` to the subscribe hook.
#[derive(Debug, Serialize)]
pub(crate) struct SubscribeCall<'a> {
    pub(crate) transport: &'static str,
    pub(crate) subject: Option<&'a str>,
    pub(crate) meta: Option<&'a serde_json::Value>,
    pub(crate) channel: &'a str,
}

/// `POST` to the publish hook: the publish as the client sent it (`data` as text, or base64
/// with `"encoding": "base64"`).
#[derive(Debug, Serialize)]
pub(crate) struct PublishCall<'a> {
    pub(crate) transport: &'static str,
    pub(crate) subject: Option<&'a str>,
    pub(crate) meta: Option<&'a serde_json::Value>,
    pub(crate) channel: &'a str,
    pub(crate) event: &'a str,
    pub(crate) data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<&'static str>,
}

/// Every hook's answer: `{"allow": true, ...}` or `{"allow": false, "reason": "..."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Answer {
    pub(crate) allow: bool,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    /// Connect: who the client is.
    #[serde(default)]
    pub(crate) subject: Option<String>,
    /// Connect: the channel patterns it may subscribe to.
    #[serde(default)]
    pub(crate) subscribe: Vec<String>,
    /// Connect: the channel patterns it may publish on.
    #[serde(default)]
    pub(crate) publish: Vec<String>,
    /// Connect: when its permissions end, in seconds since the Unix epoch.
    #[serde(default)]
    pub(crate) expires_at: Option<u64>,
    /// Connect: data to attach to the connection, sent back with its later hook calls.
    #[serde(default)]
    pub(crate) meta: Option<serde_json::Value>,
    /// Connect: channels the connection is subscribed to by the server.
    #[serde(default)]
    pub(crate) channels: Vec<String>,
    /// Connect: data shown to the client. Publish: the payload to publish instead of the
    /// client's.
    #[serde(default)]
    pub(crate) data: Option<serde_json::Value>,
    /// Publish: `"base64"` when `data` is a binary payload in base64.
    #[serde(default)]
    pub(crate) encoding: Option<String>,
}
