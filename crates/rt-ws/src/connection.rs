//! One WebSocket connection: a reader loop that owns the subscription and a writer task that
//! owns the socket's sending half, joined by a bounded queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rt_core::telemetry::CloseCode as CloseCodeSlot;
use rt_core::{Channel, Delivery, Hub, PublishAck, Start, Subscription};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::config::Config;
use crate::handshake::{Auth, Socket};
use crate::limits::{RateLimit, Unacked};
use crate::protocol::{self, Inbound, Rejected};

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// How the server ends a connection.
#[derive(Debug)]
struct Close(CloseCode, &'static str);

impl Close {
    fn frame(self) -> CloseFrame {
        CloseFrame {
            code: self.0,
            reason: self.1.into(),
        }
    }
}

/// Serves one upgraded connection until it ends.
pub(crate) async fn run(
    socket: Socket,
    hub: Hub,
    config: Arc<Config>,
    refusal: Option<&'static str>,
    auth: Auth,
    close_code: CloseCodeSlot,
) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(config.outbound_queue.max(1));
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(write(sink, rx, close_rx, config.close_timeout));
    let expiry = Box::pin(auth.permissions.expired());
    let mut conn = Conn {
        sub: hub
            .empty_subscription()
            .with_permissions(auth.permissions.clone()),
        auth,
        limit: RateLimit::new(config.rate_limit, config.rate_burst),
        hub,
        config,
        tx,
        acks: None,
        strikes: 0,
        close_code: close_code.clone(),
        expiry,
    };
    let close = match refusal {
        Some(reason) => {
            tracing::debug!(%reason, "websocket refused");
            Some(Close(CloseCode::Policy, reason))
        }
        None => conn.serve(&mut stream).await,
    };
    let Conn {
        sub, tx, config, ..
    } = conn;
    let closing = close.is_some();
    if let Some(Close(code, _)) = &close {
        close_code.set(u16::from(*code));
    }
    let _ = close_tx.send(close.map(Close::frame));
    drop(tx);
    if closing {
        // Read until the client answers the close frame (tungstenite then ends the stream),
        // so the closing handshake completes cleanly.
        let _ = tokio::time::timeout(config.close_timeout, async {
            while stream.next().await.is_some() {}
        })
        .await;
    }
    let _ = tokio::time::timeout(config.close_timeout, writer).await;
    // Held to the very end: the hub's subscription count tells the server which connections
    // are still closing during a graceful shutdown.
    drop(sub);
}

/// Sends queued messages, batching writes until the queue is empty. A close frame requested
/// on `close` jumps the queue. When the reader side disappears without asking for a close
/// (it panicked), the client is told with 1011.
async fn write(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<Option<CloseFrame>>,
    close_timeout: std::time::Duration,
) {
    let frame = loop {
        tokio::select! {
            biased;
            c = &mut close => break c,
            m = rx.recv() => {
                let Some(m) = m else { break (&mut close).await };
                let batch = async {
                    sink.feed(m).await?;
                    while let Ok(m) = rx.try_recv() {
                        sink.feed(m).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    biased;
                    c = &mut close => break c,
                    r = batch => if r.is_err() { return },
                }
            }
        }
    };
    let frame = match frame {
        Ok(Some(frame)) => frame,
        Ok(None) => return,
        Err(_) => CloseFrame {
            code: CloseCode::Error,
            reason: "internal server error".into(),
        },
    };
    let _ = tokio::time::timeout(close_timeout, sink.send(Message::Close(Some(frame)))).await;
}

struct Conn {
    hub: Hub,
    auth: Auth,
    config: Arc<Config>,
    sub: Subscription,
    tx: mpsc::Sender<Message>,
    limit: RateLimit,
    /// Set once the client opted into acks.
    acks: Option<Unacked>,
    /// Invalid or rate-limited messages in a row.
    strikes: u32,
    close_code: CloseCodeSlot,
    /// Resolves when the client's token expires.
    expiry: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// What happened to a reply that could not be queued.
struct Full;

impl Conn {
    /// Runs the connection until it must be closed (`Some`) or the client went away (`None`).
    async fn serve(&mut self, stream: &mut Stream) -> Option<Close> {
        let closing = self.hub.closing();
        tokio::pin!(closing);
        let interval = self
            .config
            .ping_interval
            .max(std::time::Duration::from_millis(10));
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        let mut permit: Option<mpsc::OwnedPermit<Message>> = None;
        // Since when the connection could not take its next event.
        let mut stalled_since: Option<Instant> = None;
        loop {
            let window_full = self
                .acks
                .as_ref()
                .is_some_and(|u| u.len() >= self.config.ack_window);
            let subscribed = self.sub.channels().next().is_some();
            let ready = permit.is_some() && !window_full;
            if subscribed && !ready {
                stalled_since.get_or_insert_with(Instant::now);
            } else {
                stalled_since = None;
            }
            let stall_deadline = stalled_since.map(|s| s + self.config.stall_timeout);
            tokio::select! {
                biased;
                () = &mut closing => return Some(Close(CloseCode::Away, "server shutting down")),
                () = &mut self.expiry => return Some(Close(CloseCode::Policy, "bad auth: token expired")),
                msg = stream.next() => {
                    let close = match msg {
                        None => return None,
                        Some(Err(e)) => return read_error(e),
                        Some(Ok(Message::Pong(_))) => { pong_deadline = None; continue }
                        Some(Ok(Message::Text(t))) => self.inbound(protocol::parse_text(t.as_bytes())).await,
                        Some(Ok(Message::Binary(b))) => self.inbound(protocol::parse_binary(&b)).await,
                        Some(Ok(Message::Close(frame))) => {
                            if let Some(f) = frame {
                                self.close_code.set(u16::from(f.code));
                            }
                            continue;
                        }
                        // Pings are answered by tungstenite; a Close is answered too, and the
                        // stream then ends.
                        Some(Ok(_)) => continue,
                    };
                    if close.is_some() {
                        return close;
                    }
                }
                p = self.tx.clone().reserve_owned(), if permit.is_none() => match p {
                    Ok(p) => permit = Some(p),
                    Err(_) => return Some(Close(CloseCode::Error, "internal server error")),
                },
                d = self.sub.next(), if subscribed && ready => {
                    let Some(p) = permit.take() else { continue };
                    match d {
                        Some(Delivery::Event(event)) => {
                            if let Some(u) = &mut self.acks {
                                u.sent(event.channel(), event.offset());
                            }
                            p.send(protocol::event_frame(&event));
                        }
                        Some(Delivery::Resync { channels }) => {
                            if let Some(u) = &mut self.acks {
                                channels.iter().for_each(|c| u.forget(c));
                            }
                            p.send(protocol::channels_message("resync", &channels, &self.sub.cursor()));
                        }
                        Some(Delivery::Lagged) => {
                            return Some(Close(CloseCode::Again, "lagged: too far behind the live stream; resume from your cursor"));
                        }
                        None => return Some(Close(CloseCode::Error, "internal server error: subscription ended")),
                    }
                }
                () = sleep_until(stall_deadline.unwrap_or_else(Instant::now)), if stall_deadline.is_some() => {
                    return Some(Close(CloseCode::Again, if window_full {
                        "too many unacknowledged events; resume from your cursor"
                    } else {
                        "too slow: events are not being read; resume from your cursor"
                    }));
                }
                () = sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                    return Some(Close(CloseCode::Away, "no pong within the timeout"));
                }
                _ = ping.tick() => {
                    if pong_deadline.is_none() {
                        pong_deadline = Some(Instant::now() + self.config.pong_timeout);
                        if self.reply(Message::Ping(bytes::Bytes::new())).is_err() {
                            return Some(too_slow());
                        }
                    }
                    if self.config.app_heartbeat && self.reply(protocol::heartbeat()).is_err() {
                        return Some(too_slow());
                    }
                }
            }
        }
    }

    /// Queues a reply. A client whose queue is full is not reading its socket.
    fn reply(&self, msg: Message) -> Result<(), Full> {
        self.tx.try_send(msg).map_err(|_| Full)
    }

    /// Handles one parsed client message; returns a close when the connection must end.
    async fn inbound(&mut self, parsed: Result<Inbound, Rejected>) -> Option<Close> {
        if !self.limit.allow() {
            return self.strike(
                "rate_limited",
                "too many messages; slow down",
                None,
                "rate limit exceeded repeatedly",
            );
        }
        let msg = match parsed {
            Ok(m) => m,
            Err(Rejected { error, id }) => {
                return self.strike(
                    error.code(),
                    &error.to_string(),
                    id.as_deref(),
                    "too many invalid messages",
                );
            }
        };
        self.strikes = 0;
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
                    Err(e) => return self.error(&e, None),
                };
                match self.sub.add(channels.clone(), start).await {
                    Ok(joined) => protocol::subscribed(&channels, &joined, &self.sub.cursor()),
                    Err(e) => return policy(&e).or_else(|| self.error(&e, None)),
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
                match self.hub.publish_as(&self.auth.permissions, event).await {
                    Ok(published) => protocol::published(&PublishAck::new(&published, id)),
                    Err(e) => return self.error(&e, id.as_deref()),
                }
            }
            Inbound::Ack { channel, offset } => {
                if let Some(u) = &mut self.acks {
                    u.ack(&channel, offset);
                }
                return None;
            }
            Inbound::Ping { id } => protocol::pong(id),
            Inbound::Auth { token } => return self.reauthenticate(&token),
        };
        self.reply(reply).err().map(|Full| too_slow())
    }

    /// Replaces the connection's permissions with those of a new token (e.g. a refreshed one
    /// before the old expires). Channels the new token does not cover are dropped.
    fn reauthenticate(&mut self, token: &str) -> Option<Close> {
        let Some(verifier) = &self.auth.authenticator else {
            let e = rt_core::Error::BadRequest("this server does not use tokens".into());
            return self.error(&e, None);
        };
        let permissions = match verifier.authenticate(Some(token)) {
            Ok(p) => p,
            Err(rt_core::Error::TokenExpired) => {
                return Some(Close(CloseCode::Policy, "bad auth: token expired"))
            }
            Err(_) => return Some(Close(CloseCode::Policy, "bad auth: invalid token")),
        };
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
        self.expiry = Box::pin(permissions.expired());
        self.sub.set_permissions(permissions.clone());
        let reply = protocol::authenticated(permissions.subject(), &dropped, &self.sub.cursor());
        self.auth.permissions = permissions;
        self.reply(reply).err().map(|Full| too_slow())
    }

    fn error(&self, e: &rt_core::Error, id: Option<&str>) -> Option<Close> {
        self.reply(protocol::error(e.code(), &e.to_string(), id))
            .err()
            .map(|Full| too_slow())
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
            return Some(Close(CloseCode::Policy, why));
        }
        self.reply(protocol::error(code, message, id))
            .err()
            .map(|Full| too_slow())
    }
}

/// Subscribing outside the client's permissions ends the connection with 1008.
fn policy(e: &rt_core::Error) -> Option<Close> {
    match e {
        rt_core::Error::Forbidden(_) => Some(Close(CloseCode::Policy, "forbidden channel")),
        rt_core::Error::Unauthorized(_) => Some(Close(
            CloseCode::Policy,
            "bad auth: a token is needed for this channel",
        )),
        rt_core::Error::TokenExpired => Some(Close(CloseCode::Policy, "bad auth: token expired")),
        _ => None,
    }
}

fn too_slow() -> Close {
    Close(CloseCode::Again, "too slow: replies are not being read")
}

/// The close that answers a read error, when the socket can still carry one.
fn read_error(e: WsError) -> Option<Close> {
    tracing::debug!(error = %e, "websocket read error");
    match e {
        WsError::Capacity(_) => Some(Close(CloseCode::Size, "message too big")),
        WsError::Utf8(_) => Some(Close(CloseCode::Invalid, "text frame is not valid UTF-8")),
        WsError::Protocol(_) => Some(Close(CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}
