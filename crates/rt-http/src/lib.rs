//! rt-http: the HTTP edge that rt's transports share.
//!
//! rt-ws, rt-sse and rt-poll each answer HTTP requests. What they decide at the edge is
//! written once, here, so that every transport means the same thing by it:
//!
//! | piece | what |
//! | --- | --- |
//! | [`Body`], [`json`], [`error`] | the response body type and the one JSON error body (`{"error":{"code","message"}}`) |
//! | [`Query`] | the query string, decoded once per request, and its `channel` lists |
//! | [`Origins`] | one origin policy for CORS and the WebSocket `Origin` check; the default is same-origin only |
//! | [`token`], [`Authenticator`] | the token a request presents (`Authorization: Bearer`, `?token=`) and what it grants |
//! | [`Hooks`], [`Client`], [`Attachment`] | asynchronous decisions on connect, subscribe and client publish (e.g. rt-proxy asking the app's backend) |
//! | [`ApiKey`] | the key a backend presents to a server-side route, checked in constant time |
//! | [`Edge`] | an endpoint's policy: authenticator (none refuses everything unless [`Edge::allow_anonymous`]), hooks, origins, observer |
//! | [`Observer`], [`Connection`] | connection telemetry: opened, closed with a code, deliveries, refused credentials |
//! | [`Metrics`] | the observer that records it through the `metrics` facade (and logs) |
//! | [`publish`] | the HTTP publish answer every publish route shares |
//! | [`StallGuard`], `StallListener` | cut connections whose writes stall (half-open clients) |
//! | `Listener`, `ConnectionLimits`, `bind` | serve an app over hyper with connection limits, the stall guard and graceful shutdown; `bind` queues a burst of thousands of connects |
//! | `LimitArgs`, `AuthArgs` | the `ConnectionLimits` and the token options (`TokenVerifier` or anonymous grants) as `clap` flags, checked |
//! | `Tls` | HTTPS for the `Listener`: rustls from PEM files, ALPN `h2` and `http/1.1` |
//! | [`health`] | the `GET /health` answer: the backplane's state and the hub's load |
//! | [`LeanHttp1`] | serves HTTP/1.1 event streams on the connection itself, without hyper's per-connection buffers (hands everything else to hyper) |
//! | [`JsonParseErrors`] | the JSON error body on the `400`/`414`/`431` answers hyper writes by itself |
//! | [`endpoint_service!`] | makes an endpoint a `tower_service::Service` over any request body |
//!
//! rt-core stays the pure event model; this crate knows HTTP and nothing of any one
//! transport.
//!
//! | feature | what | default |
//! | --- | --- | --- |
//! | `jwt` | `TokenVerifier`: JSON Web Token (HS256, RS256, ES256) [`Authenticator`] | no |
//! | `axum` | [`StallListener`] implements `axum::serve::Listener` | no |
//! | `server` | `Listener`: hyper's HTTP/1.1 and HTTP/2 server within `ConnectionLimits` | no |
//! | `clap` | `LimitArgs` (`ConnectionLimits`) and, with `jwt`, `AuthArgs` (the edge's authenticator) as command-line flags; implies `server` | no |
//! | `tls` | `Tls` and `Listener::tls`: HTTPS with rustls (`ring`); implies `server` | no |

mod api_key;
#[cfg(feature = "clap")]
mod args;
mod auth;
mod body;
mod edge;
mod error;
mod health;
mod hooks;
#[cfg(feature = "jwt")]
mod jwt;
mod lean;
#[cfg(feature = "server")]
mod listener;
pub mod metrics;
mod observer;
mod origin;
mod parse_error;
mod publish;
mod query;
mod service;
mod stall;
#[cfg(feature = "tls")]
mod tls;

pub use api_key::ApiKey;
#[cfg(all(feature = "clap", feature = "jwt"))]
pub use args::AuthArgs;
#[cfg(feature = "clap")]
pub use args::LimitArgs;
pub use auth::{token, AnonymousGrants, Authenticator};
pub use body::{empty, full, json, json_bytes, Body};
pub use edge::{Admitted, Edge};
pub use error::{count_error, error, status, Error, ErrorCode, ERRORS};
pub use health::health;
pub use hooks::{Attachment, Client, ConnectRequest, Connected, HookFuture, Hooks};
#[cfg(feature = "jwt")]
pub use jwt::{Claims, TokenAlgorithm, TokenVerifier};
pub use lean::{LeanHttp1, Rewind};
#[cfg(feature = "server")]
pub use listener::{bind, ConnectionLimits, Listener, HANDSHAKE_TIMEOUTS, LISTEN_BACKLOG, REFUSED};
pub use metrics::Metrics;
pub use observer::{AuthFailure, Close, Connection, Log, Observer};
pub use origin::{host_from_authority, Origins};
pub use parse_error::JsonParseErrors;
pub use publish::{
    check_json_content_type, discard_body, publish, publish_as_client, publish_body_limit,
    read_body, read_json_body, DEFAULT_BODY_TIMEOUT,
};
pub use query::Query;
#[doc(hidden)]
pub use service::__private;
pub use service::ResponseFuture;
#[cfg(feature = "axum")]
pub use stall::StallListener;
pub use stall::{StallGuard, CUT_OFF, DEFAULT_WRITE_STALL};
#[cfg(feature = "tls")]
pub use tls::Tls;
