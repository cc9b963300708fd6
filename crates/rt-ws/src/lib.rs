//! rt-ws: the WebSocket transport of rt.
//!
//! [`WebSocket`] answers an HTTP/1.1 upgrade request or an HTTP/2 extended CONNECT (RFC 8441;
//! raw hyper, see [`Upgrade`] for the RFC 6455 checks) and then speaks rt's JSON protocol over the socket (`docs/protocol.md`,
//! section WebSocket): clients subscribe to channels (optionally resuming from a cursor),
//! publish with idempotent client message ids, and may acknowledge events; the server sends
//! events, heartbeats and close codes that say why a connection ended.
//!
//! Each connection holds one [`rt_core::Subscription`]; an event is serialised once per
//! publish and the same bytes go to every subscriber on the node. Idle connections are cheap:
//! tungstenite's buffers are cut from 128 KiB to 4 KiB ([`Config`]).
//!
//! permessage-deflate (RFC 7692) is negotiated when [`Config::compression`] enables it
//! ([`Compression`]): events are then compressed once per publish and shared, or with a
//! compressor per connection (context takeover); client messages are inflated with a size
//! limit (a zip bomb is closed with 1009).
//!
//! # Example
//!
//! [`WebSocket`] is a `tower_service::Service` over any request body: mount it in an axum app,
//! beside the app's own routes, with one [`Hub`] shared by the whole app. The
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
//! let ws = rt_ws::WebSocket::new(hub.clone(), rt_ws::Config::default().edge(edge));
//! let app = axum::Router::new().route_service("/ws", ws);
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(rt_http::StallListener::new(tcp, rt_http::DEFAULT_WRITE_STALL), app).await
//! # }
//! ```
//!
//! Plain hyper serves it through `hyper_util::service::TowerToHyperService`; `docs/embedding.md`
//! shows both and lists every knob.
//!
//! `examples/ws_server.rs` is this example with a publisher; `examples/echo.rs` is the plain
//! echo endpoint (same handshake and limits) that `cargo xtask autobahn` runs the Autobahn
//! test suite against.
//!
//! Feature `clap`: `WsArgs`, these options as command-line flags (`--ws-ping-interval`...),
//! for a program's own `clap` parser.
//!
//! | close code | when |
//! | --- | --- |
//! | 1000 | the client closed normally |
//! | 1001 | server shutdown, or no pong within `pong_timeout` |
//! | 1008 | a machine-readable [`reason`]: `origin_not_allowed`, `no_authenticator`, `invalid_token`, `token_expired`, `token_required`, `forbidden`, `too_many_invalid_messages`, `rate_limited`; or `forbidden: <the application's reason>` when a connect hook refuses (the handshake or an `auth` token) |
//! | 1009 | a message or frame over `max_message` / `max_frame` (inflated size for compressed messages) |
//! | 1011 | internal server error |
//! | 1013 | too slow to read, or too many unacknowledged events, or `hook_failed` ... when a connect hook could not decide (fail-closed) |
//! | 4000 | [`CLOSE_DISCONNECT`]: the application ended the subject's connections; the reason is its own; the client may reconnect (with its cursor) |
//! | 4001 | [`CLOSE_DISCONNECT_FINAL`]: the same with `reconnect: false`: the client should not come back |

#[cfg(feature = "clap")]
mod args;
mod config;
mod connection;
mod deflate;
mod error;
mod frames;
mod h2;
mod handshake;
mod limits;
mod protocol;
mod socket;

use std::sync::Arc;

use http::{Request, Response};
use rt_core::Hub;
use rt_http::Body;

#[cfg(feature = "clap")]
pub use args::WsArgs;
pub use config::Config;
pub use connection::{CLOSE_DISCONNECT, CLOSE_DISCONNECT_FINAL};
pub use deflate::Compression;
pub use error::Error;
pub use handshake::{reason, Upgrade};
pub use protocol::check_client_frame;
pub use socket::Socket;

/// The subprotocol of rt's JSON protocol, version 1.
pub const SUBPROTOCOL: &str = "rt.v1";

/// The transport's name in telemetry.
const TRANSPORT: &str = "ws";

/// The WebSocket endpoint, bound to a hub. Cheap to clone.
///
/// It is a `tower_service::Service` over any request body: mount it on a route of an axum
/// app (`Router::route_service`), or serve it with plain hyper (with upgrades) through
/// `hyper_util::service::TowerToHyperService`.
#[derive(Debug, Clone)]
pub struct WebSocket {
    hub: Hub,
    config: Arc<Config>,
}

rt_http::endpoint_service!(WebSocket);

impl WebSocket {
    /// The endpoint over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        WebSocket {
            hub,
            config: Arc::new(config),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request: a refused handshake gets its HTTP error; an accepted one gets
    /// `101 Switching Protocols` (HTTP/1.1) or `200` (an HTTP/2 extended CONNECT) and the
    /// connection is served on a task of its own. A refused
    /// origin or token is told after the upgrade, with close 1008 and a reason, because
    /// browsers cannot read the status of a failed upgrade.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        let mut upgrade = match Upgrade::new(req, &self.config).await {
            Ok(u) => u,
            Err(e) => return e.to_response(),
        };
        let response = upgrade.response();
        let (hub, config) = (self.hub.clone(), self.config.clone());
        tokio::spawn(async move {
            let admitted = upgrade.take_admitted();
            let http = upgrade.http();
            match upgrade.socket().await {
                // A task of its own, so that the upgrade's state is freed rather than kept
                // beside the connection's for as long as it lives.
                Ok(socket) => {
                    config.edge.observer.upgraded(TRANSPORT, http);
                    tokio::spawn(connection::run(socket, hub, config, admitted));
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        response
    }
}
