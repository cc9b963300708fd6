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
//!   `rt-backplane` provides Redis for many nodes. It also carries [`Signal`]s, messages to
//!   every node that are not events (end a user's connections, take a user off a channel).
//!
//! Publishes never wait on subscribers: each channel's live stream is a bounded queue, and a
//! subscriber that falls a whole queue behind catches up in place: it reads history from its
//! own position and rejoins the live stream, and gets a [`Delivery::Resync`] only when
//! history no longer reaches that position. The decisions at this seam are made by a state
//! machine without I/O, which the [`Subscription`] drives.
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
//! The [`telemetry`] module names the metrics the hub records (through the `metrics` facade).
//!
//! Access control is part of the model: a client's [`Permissions`] say which channels it may
//! subscribe to and publish on, and [`Subscription::set_permissions`] / [`Hub::publish_as`]
//! refuse channels outside them with [`Error::Unauthorized`] or [`Error::Forbidden`]. Turning
//! a token into permissions happens at the HTTP edge (`rt-http`).
//!
//! [`Presence`] says who is subscribed to a channel on every node (for the channels where
//! [`Hub::enable_presence`] turned it on) and which channels are active, through the
//! backplane, with counts that are read without listing anyone; subscribers of such a channel
//! also get its joins and leaves ([`Delivery::Presence`]), gathered per node into a few
//! [`Changes`]. A transport whose client outlives each request (polling) keeps its presence in
//! a [`Membership`] instead ([`Subscription::without_presence`]), and hears the node's batches
//! between requests through [`Hub::presence_changes`].
//!
//! rt-core does no I/O of its own and knows nothing of HTTP or of any transport.

mod auth;
mod backplane;
mod changes;
mod cursor;
mod error;
mod event;
mod history;
mod hub;
mod memory;
mod name;
mod presence;
mod publish;
mod seam;
mod signal;
mod subscription;
pub mod telemetry;

pub use auth::{ChannelPattern, Permissions};
pub use backplane::{
    Backplane, ChannelHead, Health, MessageId, NewEvent, Published, Read, ReadFrom, Sink,
};
pub use changes::Changes;
pub use cursor::{Cursor, Start};
pub use error::Error;
pub use event::{now_ms, Epoch, Event, Payload, Position, Text, Wire};
pub use history::{History, Retention, Since};
pub use hub::{Hub, HubConfig, HubStats};
pub use memory::MemoryBackplane;
pub use name::{Channel, EventName};
pub use presence::{
    ChannelCount, ChannelsPage, Member, MembersPage, Membership, Presence, PresenceChanges,
    PresenceStats,
};
pub use publish::{PublishAck, PublishRequest};
pub use signal::{Signal, SubjectSignals};
pub use subscription::{Delivery, Joined, Subscription};
