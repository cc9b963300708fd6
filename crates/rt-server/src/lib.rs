//! rt-server: the reference server.
//!
//! One port serves every transport compiled in, over HTTP/1.1 (with WebSocket upgrades) and
//! HTTP/2 (cleartext prior knowledge):
//!
//! | route | what | feature |
//! | --- | --- | --- |
//! | `GET /ws` | WebSocket | `ws` (default) |
//! | `GET /sse` | Server-Sent Events | `sse` (default) |
//! | `GET /poll`, `POST /poll/publish` | long and short polling | `poll` (default) |
//! | `POST /api/publish` | server-side publish with an API key | always |
//! | `GET /health` | liveness and backplane state | always |
//! | `GET /metrics` | Prometheus metrics (`--no-metrics` turns off) | always |
//! | `GET /`, `GET /client/*.js` | demo page and the browser client (`--no-demo` turns off) | always |
//!
//! `--disable ws,sse` turns compiled-in transports off at run time (their routes answer 404),
//! e.g. to check that clients fall back.
//!
//! The `redis` feature adds `--backplane redis://...` so several nodes share one stream per
//! channel; without it (and by default) history lives in memory.
//!
//! Options come from flags, the environment and a `--config` TOML file, in that order of
//! precedence ([`Config::load`]); `docs/configuration.md` lists them all.
//!
//! The binary is a thin `main` over this library, which tests and embedders can use directly:
//!
//! ```no_run
//! use clap::Parser;
//!
//! # async fn run() -> Result<(), rt_server::Error> {
//! let config = rt_server::Config::parse_from(["rt-server", "--listen", "127.0.0.1:0"]);
//! let server = rt_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```

mod api;
mod auth;
mod config;
mod config_file;
mod demo;
mod error;
mod limits;
mod metrics;
mod router;
mod serve;
mod tls;
mod transport;

pub use auth::AuthArgs;
pub use config::{Config, LogFormat, Transport};
pub use config_file::ConfigError;
pub use error::Error;
pub use limits::LimitArgs;
pub use serve::Server;
pub use tls::TlsArgs;
#[cfg(feature = "poll")]
pub use transport::PollArgs;
#[cfg(feature = "redis")]
pub use transport::RedisArgs;
#[cfg(feature = "sse")]
pub use transport::SseArgs;
#[cfg(feature = "ws")]
pub use transport::WsArgs;
