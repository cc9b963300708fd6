//! rt-poll: long and short polling for rt, on raw hyper.
//!
//! Polling is the transport that passes every proxy and firewall: plain `GET`s and `POST`s
//! with JSON answers. It shares the event model and cursors of rt's WebSocket and SSE
//! transports, so a client can switch transports and resume exactly where it was.
//!
//! - `GET <route>?channel=a,b&cursor=...&timeout=25` answers
//!   `{"events":[...],"cursor":"...","recovered":true,"resynced":[]}` as soon as at least one
//!   event after the cursor exists, or with no events when `timeout` seconds pass (capped by
//!   [`Config::max_timeout`], default [`Config::default_timeout`]). `timeout=0` is a short poll.
//!   The wait is the hub's own wake-up on publish: no sleep-and-check loop, no work while a
//!   poll is held, and a client that goes away frees its subscription at once.
//! - Polling again with the returned `cursor` gets every later event exactly once, however
//!   many polls it takes ([`Config::batch`] events at most per answer). A cursor that cannot
//!   be honoured answers at once with `recovered: false`, the channels in `resynced` and the
//!   live position: never a silent gap.
//! - `POST <route>/publish` publishes with the JSON of [`rt_core::PublishRequest`] and answers
//!   [`rt_core::PublishAck`], like every other rt publish (client message ids make retries
//!   idempotent).
//! - The cursor travels with each poll, so any node can answer it: no sticky sessions.
//!   Answers are `Cache-Control: no-store`; CORS (with preflight) follows the origins of
//!   [`Config::edge`].
//! - Presence: a poll of a channel that keeps presence gets a `session` id in its answer, to
//!   echo as `session=` in the next polls. The session, not each poll, is the client's
//!   presence member: it joins on the first poll and leaves [`Config::session_grace`] after
//!   the last one. With the permission to read the channel's presence, answers carry the
//!   joins and leaves heard since the previous answer (`"presence":[{"channel","joins",
//!   "leaves"}]`, at most [`Config::presence_buffer`] members, `presence_lost` when more were
//!   dropped), and a held poll is answered by them. Sessions live in the node's memory: a
//!   client that moves to another node becomes a new member there, loses what was buffered,
//!   and reads `/presence` for the truth.
//!
//! Which channels a client may poll and publish to is decided by the permissions its token
//! grants ([`Config::edge`]); channels outside them are answered `401`/`403`. An invalid name is a `400` (`invalid_channel`).
//! The wire contract is in `docs/protocol.md`.
//!
//! # Example
//!
//! [`Poll`] is a `tower_service::Service` over any request body: mount it in an axum app,
//! beside the app's own routes, with one [`Hub`](rt_core::Hub) shared by the whole app. The
//! edge decides who may connect: without an authenticator (or `allow_anonymous()`, as here)
//! every request is refused.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
//! let edge = rt_http::Edge::default().allow_anonymous();
//! let poll = rt_poll::Poll::new(hub.clone(), rt_poll::Config::default().edge(edge));
//! let app = axum::Router::new()
//!     .route_service("/poll", poll.clone())
//!     .route_service("/poll/publish", poll);
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(rt_http::StallListener::new(tcp, rt_http::DEFAULT_WRITE_STALL), app).await
//! # }
//! ```
//!
//! Plain hyper serves it through `hyper_util::service::TowerToHyperService`; `docs/embedding.md`
//! shows both and lists every knob.
//!
//! `examples/poll_server.rs` runs a server like this and polls it.
//!
//! # Features
//!
//! `clap`: `PollArgs`, these options as command-line flags (`--poll-batch`...), for a
//! program's own `clap` parser. Without it the crate needs only rt-core, rt-http and tokio.

#[cfg(feature = "clap")]
mod args;
mod batch;
mod config;
mod error;
mod poll;
mod request;
mod session;

#[cfg(feature = "clap")]
pub use args::PollArgs;
pub use config::Config;
pub use poll::Poll;
