//! rt-backplane-nats: the NATS JetStream backplane of rt, so that several rt nodes share one
//! ordered, resumable stream per channel without a Redis.
//!
//! [`NatsBackplane`] implements [`rt_core::Backplane`] on one JetStream stream named after the
//! prefix `P`, with one subject per channel, `P.ch.<channel>` (`.` in a channel name becomes
//! `~`, so each channel is one subject token):
//!
//! - **Offsets** are dense per channel: each message carries its offset in the `Rt-Offset`
//!   header, and a publish reads the channel's last message (a direct get), then publishes
//!   offset + 1 with `Nats-Expected-Last-Subject-Sequence` set to that message's stream
//!   sequence. JetStream stores it only if no other message reached the subject in between;
//!   otherwise the publish is retried. So each offset is stored once, in order.
//! - **The epoch** is derived from the stream's creation time: every node computes the same
//!   one, and a stream that was lost and recreated has another (`recovered: false`).
//! - **Idempotent publishes** use `Nats-Msg-Id` (`<channel> <message id>`) within the
//!   stream's duplicate window (the idempotency window); a duplicate returns the first
//!   publish's event.
//! - **History** is bounded per channel by `max_msgs_per_subject` (the history size, at least
//!   1 so the head survives) and by age at read time (events older than the history age are
//!   not served). Reads scan the channel's retained messages with a short-lived consumer.
//! - **Fan-out**: one ordered consumer per node and watched channel, not per client.
//! - **Signals** between nodes ([`rt_core::Signal`]) are core NATS messages on `P.signal`,
//!   outside the stream: not stored, best effort, received by every node.
//! - **Presence** and the active-channel registry ([`rt_core::Presence`]) are in the
//!   key-value bucket `P-presence`, whose `max_age` is [`NatsConfig::presence_ttl`]: every
//!   node writes only its own keys and rewrites them every third of the TTL, so a node that
//!   dies drops out by itself. Counts read one entry per node; member pages read the member
//!   chunks from the cursor on; the active channels of a `*` pattern read one small entry per
//!   channel and node (docs/scaling.md, "Presence on NATS").
//! - **Joining** the channels of a subscribe reads them concurrently, each with one direct
//!   get (its head) and, when history is asked for, one scan.
//! - **Faults**: while NATS is unreachable, publishes fail at once with `503` and health is
//!   degraded; the client reconnects with jittered exponential backoff, then every watched
//!   channel gets a new live consumer and is caught up from history.
//! - **Authentication and TLS**: `user:password@` in the URL, a `.creds` file, an NKey seed
//!   file, a CA file and a client certificate ([`NatsConfig`]'s `*_file` setters; with the
//!   `clap` feature, `NatsArgs` gives them as rt-server's `--nats-*` flags).
//!
//! docs/scaling.md explains why this is exact and how to size it.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use rt_backplane_nats::{NatsBackplane, NatsConfig};
//! use rt_core::{Channel, Hub, HubConfig, NewEvent, Payload};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backplane = NatsBackplane::connect(NatsConfig::new("nats://127.0.0.1:4222")).await?;
//! let hub = Hub::new(Arc::new(backplane), HubConfig::default());
//! let ack = hub.publish(NewEvent::new(Channel::new("news")?, Payload::text("hi"))).await?;
//! println!("stored at offset {}", ack.event.offset());
//! # Ok(()) }
//! ```

#[cfg(feature = "clap")]
mod args;
mod backplane;
mod config;
mod error;
mod presence;

#[cfg(feature = "clap")]
pub use args::NatsArgs;
pub use backplane::NatsBackplane;
pub use config::NatsConfig;
pub use error::Error;
