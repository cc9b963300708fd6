//! The endpoint: request checks, then the event stream of one connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use rt_core::{Channel, Cursor, Delivery, Hub, Permissions, Start, Subscription};
use rt_http::{Admitted, Body, Close, Connection, Origins, Query};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::frame;

/// The Server-Sent Events endpoint, bound to a hub. Cheap to clone.
///
/// It is a `tower_service::Service` over any request body: mount it on a route of an axum
/// app (`Router::route_service`), or serve it with plain hyper through
/// `hyper_util::service::TowerToHyperService`. [`Sse::handle`] answers one request: streams
/// for `GET`, CORS preflights, JSON errors otherwise.
#[derive(Debug, Clone)]
pub struct Sse {
    hub: Hub,
    config: Arc<Config>,
}

rt_http::endpoint_service!(Sse);

/// The transport's name in telemetry.
const TRANSPORT: &str = "sse";

/// The query parameters that carry a resume value, in order of preference (the
/// `Last-Event-ID` header wins over both). `lastEventID` is Mercure's spelling.
const RESUME_PARAMS: [&str; 2] = ["lastEventId", "lastEventID"];

impl Sse {
    /// The endpoint over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        Sse {
            hub,
            config: Arc::new(config),
        }
    }

    /// The options in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request: a `text/event-stream` for a valid `GET`, `204` for an allowed
    /// CORS preflight, a JSON error otherwise. Never reads the request body.
    ///
    /// The request passes the [`Edge`](rt_http::Edge) of the configuration first (origin,
    /// then token); its channels must be allowed by the permissions the token grants, and a
    /// stream ends with [`EXPIRED`](crate::EXPIRED) when they expire.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<Body> {
        rt_http::host_from_authority(&mut req);
        let (parts, body) = req.into_parts();
        // Never read: dropped now so the stream holds nothing of the request.
        drop(body);
        let edge = &self.config.edge;
        if Origins::is_preflight(&parts.method, &parts.headers) {
            return edge.origins.preflight(&parts.headers);
        }
        let query = Query::parse(parts.uri.query());
        // A refusal at admission is reported by the edge itself; later ones (a channel outside
        // the grant) are reported here.
        let opened = match edge.admit(TRANSPORT, &parts.headers, &query).await {
            Ok(admitted) => self
                .open(&parts.method, &query, &parts.headers, &admitted)
                .await
                .map_err(|e| (e, Some(admitted.presented))),
            Err(e) => Err((e.into(), None)),
        };
        let mut res = match opened {
            Ok(res) => res,
            Err((Error::Http(e), Some(presented))) => edge.refuse(TRANSPORT, &e, presented),
            Err((e, _)) => e.to_response(),
        };
        edge.origins.apply_cors(&parts.headers, res.headers_mut());
        res
    }

    async fn open(
        &self,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
        admitted: &Admitted,
    ) -> Result<Response<Body>, Error> {
        if method != Method::GET {
            return Err(rt_http::Error::MethodNotAllowed {
                method: method.clone(),
                allowed: "GET, OPTIONS",
            }
            .into());
        }
        // A channel set whose cursor could not be sent back is refused by the subscription.
        // The connect hook's channels join those of the URL, from the same resume value.
        let channels = admitted.with_joined(query.channels(self.hub.config().max_channels))?;
        let start = Start::parse(resume_value(headers, query)?)?;
        let from_earliest = start == Start::Earliest;
        let client = admitted.client(TRANSPORT);
        self.config.edge.check_subscribe(client, &channels).await?;
        let permissions = &admitted.permissions;
        let sub = self.hub.subscribe_as(permissions, channels, start).await?;

        // Encoded once, before the stream starts.
        let connected = admitted.data.as_ref().map(|data| {
            let body = frame::Connected {
                r#type: "connected",
                subject: permissions.subject(),
                data,
            };
            frame::control(frame::CONNECTED, &body, None, None)
        });
        let mut res = Response::new(self.stream(sub, from_earliest, permissions, connected));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx-style proxies not to buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(res)
    }

    /// The body of one connection. Dropping it (hyper does when the client goes away) drops
    /// the subscription.
    fn stream(
        &self,
        mut sub: Subscription,
        from_earliest: bool,
        permissions: &Permissions,
        connected: Option<Bytes>,
    ) -> Body {
        let closing = self.hub.closing();
        let expired = permissions.expired();
        let heartbeat = self.config.heartbeat;
        let retry = self.config.retry;
        // Reported closed when the body is dropped: by itself at its last event, or because
        // the client went away.
        let mut conn = Connection::open(self.config.edge.observer.clone(), TRANSPORT);
        let frames = async_stream::stream! {
            // Advanced here per event rather than rebuilt from the subscription each time.
            let mut cursor = sub.cursor();
            // The opening event carries the cursor as `id:` so that a client that sees no
            // event before it reconnects still resumes from here rather than from "now". A
            // stream that started from `earliest` leaves it out: reconnecting to the same URL
            // replays from `earliest` again, which loses nothing either.
            let open = frame::Open {
                r#type: "open",
                cursor: cursor.to_string(),
                channels: sub.channels().collect(),
            };
            let id = (!from_earliest).then_some(&cursor);
            yield data(frame::control(frame::OPEN, &open, id, Some(retry)));
            if let Some(connected) = connected {
                yield data(connected);
            }

            tokio::pin!(closing);
            tokio::pin!(expired);
            // The heartbeat timer is re-armed only when it fires, from the last write, so a busy
            // stream does not touch the timer wheel per event.
            let idle = tokio::time::sleep(heartbeat);
            tokio::pin!(idle);
            let mut last_write = Instant::now();
            loop {
                let step = tokio::select! {
                    biased;
                    () = &mut closing => Step::Shutdown,
                    () = &mut expired => Step::Expired,
                    delivery = sub.next() => Step::Deliver(delivery),
                    () = &mut idle, if !heartbeat.is_zero() => {
                        let due = last_write + heartbeat;
                        if due > Instant::now() {
                            idle.as_mut().reset(due);
                            continue;
                        }
                        Step::Ping
                    }
                };
                match step {
                    Step::Deliver(Some(first)) => {
                        // Everything else already queued joins the same body frame.
                        let mut buf = BytesMut::new();
                        let mut next = Some(first);
                        let mut events = 0;
                        let mut ending = None;
                        while let Some(delivery) = next.take() {
                            match delivery {
                                Delivery::Event(event) => {
                                    cursor.advance(event.channel(), event.position());
                                    debug_assert_eq!(cursor, sub.cursor());
                                    frame::push_event_block(&mut buf, &cursor, &event);
                                    events += 1;
                                }
                                Delivery::Resync { channels } => {
                                    cursor = sub.cursor();
                                    buf.extend_from_slice(&notice(frame::RESYNC, "resync", &cursor, &channels));
                                }
                                Delivery::Unsubscribed { channel } => {
                                    cursor = sub.cursor();
                                    buf.extend_from_slice(&notice(frame::UNSUBSCRIBED, "unsubscribed", &cursor, &[channel]));
                                }
                                Delivery::Disconnected { reconnect, reason } => {
                                    ending = Some(frame::disconnect(&cursor, reconnect, &reason));
                                    break;
                                }
                                Delivery::Presence(changes) => {
                                    buf.extend_from_slice(&frame::control(frame::PRESENCE, &*changes, None, None));
                                }
                            }
                            if buf.len() < BATCH_BYTES {
                                next = sub.try_next();
                            }
                        }
                        conn.delivered(events);
                        if !buf.is_empty() {
                            yield data(buf.freeze());
                        }
                        if let Some(last) = ending.take() {
                            conn.close(Close::End);
                            yield data(last);
                            break;
                        }
                    }
                    Step::Deliver(None) => {
                        conn.close(Close::End);
                        break;
                    }
                    Step::Expired => {
                        conn.close(Close::End);
                        yield data(frame::end(frame::EXPIRED, &cursor, None));
                        break;
                    }
                    Step::Ping => {
                        idle.as_mut().reset(Instant::now() + heartbeat);
                        yield data(Bytes::from_static(frame::PING));
                    }
                    Step::Shutdown => {
                        let jitter = Duration::from_millis(fastrand::u64(0..=retry.as_millis() as u64));
                        conn.close(Close::End);
                        yield data(frame::end(frame::SHUTDOWN, &cursor, Some(retry + jitter)));
                        break;
                    }
                }
                last_write = Instant::now();
            }
        };
        StreamBody::new(frames).boxed_unsync()
    }
}

/// A burst is written in body frames of about this size at most: large enough that a
/// saturated stream costs one chunk or DATA frame per many events, small enough that one
/// stream does not hold a large buffer.
const BATCH_BYTES: usize = 32 * 1024;

enum Step {
    Deliver(Option<Delivery>),
    Ping,
    Shutdown,
    Expired,
}

fn data(bytes: Bytes) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(bytes))
}

/// A control event about some channels ([`frame::RESYNC`], [`frame::UNSUBSCRIBED`]).
fn notice(name: &str, r#type: &'static str, cursor: &Cursor, channels: &[Channel]) -> Bytes {
    let body = frame::Resync {
        r#type,
        channels,
        cursor: cursor.to_string(),
    };
    frame::control(name, &body, Some(cursor), None)
}

/// The resume value: the `Last-Event-ID` header (what a reconnecting EventSource sends), else
/// the `lastEventId`/`lastEventID` query parameter (first connects, clients without headers).
fn resume_value<'a>(headers: &'a HeaderMap, query: &'a Query) -> Result<Option<&'a str>, Error> {
    if let Some(value) = headers.get("last-event-id") {
        let value = value.to_str().map_err(|_| {
            rt_core::Error::InvalidCursor("the Last-Event-ID header is not visible ASCII".into())
        })?;
        if !value.trim().is_empty() {
            return Ok(Some(value));
        }
    }
    Ok(RESUME_PARAMS.iter().find_map(|p| query.get(p)))
}
