//! rt-core: the transport-neutral heart of rt.
//!
//! Every transport (WebSocket, SSE, long and short polling) speaks the same model:
//!
//! - a [`Channel`] carries [`Event`]s; each event has a [`Position`]: an `offset` that grows by
//!   exactly one per event in its channel, and the [`Epoch`] of the history it belongs to;
//! - a [`Cursor`] is the position of a multi-channel subscription as one compact string
//!   (`9f2c,prices=42,trades=7`) that fits an SSE `id:`, a `Last-Event-ID` header and a URL;
//! - the [`Hub`] publishes events and hands out [`Subscription`]s that replay history after a
//!   cursor and then go live, with nothing lost or repeated at the seam, and tell the client
//!   ([`Delivery::Resync`], `recovered: false`) when continuity could not be kept;
//! - a [`Backplane`] orders and stores events; [`MemoryBackplane`] is the embedded default and
//!   `rt-backplane` provides Redis for many nodes.
//!
//! Publishes never wait on subscribers: each channel's live stream is a bounded queue, and a
//! subscriber that falls too far behind gets [`Delivery::Lagged`] so its transport can close it
//! with a reason while the client resumes from its cursor.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use rt_core::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
//! let prices = Channel::new("prices")?;
//! hub.publish(NewEvent::new(prices.clone(), Payload::text("1"))).await?;
//!
//! // A client that saw nothing resumes from "earliest" and gets the retained event, then live.
//! let mut sub = hub.subscribe([prices.clone()], Start::Earliest).await?;
//! hub.publish(NewEvent::new(prices.clone(), Payload::text("2"))).await?;
//! for expected in 1..=2 {
//!     let Some(Delivery::Event(e)) = sub.next().await else { unreachable!() };
//!     assert_eq!(e.offset(), expected);
//! }
//! let resume_here = sub.cursor().to_string();
//! # assert!(resume_here.ends_with(",prices=2"));
//! # Ok(()) }
//! ```
//!
//! The [`telemetry`] module names the metrics rt records (through the `metrics` facade) and
//! tracks client connections for metrics and logs.
//!
//! Access control is transport-neutral too: a server turns each client's token into
//! [`Permissions`] (with an [`Authenticator`] such as `TokenVerifier`), and
//! [`Subscription::set_permissions`] / [`Hub::publish_as`] refuse channels outside them with
//! [`Error::Unauthorized`] (401) or [`Error::Forbidden`] (403).
//!
//! | feature | what |
//! | --- | --- |
//! | `jwt` | `TokenVerifier` and `Claims`: JSON Web Token (HS256, RS256, ES256) verification |
//!
//! The [`http`] module holds the small HTTP helpers (JSON errors, query parsing, CORS) that the
//! transports share, so that every endpoint answers bad input the same way.

mod auth;
#[cfg(feature = "jwt")]
mod auth_jwt;
mod backplane;
mod cursor;
mod error;
mod event;
mod history;
pub mod http;
mod hub;
mod memory;
mod name;
mod publish;
mod subscription;
pub mod telemetry;

pub use auth::{authenticator_of, Authenticator, ChannelPattern, Permissions};
#[cfg(feature = "jwt")]
pub use auth_jwt::{Claims, TokenAlgorithm, TokenVerifier};
pub use backplane::{
    Backplane, ChannelHead, Health, MessageId, NewEvent, Published, Read, ReadFrom, Sink,
};
pub use cursor::{Cursor, Start};
pub use error::Error;
pub use event::{now_ms, Epoch, Event, Payload, Position, Text, Wire};
pub use history::{History, Retention, Since};
pub use hub::{Hub, HubConfig, HubStats};
pub use memory::MemoryBackplane;
pub use name::{Channel, EventName};
pub use publish::{PublishAck, PublishRequest};
pub use subscription::{Delivery, Joined, Subscription};
