//! rt-client: the async Rust client of rt.
//!
//! It receives a set of channels over **WebSocket, Server-Sent Events or long polling** —
//! whichever gets through — and hands the application **every event exactly once**, in order
//! per channel, across reconnects, transport switches and server restarts; and it publishes
//! with an exactly-once effect. It mirrors the guarantees of the JavaScript client
//! (`clients/js`) for services: workers, bots, other backends.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use rt_client::{Client, Message, Update};
//!
//! # async fn run() -> Result<(), rt_client::Error> {
//! let client = Client::connect("http://127.0.0.1:8080")
//!     .token_fn(|_req| async { Ok::<_, std::io::Error>(String::from("a JWT")) });
//! let mut sub = client.subscribe(["chat:room-1", "presence"]).await?;
//! let ack = sub.publish(Message::text("chat:room-1", "hello")).await?; // once stored
//! # let _ = ack;
//! while let Some(update) = sub.next().await {
//!     match update {
//!         Update::Event(e) => println!("{} #{} {:?}", e.channel, e.offset, e.data),
//!         Update::Resync { channels, .. } => println!("events were missed on {channels:?}: reload"),
//!         Update::Open { transport, .. } => println!("open over {transport}"),
//!         Update::Retrying { error, retry_in, .. } => println!("{error}; again in {retry_in:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! | concern | behaviour |
//! | --- | --- |
//! | transports | [`Transport::Ws`], [`Transport::Sse`], [`Transport::Poll`], tried in that order ([`Transport::ShortPoll`] on request); one that cannot connect (a 404, a refused upgrade, no answer within the connect timeout) is skipped at once for the next. The one that worked is tried first on reconnect. |
//! | resume | one cursor (`<epoch>,<channel>=<offset>,…`) for all channels, on every transport: the WebSocket `subscribe`'s `cursor`, SSE `lastEventId`, the poll `cursor`. Save [`Subscription::cursor`] and pass it to [`Client::cursor`] to resume after a restart. |
//! | reconnects | capped exponential [`Backoff`] with full jitter (1 s base, 30 s cap); it starts over only after a connection stayed up 5 s. |
//! | exactly once | events at or below the last offset seen on their channel (same epoch) are dropped. |
//! | server disconnects | `POST /api/disconnect` with `reconnect: false` ends the stream after [`Update::Disconnected`]; otherwise the client reconnects and resumes |
//! | lost continuity | [`Update::Resync`] names the channels whose gap history could not cover; they go on live. |
//! | acks | with [`Client::acks`], WebSocket connections opt into acknowledgements: cumulative `ack`s of what reached the subscription's queue, so the server never has more than its ack window in flight. |
//! | publishing | [`Subscription::publish`] / [`Client::publish`] give each message an id and retry with the same id (over the open WebSocket, else HTTP) until acknowledged. |
//! | tokens | [`Client::token_fn`] is asked for a token before each connection; after a refusal (`token_expired`, `invalid_token`, …) it is asked for a fresh one and the transport retried at once. |
//! | liveness | a connection silent past [`Client::heartbeat`] (35 s) is presumed dead and replaced. |
//!
//! Plain `http://`/`ws://` only for now (no TLS).

mod backoff;
mod client;
mod cursor;
mod driver;
mod error;
mod event;
mod http;
mod poll;
mod publish;
mod sse;
mod subscription;
mod ws;

pub use backoff::Backoff;
pub use client::{Client, TokenRequest};
pub use error::{BoxError, Error};
pub use event::{Data, Event, Message, PublishAck, Transport, Update};
pub use rt_core::{Channel, Epoch};
pub use subscription::{Publisher, Subscription};
