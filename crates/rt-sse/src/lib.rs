//! rt-sse: the Server-Sent Events transport of rt, on raw hyper 1.x.
//!
//! `GET /sse?channel=prices&channel=trades` answers a `text/event-stream` that any WHATWG
//! `EventSource` reads. Every event carries, as `id:`, the connection's cursor after it (the
//! position of *every* channel of the connection), so a browser's automatic reconnection
//! with `Last-Event-ID` resumes all channels exactly: the events missed meanwhile are
//! replayed once, then the stream goes live again.
//!
//! | on the wire | meaning |
//! | --- | --- |
//! | `retry:` + `event: rt.open` | first block: the starting cursor (as `id:`) and channels |
//! | `event: rt.connected` | second block, when the connect hook answered `data`: `{"type":"connected","subject","data"}`; no `id:` |
//! | `data:` lines, `event: <name>` unless `message` | an event; one `data:` line per line of the payload |
//! | `event: <name>;base64` | a binary payload, as standard base64 |
//! | `event: rt.resync` | continuity lost on the named channels; they go on live |
//! | `event: rt.shutdown` + `retry:` | last block: the server is stopping |
//! | `event: rt.expired` | last block: the client's token expired |
//! | `event: rt.unsubscribed` | the application took a channel out of the stream (`POST /api/unsubscribe`) |
//! | `event: rt.disconnect` | last block: the application ended the subject's connections (`POST /api/disconnect`); `reconnect: false` asks the client not to come back |
//! | `event: rt.presence` | connections joined or left a presence channel of the stream: `{"channel","joins","leaves"}` |
//! | `: ping` | heartbeat comment when idle ([`Config::heartbeat`]) |
//!
//! Resume values: the `Last-Event-ID` header, else the `lastEventId` (or Mercure's
//! `lastEventID`) query parameter; `earliest` replays everything retained. The full contract
//! is in `docs/protocol.md`.
//!
//! The `event:`/`data:` lines of an event are encoded once per publish and shared by every
//! connection; only the `id:` line is per connection.
//!
//! Every request passes the configuration's [`Edge`](rt_http::Edge) first: its origin, then
//! its token. An endpoint built without an authenticator refuses everyone (`401`) unless it
//! is built with `Edge::allow_anonymous()`.
//!
//! A client that stops reading (or vanishes while its socket still acknowledges: a half-open
//! connection) cannot be noticed from the stream: once the socket buffers are full, the server
//! stops polling the body. Bound the connection's writes where it is served instead, with
//! [`rt_http::StallGuard`] (plain hyper) or [`rt_http::StallListener`] (`axum::serve`), as
//! rt-server does; ending the connection drops the stream and its subscription.
//!
//! # Example
//!
//! [`Sse`] is a `tower_service::Service`: mount it in an axum app, beside the app's own
//! routes, with one [`Hub`](rt_core::Hub) shared by the whole app.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
//! let edge = rt_http::Edge::default().allow_anonymous();
//! let sse = rt_sse::Sse::new(hub.clone(), rt_sse::Config::default().edge(edge));
//! let app = axum::Router::new().route_service("/sse", sse);
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(tcp, app).await
//! # }
//! ```
//!
//! `examples/axum.rs` is a whole app (with the write-stall guard and a JSON route publishing
//! on the same hub); `cargo run -p rt-sse --example ticker` serves a ticking channel with
//! plain hyper, to try with `curl -N`. `docs/embedding.md` lists every knob.
//!
//! Feature `clap`: `SseArgs`, these options as command-line flags (`--sse-heartbeat`...), for
//! a program's own `clap` parser.

#[cfg(feature = "clap")]
mod args;
mod config;
mod endpoint;
mod error;
mod frame;

#[cfg(feature = "clap")]
pub use args::SseArgs;
pub use config::Config;
pub use endpoint::Sse;
pub use error::Error;
pub use frame::{
    BINARY_SUFFIX, CONNECTED, DISCONNECT, EXPIRED, OPEN, PRESENCE, RESYNC, SHUTDOWN, UNSUBSCRIBED,
};
