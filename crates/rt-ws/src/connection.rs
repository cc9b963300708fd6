//! One WebSocket connection, served by one task: it reads the client's messages, takes
//! deliveries from the subscription and writes to the socket itself. Everything already
//! queued in the subscription goes out in one batch with a single write (encoded by
//! [`Frames`] unless the connection compresses); a write that the client does not drain
//! within the stall timeout closes the connection (1013), so a slow socket holds up only its
//! own task.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::HeaderMap;
use rt_core::{Channel, Delivery, Hub, Permissions, PublishAck, Published, Start, Subscription};
use rt_http::{Attachment, Client, Close as Closed, Connection};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::config::Config;
use crate::deflate;
use crate::frames::Frames;
use crate::handshake::{reason, refusal_of, Refusal};
use crate::limits::{RateLimit, Unacked};
use crate::protocol::{self, Inbound, Rejected};
use crate::socket::Socket;

/// Close code of a connection ended by the application (the server API's
/// `POST /api/disconnect`) that may connect again; the reason is the application's.
pub const CLOSE_DISCONNECT: u16 = 4000;
/// Close code of a connection ended by the application with `reconnect: false`: the client
/// should not connect again.
pub const CLOSE_DISCONNECT_FINAL: u16 = 4001;

/// The longest close reason: a control frame's payload is at most 125 bytes, 2 of them the code.
const MAX_REASON: usize = 123;

/// How the server ends a connection.
#[derive(Debug)]
struct Close(CloseCode, Cow<'static, str>);

impl Close {
    fn new(code: CloseCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Close(code, reason.into())
    }

    /// The close of a [`Delivery::Disconnected`]: its reason cut to fit a close frame.
    fn disconnect(reconnect: bool, reason: &str) -> Self {
        let code = if reconnect {
            CLOSE_DISCONNECT
        } else {
            CLOSE_DISCONNECT_FINAL
        };
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Close(CloseCode::from(code), Cow::Owned(reason[..end].to_owned()))
    }

    fn frame(self) -> CloseFrame {
        CloseFrame {
            code: self.0,
            reason: match self.1 {
                Cow::Borrowed(s) => s.into(),
                Cow::Owned(s) => s.into(),
            },
        }
    }
}

/// What the edge made of the handshake.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Why the connection is closed at once, if it is.
    pub(crate) refusal: Option<Refusal>,
    pub(crate) permissions: Permissions,
    pub(crate) attachment: Attachment,
    /// Channels the connect hook joins the connection to, right after it opens.
    pub(crate) channels: Vec<Channel>,
    /// Where those channels start: the handshake's `cursor` (live without one), so that a
    /// reconnecting client resumes them as it resumes its own.
    pub(crate) start: Start,
    /// What the connect hook shows the client, in a `connected` message.
    pub(crate) data: Option<serde_json::Value>,
    /// The handshake's headers, for the connect hook of a later `auth` message; kept only
    /// when the edge has hooks, and boxed: most connections have none.
    pub(crate) headers: Option<Box<HeaderMap>>,
}

impl Default for Admitted {
    /// Nothing allowed, joined or kept (a refused connection).
    fn default() -> Self {
        Admitted {
            refusal: None,
            permissions: Permissions::anonymous(),
            attachment: Attachment::default(),
            channels: Vec::new(),
            start: Start::Live,
            data: None,
            headers: None,
        }
    }
}

/// Serves one upgraded connection until it ends.
pub(crate) async fn run(socket: Socket, hub: Hub, config: Arc<Config>, admitted: Admitted) {
    let Admitted {
        refusal,
        permissions,
        attachment,
        channels,
        start,
        data,
        headers,
    } = admitted;
    // One socket, not split into halves: reads and writes never overlap in this task, and
    // halves would share it behind a lock.
    let mut socket = socket;
    let shared = socket.shares_compression();
    let framed = socket.takes_frames();
    let expiry = permissions.expiry().map(Box::pin);
    let tracked = Connection::open(config.edge.observer.clone(), crate::TRANSPORT);
    let mut conn = Conn {
        sub: hub
            .empty_subscription()
            .with_permissions(permissions.clone()),
        permissions,
        attachment,
        headers,
        limit: RateLimit::new(config.rate_limit, config.rate_burst),
        hub,
        config: config.clone(),
        out: Vec::new(),
        last_batch: 0,
        frames: framed.then(Frames::default),
        acks: None,
        shared,
        strikes: 0,
        tracked,
        expiry,
        publishing: FuturesOrdered::new(),
    };
    let close = match refusal {
        Some(Refusal { code, reason }) => {
            tracing::debug!(%reason, "websocket refused");
            Some(CloseFrame {
                code,
                reason: reason.as_ref().into(),
            })
        }
        // A bug (a panic) while serving still tells the client, with 1011.
        None => AssertUnwindSafe(conn.serve(&mut socket, data, channels, start))
            .catch_unwind()
            .await
            .unwrap_or(Some(Close::new(CloseCode::Error, "internal server error")))
            .map(Close::frame),
    };
    if let Some(close) = close {
        conn.tracked.close(Closed::Code(u16::from(close.code)));
        let _ = tokio::time::timeout(config.close_timeout, async {
            // The rest of a write the client stalled goes first: the frames stay whole.
            if let Some(frames) = conn.frames.as_mut().filter(|f| !f.is_empty()) {
                socket.write_frames(frames).await?;
            }
            socket.send(Message::Close(Some(close))).await
        })
        .await;
        // Read until the client answers the close frame (tungstenite then ends the stream),
        // so the closing handshake completes cleanly.
        let _ = tokio::time::timeout(config.close_timeout, async {
            while socket.next().await.is_some() {}
        })
        .await;
    }
    // Held to the very end: the hub's subscription count tells the server which connections
    // are still closing during a graceful shutdown.
    drop(conn);
}

struct Conn {
    hub: Hub,
    permissions: Permissions,
    /// What the edge's connect hook attached, for the subscribe and publish hooks.
    attachment: Attachment,
    /// The handshake's headers, for the connect hook of an `auth` message (only when the
    /// edge has hooks).
    headers: Option<Box<HeaderMap>>,
    config: Arc<Config>,
    sub: Subscription,
    /// Messages waiting for the next write: replies, pings, and a batch of deliveries.
    out: Vec<Message>,
    /// Deliveries in the last batch: the next one reserves that much room at once instead of
    /// growing `out` step by step (each step a reallocation and a copy of every message).
    last_batch: usize,
    /// Deliveries encoded for the socket, written after `out`; `None` when the connection
    /// compresses, and deliveries go on `out`.
    frames: Option<Frames>,
    limit: RateLimit,
    /// Set once the client opted into acks.
    acks: Option<Unacked>,
    /// The client takes events compressed once per publish.
    shared: bool,
    /// Invalid or rate-limited messages in a row.
    strikes: u32,
    /// Reports the connection to the observer; closed with the code either side sent.
    tracked: Connection,
    /// Fires when the client's token expires.
    expiry: Deadline,
    /// The client's publishes still on their way to the backplane (at most
    /// [`Hub::publish_pipeline`]), in the order the client sent them: their answers go out in
    /// that order, each once the backplane stored the event.
    publishing: FuturesOrdered<BoxFuture<'static, Publishing>>,
}

/// A publish's outcome and the client's message id to echo.
type Publishing = (Result<Published, rt_http::Error>, Option<String>);

impl Conn {
    /// Runs the connection until it must be closed (`Some`) or the client went away (`None`):
    /// first the connect hook's `data` (a `connected` message) and `channels` (joined as if
    /// the client had subscribed to them from `start`), then the client's messages.
    async fn serve(
        &mut self,
        socket: &mut Socket,
        data: Option<serde_json::Value>,
        channels: Vec<Channel>,
        start: Start,
    ) -> Option<Close> {
        if let Some(data) = data {
            let subject = self.permissions.subject();
            self.out.push(protocol::connected(subject, &data));
        }
        if let Some(close) = Box::pin(self.join(channels, start)).await {
            return Some(close);
        }
        let closing = self.hub.closing();
        tokio::pin!(closing);
        let interval = self
            .config
            .ping_interval
            .max(std::time::Duration::from_millis(10));
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Deadlines exist only while armed (a ping awaiting its pong, a full acks window),
        // so an idle connection carries no timer for them.
        let mut pong: Deadline = None;
        let mut stall: Deadline = None;
        let pipeline = self.hub.publish_pipeline();
        loop {
            if !self.out.is_empty() || self.frames.as_ref().is_some_and(|f| !f.is_empty()) {
                if let Err(close) = self.write(socket).await {
                    return close;
                }
            }
            let window_full = self.window_full();
            let subscribed = self.sub.channels().next().is_some();
            if !(subscribed && window_full) {
                stall = None;
            } else if stall.is_none() {
                stall = Some(Box::pin(tokio::time::sleep(self.config.stall_timeout)));
            }
            let publishing = !self.publishing.is_empty();
            let parsed = tokio::select! {
                biased;
                () = &mut closing => {
                    // Publishes already sent to the backplane are answered before the close.
                    if publishing {
                        self.answer_publishes().await;
                        let _ = self.write(socket).await;
                    }
                    return Some(Close::new(CloseCode::Away, "server shutting down"));
                }
                () = expires(&mut self.expiry), if self.expiry.is_some() => {
                    return Some(Close::new(CloseCode::Policy, reason::TOKEN_EXPIRED));
                }
                Some(done) = self.publishing.next(), if publishing => {
                    self.answer_publish(done);
                    continue;
                }
                // A full pipeline stops reading: the client is slowed down by TCP.
                msg = socket.next(), if self.publishing.len() < pipeline => match msg {
                    None => return None,
                    Some(Err(e)) => return read_error(e),
                    Some(Ok(Message::Pong(_))) => { pong = None; continue }
                    Some(Ok(Message::Text(t))) => protocol::parse_text(t.as_bytes()),
                    Some(Ok(Message::Binary(b))) => protocol::parse_binary(&b),
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(f) = frame {
                            self.tracked.close(Closed::Code(u16::from(f.code)));
                        }
                        continue;
                    }
                    // Pings are answered by tungstenite; a Close is answered too, and the
                    // stream then ends.
                    Some(Ok(_)) => continue,
                },
                // With a subject, signals about it arrive even while no channel is held.
                d = self.sub.next(), if (subscribed || self.sub.has_subject()) && !window_full => {
                    self.out.reserve(self.last_batch);
                    let before = self.out.len();
                    let mut events = match self.take(d) {
                        Ok(n) => n,
                        Err(close) => return Some(close),
                    };
                    // Everything else already queued joins the same write and flush.
                    let batch = self.config.outbound_queue.max(1);
                    let mut taken = 1;
                    while taken < batch && !self.window_full() {
                        let Some(d) = self.sub.try_next() else { break };
                        match self.take(Some(d)) {
                            Ok(n) => events += n,
                            Err(close) => return Some(close),
                        }
                        taken += 1;
                    }
                    self.last_batch = self.out.len() - before;
                    // Once per batch, not per event.
                    self.tracked.delivered(events);
                    continue;
                }
                () = expires(&mut stall), if stall.is_some() => {
                    return Some(Close::new(CloseCode::Again, "too many unacknowledged events; resume from your cursor"));
                }
                () = expires(&mut pong), if pong.is_some() => {
                    return Some(Close::new(CloseCode::Away, "no pong within the timeout"));
                }
                _ = ping.tick() => {
                    if pong.is_none() {
                        pong = Some(Box::pin(tokio::time::sleep(self.config.pong_timeout)));
                        self.out.push(Message::Ping(bytes::Bytes::new()));
                    }
                    if self.config.app_heartbeat {
                        self.out.push(protocol::heartbeat());
                    }
                    continue;
                }
            };
            // Boxed: handling a message (joining channels, publishing) has a large state that
            // is rarely live; inline, it would be part of every idle connection's task.
            if let Some(close) = Box::pin(self.inbound(parsed)).await {
                return Some(close);
            }
        }
    }

    /// Whether the client must acknowledge events before it gets more.
    fn window_full(&self) -> bool {
        self.acks
            .as_ref()
            .is_some_and(|u| u.len() >= self.config.ack_window)
    }

    /// Turns a delivery into its message on `out`; `Ok(1)` for an event, `Ok(0)` for a notice.
    fn take(&mut self, d: Option<Delivery>) -> Result<u64, Close> {
        match d {
            Some(Delivery::Event(event)) => {
                if let Some(u) = &mut self.acks {
                    u.sent(event.channel(), event.offset());
                }
                if let Some(frames) = &mut self.frames {
                    frames.push_event(&event);
                    return Ok(1);
                }
                let shared = self.shared.then_some(&self.config.compression);
                let frame = shared.and_then(|c| deflate::shared_event(&event, c));
                self.out
                    .push(frame.unwrap_or_else(|| protocol::event_frame(&event)));
                return Ok(1);
            }
            Some(Delivery::Resync { channels }) => {
                if let Some(u) = &mut self.acks {
                    channels.iter().for_each(|c| u.forget(c));
                }
                let cursor = self.sub.cursor();
                // In line with the events around it.
                match &mut self.frames {
                    Some(frames) => frames.push(
                        Data::Text,
                        &protocol::channels_json("resync", &channels, &cursor),
                    ),
                    None => self
                        .out
                        .push(protocol::channels_message("resync", &channels, &cursor)),
                }
            }
            Some(Delivery::Unsubscribed { channel }) => {
                if let Some(u) = &mut self.acks {
                    u.forget(&channel);
                }
                self.out.push(protocol::unsubscribed_by_server(
                    &channel,
                    &self.sub.cursor(),
                ));
            }
            Some(Delivery::Disconnected { reconnect, reason }) => {
                return Err(Close::disconnect(reconnect, &reason));
            }
            Some(Delivery::Presence(changes)) => self.out.push(protocol::presence(&changes)),
            None => {
                return Err(Close::new(
                    CloseCode::Error,
                    "internal server error: subscription ended",
                ))
            }
        }
        Ok(0)
    }

    /// Writes and flushes everything on `out`. `Err(None)`: the socket failed (the client is
    /// gone); `Err(Some)`: the client did not drain it within the stall timeout.
    async fn write(&mut self, socket: &mut Socket) -> Result<(), Option<Close>> {
        // Taken, not drained: an idle connection keeps no buffer from its last write.
        let out = std::mem::take(&mut self.out);
        let frames = self.frames.as_mut();
        let mut write = pin!(async {
            for m in out {
                socket.feed(m).await?;
            }
            match frames.filter(|f| !f.is_empty()) {
                Some(frames) => socket.write_frames(frames).await,
                None => socket.flush().await,
            }
        });
        // Most writes finish at once; a timer is only set up for a socket that is backed up.
        let done = match (&mut write).now_or_never() {
            Some(r) => r,
            None => tokio::time::timeout(self.config.stall_timeout, write)
                .await
                .map_err(|_| {
                    Some(Close::new(
                        CloseCode::Again,
                        "too slow: events are not being read; resume from your cursor",
                    ))
                })?,
        };
        done.map_err(|e| {
            tracing::debug!(error = %e, "websocket write error");
            None
        })
    }

    /// Handles one parsed client message; returns a close when the connection must end.
    async fn inbound(&mut self, parsed: Result<Inbound, Rejected>) -> Option<Close> {
        if !self.limit.allow() {
            return self.strike(
                "rate_limited",
                "too many messages; slow down",
                None,
                reason::RATE_LIMITED,
            );
        }
        let msg = match parsed {
            Ok(m) => m,
            Err(Rejected { error, id }) => {
                return self.strike(
                    error.code(),
                    &error.to_string(),
                    id.as_deref(),
                    reason::TOO_MANY_INVALID_MESSAGES,
                );
            }
        };
        self.strikes = 0;
        if !matches!(msg, Inbound::Publish(..)) {
            // Answered after the publishes sent before it, as if they were handled one at a
            // time.
            self.answer_publishes().await;
        }
        let reply = match msg {
            Inbound::Subscribe {
                channels,
                cursor,
                acks,
            } => {
                if acks && self.acks.is_none() {
                    self.acks = Some(Unacked::default());
                }
                let start = match Start::parse(cursor.as_deref()) {
                    Ok(s) => s,
                    Err(e) => return self.error(&e.into(), None),
                };
                match self.subscribe(channels, start).await {
                    Ok(subscribed) => subscribed,
                    Err(close) => return close,
                }
            }
            Inbound::Unsubscribe { channels } => {
                for c in &channels {
                    self.sub.remove(c);
                    if let Some(u) = &mut self.acks {
                        u.forget(c);
                    }
                }
                protocol::channels_message("unsubscribed", &channels, &self.sub.cursor())
            }
            Inbound::Publish(event, id) => {
                // Started in the order sent; answered once the backplane stored it.
                let hub = self.hub.clone();
                let (permissions, attachment) = (self.permissions.clone(), self.attachment.clone());
                let config = self.config.clone();
                self.publishing.push_back(Box::pin(async move {
                    let client = Client {
                        transport: crate::TRANSPORT,
                        permissions: &permissions,
                        attachment: &attachment,
                    };
                    let published = async {
                        let event = config.edge.check_publish(client, event).await?;
                        Ok(hub.publish_as(&permissions, event).await?)
                    };
                    (published.await, id)
                }));
                return None;
            }
            Inbound::Ack { channel, offset } => {
                if let Some(u) = &mut self.acks {
                    u.ack(&channel, offset);
                }
                return None;
            }
            Inbound::Ping { id } => protocol::pong(id),
            Inbound::Auth { token } => return self.reauthenticate(&token).await,
        };
        self.out.push(reply);
        None
    }

    /// Queues the answer to a publish: its ack, or the error.
    fn answer_publish(&mut self, (result, id): Publishing) {
        match result {
            Ok(published) => self
                .out
                .push(protocol::published(&PublishAck::new(&published, id))),
            Err(e) => {
                self.error(&e, id.as_deref());
            }
        }
    }

    /// Waits for every publish in flight and queues their answers, in order.
    async fn answer_publishes(&mut self) {
        while let Some(done) = self.publishing.next().await {
            self.answer_publish(done);
        }
    }

    /// Joins `channels` from `start`: the `subscribed` answer, or `Err` with the close when the
    /// permissions refuse a channel (`Err(None)`: an `error` message was queued instead).
    async fn subscribe(
        &mut self,
        channels: Vec<Channel>,
        start: Start,
    ) -> Result<Message, Option<Close>> {
        // A channel the hook refuses is answered with an error; the connection and its other
        // channels stay.
        let client = self.client();
        if let Err(e) = self.config.edge.check_subscribe(client, &channels).await {
            return Err(self.error(&e, None));
        }
        match self.sub.add(channels.clone(), start).await {
            Ok(joined) => Ok(protocol::subscribed(&channels, &joined, &self.sub.cursor())),
            Err(e) => {
                let e = rt_http::Error::from(e);
                self.count_auth_failure(&e);
                Err(policy(&e).or_else(|| self.error(&e, None)))
            }
        }
    }

    /// Subscribes the connection to the connect hook's `channels` not held yet, from `start`,
    /// as if the client had sent a `subscribe` for them (same checks, same `subscribed`
    /// answer).
    async fn join(&mut self, channels: Vec<Channel>, start: Start) -> Option<Close> {
        let new: Vec<Channel> = channels
            .into_iter()
            .filter(|c| !self.sub.channels().any(|held| held == c))
            .collect();
        if new.is_empty() {
            return None;
        }
        match self.subscribe(new, start).await {
            Ok(subscribed) => {
                self.out.push(subscribed);
                None
            }
            Err(close) => close,
        }
    }

    /// Replaces the connection's permissions with those of a new token (e.g. a refreshed one
    /// before the old expires), as the edge admits it: the authenticator, then the connect
    /// hook with the handshake's headers. Channels the new permissions do not cover are
    /// dropped; the hook's channels are joined. A refused token closes the connection as a
    /// refused handshake would.
    async fn reauthenticate(&mut self, token: &str) -> Option<Close> {
        let edge = &self.config.edge;
        if !edge.verifies_tokens() && !edge.has_hooks() {
            let e = rt_core::Error::BadRequest("this server does not use tokens".into());
            return self.error(&e.into(), None);
        }
        let empty = HeaderMap::new();
        let headers = self.headers.as_deref().unwrap_or(&empty);
        // Refusals are reported to the observer by the edge.
        let admitted = match edge.reauthenticate(crate::TRANSPORT, headers, token).await {
            Ok(a) => a,
            Err(e) => {
                let Refusal { code, reason } = refusal_of(&e, true);
                return Some(Close::new(code, reason));
            }
        };
        let permissions = admitted.permissions;
        let dropped: Vec<Channel> = self
            .sub
            .channels()
            .filter(|c| !permissions.can_subscribe(c))
            .cloned()
            .collect();
        for c in &dropped {
            self.sub.remove(c);
            if let Some(u) = &mut self.acks {
                u.forget(c);
            }
        }
        self.expiry = permissions.expiry().map(Box::pin);
        self.sub.set_permissions(permissions.clone());
        let cursor = self.sub.channels().next().map(|_| self.sub.cursor());
        let reply = protocol::authenticated(
            permissions.subject(),
            &dropped,
            cursor.as_ref(),
            admitted.data.as_ref(),
        );
        self.permissions = permissions;
        self.attachment = admitted.attachment;
        self.out.push(reply);
        // Mid-connection, the connection is live: new channels start there.
        self.join(admitted.channels, Start::Live).await
    }

    /// The client as the edge's hooks see it.
    fn client(&self) -> Client<'_> {
        Client {
            transport: crate::TRANSPORT,
            permissions: &self.permissions,
            attachment: &self.attachment,
        }
    }

    fn error(&mut self, e: &rt_http::Error, id: Option<&str>) -> Option<Close> {
        self.count_auth_failure(e);
        self.out.push(protocol::error(e.code(), &e.to_string(), id));
        None
    }

    /// Reports a refused permission (a publish answered with an error, a subscription closed
    /// with 1008) to the observer. A token sent over the connection is verified (and reported)
    /// in `reauthenticate`, so an `unauthorized` refusal here is for a client without one.
    fn count_auth_failure(&self, e: &rt_http::Error) {
        self.config
            .edge
            .count_refusal(crate::TRANSPORT, e.code(), false);
    }

    /// Answers an invalid message with an error, and closes once abuse goes on.
    fn strike(
        &mut self,
        code: &'static str,
        message: &str,
        id: Option<&str>,
        why: &'static str,
    ) -> Option<Close> {
        self.strikes += 1;
        if self.strikes > self.config.max_strikes {
            return Some(Close::new(CloseCode::Policy, why));
        }
        self.out.push(protocol::error(code, message, id));
        None
    }
}

/// A timer that exists only while armed.
type Deadline = Option<Pin<Box<tokio::time::Sleep>>>;

/// Resolves when an armed deadline passes; never when it is not armed.
async fn expires(deadline: &mut Deadline) {
    match deadline {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// Subscribing outside the client's permissions ends the connection with 1008.
fn policy(e: &rt_http::Error) -> Option<Close> {
    let rt_http::Error::Core(e) = e else {
        return None;
    };
    let why = match e {
        rt_core::Error::Forbidden(_) => reason::FORBIDDEN,
        rt_core::Error::Unauthorized(_) => reason::TOKEN_REQUIRED,
        rt_core::Error::TokenExpired => reason::TOKEN_EXPIRED,
        _ => return None,
    };
    Some(Close::new(CloseCode::Policy, why))
}

/// The close that answers a read error, when the socket can still carry one.
fn read_error(e: WsError) -> Option<Close> {
    tracing::debug!(error = %e, "websocket read error");
    match e {
        WsError::Capacity(_) => Some(Close::new(CloseCode::Size, "message too big")),
        WsError::Utf8(_) => Some(Close::new(
            CloseCode::Invalid,
            "text frame is not valid UTF-8",
        )),
        WsError::Protocol(_) => Some(Close::new(CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}
