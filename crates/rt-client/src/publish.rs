//! Idempotent publishing: one client message id per message, sent over the subscription's
//! open WebSocket when there is one and over HTTP otherwise, again and again with the same id
//! until the server acknowledges. The server's idempotency window turns the retries into an
//! exactly-once effect (docs/delivery.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::{Attempts, Backoff};
use crate::client::{Config, TokenRequest};
use crate::error::Error;
use crate::event::{Message, PublishAck, Transport};

/// HTTP publish answers that retrying cannot change. (A 404 can while a WebSocket may come
/// back: the HTTP publish route may be disabled; see [`http_publish`].)
const PERMANENT: [u16; 7] = [400, 401, 403, 405, 413, 415, 422];

/// Publish refusals over the WebSocket that are worth retrying.
const TRANSIENT: [&str; 2] = ["unavailable", "rate_limited"];

/// The largest acknowledgement read.
const ACK_LIMIT: usize = 64 * 1024;

/// The server's answer to a WebSocket publish.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Ack(PublishAck),
    Refused { code: String, message: String },
}

type Waiters = HashMap<String, Vec<oneshot::Sender<Answer>>>;

/// The open WebSocket of a subscription, through which its publishes go, and the publishes
/// waiting for their answer on it.
#[derive(Debug, Default)]
pub(crate) struct Link {
    socket: Mutex<Option<mpsc::UnboundedSender<String>>>,
    waiters: Mutex<Waiters>,
}

impl Link {
    /// The WebSocket is open: publishes go through `socket` from now on.
    pub(crate) fn attach(&self, socket: mpsc::UnboundedSender<String>) {
        *lock(&self.socket) = Some(socket);
    }

    /// The WebSocket is gone: waiting publishes are told at once (their answer may never
    /// come) and are sent again over whatever works now.
    pub(crate) fn detach(&self) {
        *lock(&self.socket) = None;
        lock(&self.waiters).clear();
    }

    /// Hands the server's answer for message `id` to whoever waits for it.
    pub(crate) fn answer(&self, id: &str, answer: Answer) {
        for waiter in lock(&self.waiters).remove(id).unwrap_or_default() {
            let _ = waiter.send(answer.clone());
        }
    }

    /// Sends `frame` (the publish of message `id`) and returns where its answer will come;
    /// `None` when no WebSocket is open.
    fn send(&self, id: &str, frame: String) -> Option<oneshot::Receiver<Answer>> {
        let socket = lock(&self.socket).clone()?;
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters)
            .entry(id.to_owned())
            .or_default()
            .push(tx);
        if socket.send(frame).is_err() {
            self.forget(id);
            return None;
        }
        Some(rx)
    }

    fn forget(&self, id: &str) {
        lock(&self.waiters).remove(id);
    }
}

/// A poisoned lock only means another publish panicked; the map itself is still sound.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client message id: 128 random bits.
fn message_id() -> String {
    format!("m-{:032x}", fastrand::u128(..))
}

/// Why an attempt failed, and so when to try again.
enum Failure {
    /// At once (the connection that carried it went away, or its ack is late).
    Now(Error),
    /// After a backoff (the server is unavailable, the network failed).
    Later(Error),
    /// Never: retrying cannot change the answer.
    Never(Error),
}

/// Publishes `message` over `link` when it has an open WebSocket, else over HTTP, retrying
/// with the same id until acknowledged or `config.publish_timeout` passes.
pub(crate) async fn publish(
    config: &Config,
    link: Option<&Link>,
    message: Message,
) -> Result<PublishAck, Error> {
    let id = message.id.clone().unwrap_or_else(message_id);
    let body = message.body(&id);
    let deadline = Instant::now() + config.publish_timeout;
    let mut attempts = Attempts::new(Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(5),
    ));
    let timed_out = |last: String| Error::PublishTimeout {
        id: id.clone(),
        after: config.publish_timeout,
        last,
    };
    let mut last = String::from("no attempt finished");
    loop {
        let failure =
            match tokio::time::timeout_at(deadline, attempt(config, link, &id, &body)).await {
                Err(_) => return Err(timed_out(last)),
                Ok(Ok(ack)) => return Ok(ack),
                Ok(Err(failure)) => failure,
            };
        let delay = match failure {
            Failure::Never(e) => return Err(e),
            Failure::Now(e) => {
                last = e.to_string();
                Duration::ZERO
            }
            Failure::Later(e) => {
                last = e.to_string();
                attempts.next_delay()
            }
        };
        if Instant::now() + delay >= deadline {
            return Err(timed_out(last));
        }
        tokio::time::sleep(delay).await;
    }
}

async fn attempt(
    config: &Config,
    link: Option<&Link>,
    id: &str,
    body: &serde_json::Value,
) -> Result<PublishAck, Failure> {
    if let Some(link) = link {
        let mut frame = body.clone();
        frame["type"] = "publish".into();
        if let Some(answer) = link.send(id, frame.to_string()) {
            return match tokio::time::timeout(config.ack_timeout, answer).await {
                Ok(Ok(Answer::Ack(ack))) => Ok(ack),
                Ok(Ok(Answer::Refused { code, message })) => {
                    let transient = TRANSIENT.contains(&code.as_str());
                    let e = Error::PublishRefused {
                        id: id.to_owned(),
                        code,
                        message,
                    };
                    Err(if transient {
                        Failure::Later(e)
                    } else {
                        Failure::Never(e)
                    })
                }
                Ok(Err(_)) => Err(Failure::Now(Error::Disconnected(
                    "the WebSocket closed before the publish was acknowledged".into(),
                ))),
                Err(_) => {
                    link.forget(id);
                    Err(Failure::Now(Error::Timeout {
                        what: "publish acknowledgement",
                        after: config.ack_timeout,
                    }))
                }
            };
        }
    }
    let ws_may_return = link.is_some() && config.transports.contains(&Transport::Ws);
    http_publish(config, body, ws_may_return).await
}

/// One HTTP publish: `/api/publish` with the API key, or `/poll/publish` as a client.
async fn http_publish(
    config: &Config,
    body: &serde_json::Value,
    ws_may_return: bool,
) -> Result<PublishAck, Failure> {
    let (url, token) = match &config.api_key {
        Some(_) => (&config.endpoints.api_publish, None),
        None => (
            &config.endpoints.client_publish,
            config
                .token(TokenRequest {
                    refresh: false,
                    reason: None,
                })
                .await
                .map_err(Failure::Later)?,
        ),
    };
    let mut req = crate::http::request(http::Method::POST, url, token.as_deref())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &config.api_key {
        req = req.header("x-api-key", key);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| Failure::Never(Error::Protocol(format!("cannot build the publish: {e}"))))?;
    match crate::http::send(&config.http, req, "publish", None).await {
        Ok(res) => crate::http::json(res, url, ACK_LIMIT)
            .await
            .map_err(Failure::Later),
        Err(e @ Error::Http { status, .. })
            if PERMANENT.contains(&status) || (status == 404 && !ws_may_return) =>
        {
            Err(Failure::Never(e))
        }
        Err(e) => Err(Failure::Later(e)),
    }
}
