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
//! | `data:` lines, `event: <name>` unless `message` | an event; one `data:` line per line of the payload |
//! | `event: <name>;base64` | a binary payload, as standard base64 |
//! | `event: rt.resync` | continuity lost on the named channels; they go on live |
//! | `event: rt.lagged` | last block: the client fell behind; reconnect to resume |
//! | `event: rt.shutdown` + `retry:` | last block: the server is stopping |
//! | `event: rt.expired` | last block: the client's token expired |
//! | `: ping` | heartbeat comment when idle ([`Config::heartbeat`]) |
//!
//! Resume values: the `Last-Event-ID` header, else the `lastEventId` (or Mercure's
//! `lastEventID`) query parameter; `earliest` replays everything retained. The full contract
//! is in `docs/protocol.md`.
//!
//! The `event:`/`data:` lines of an event are encoded once per publish and shared by every
//! connection; only the `id:` line is per connection.
//!
//! A client that stops reading (or vanishes while its socket still acknowledges: a half-open
//! connection) cannot be noticed from the stream: once the socket buffers are full, hyper
//! stops polling the body. Bound the connection's writes where it is served instead, as
//! rt-server's `--write-stall-timeout` does; ending the connection drops the stream and its
//! subscription.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
//!
//! # async fn serve(req: http::Request<hyper::body::Incoming>) {
//! let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
//! let sse = rt_sse::Sse::new(hub, rt_sse::Config::default());
//! // In a hyper service, for the SSE route:
//! let response = sse.handle(req).await;
//! # drop(response); }
//! ```
//!
//! `cargo run -p rt-sse --example ticker` serves a ticking channel to try with `curl -N`.

mod config;
mod endpoint;
mod error;
mod frame;

pub use config::Config;
pub use endpoint::Sse;
pub use error::Error;
pub use frame::{BINARY_SUFFIX, EXPIRED, LAGGED, OPEN, RESYNC, SHUTDOWN};
