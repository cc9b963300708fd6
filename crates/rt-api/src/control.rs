//! `POST /api/disconnect` and `POST /api/unsubscribe`: act on a subject's connections on
//! every node, through the backplane's [`Signal`]s.

use http::header::HeaderMap;
use http::{Response, StatusCode};
use rt_core::{Channel, Error, Hub, Signal};
use rt_http::{self as h, Body};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Bodies are small: a subject, a channel, a reason.
const BODY_LIMIT: usize = 4 * 1024;
/// Longest subject accepted (a token's `sub`).
const MAX_SUBJECT: usize = 256;
/// Longest reason: it must fit a WebSocket close frame.
const MAX_REASON: usize = 123;

/// `POST /api/disconnect`'s body, and its answer.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Disconnect {
    subject: String,
    #[serde(default = "yes")]
    reconnect: bool,
    #[serde(default = "default_reason")]
    reason: String,
}

fn yes() -> bool {
    true
}

fn default_reason() -> String {
    "disconnected by the server".into()
}

/// `POST /api/unsubscribe`'s body, and its answer.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Unsubscribe {
    subject: String,
    channel: String,
}

/// A request that becomes a signal about its subject.
pub(crate) trait Request: for<'de> Deserialize<'de> + Serialize {
    fn subject(&self) -> &str;

    /// The signal to send, or why the request is refused.
    fn signal(&self) -> Result<Signal, h::Error>;
}

/// Ends every connection of the subject, on every node: WebSocket closes 4000 (or 4001 with
/// `reconnect: false`), SSE streams end with `rt.disconnect`, held polls answer with
/// `disconnect`.
impl Request for Disconnect {
    fn subject(&self) -> &str {
        &self.subject
    }

    fn signal(&self) -> Result<Signal, h::Error> {
        if self.reason.len() > MAX_REASON {
            return Err(bad(format!(
                "reason is {} bytes; at most {MAX_REASON} fit a WebSocket close frame",
                self.reason.len()
            )));
        }
        Ok(Signal::Disconnect {
            subject: self.subject.clone(),
            reconnect: self.reconnect,
            reason: self.reason.clone(),
        })
    }
}

/// Takes the channel out of every subscription of the subject, on every node; each
/// transport tells the client (`unsubscribed`). The subject may subscribe again if its
/// token allows.
impl Request for Unsubscribe {
    fn subject(&self) -> &str {
        &self.subject
    }

    fn signal(&self) -> Result<Signal, h::Error> {
        Ok(Signal::Unsubscribe {
            subject: self.subject.clone(),
            channel: Channel::new(&self.channel)?,
        })
    }
}

/// Reads a `T` from the body, checks its subject and sends its signal to every node.
/// Answered `200` with the request as understood (defaults filled in) once the backplane took
/// the signal, which does not wait for any node to act on it.
pub(crate) async fn answer<T: Request, B>(
    hub: &Hub,
    config: &Config,
    headers: &HeaderMap,
    body: B,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = async {
        let request: T = read(config, headers, body).await?;
        check_subject(request.subject())?;
        hub.signal(request.signal()?).await?;
        Ok::<_, h::Error>(request)
    };
    match result.await {
        Ok(done) => h::json(StatusCode::OK, &done),
        Err(e) => e.to_response(),
    }
}

/// The JSON body, within the body limit and timeout.
async fn read<T, B>(config: &Config, headers: &HeaderMap, body: B) -> Result<T, h::Error>
where
    T: for<'de> Deserialize<'de>,
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = h::read_json_body(headers, body, BODY_LIMIT, config.body_timeout).await?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn check_subject(subject: &str) -> Result<(), h::Error> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT {
        return Err(bad(format!(
            "subject must be the token's `sub`, 1 to {MAX_SUBJECT} bytes, not {} bytes",
            subject.len()
        )));
    }
    Ok(())
}

fn bad(message: String) -> h::Error {
    h::Error::Core(Error::BadRequest(message))
}
