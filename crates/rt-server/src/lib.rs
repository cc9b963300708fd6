//! rt-server: the reference server. Every transport compiled in (features `ws`, `sse`,
//! `poll`; backplanes `redis`, `nats`) on one port, over HTTP/1.1 with upgrades and HTTP/2,
//! with `/health`, `/metrics`, `POST /api/publish` and the demo page; the routes are in
//! [the README](https://github.com/rt-rs/rt/tree/main/crates/rt-server) and docs/protocol.md.
//!
//! | module | what |
//! | --- | --- |
//! | `config`, `config_file`, `transport`, `tls` | options from flags, the environment and a `--config` TOML file ([`Config::load`]), and what each builds |
//! | `router` | the one route table |
//! | `serve` | the backplane, the hub, rt-http's `Listener` and the graceful shutdown ([`Server`]) |
//! | `metrics`, `demo` | the Prometheus exporter, the demo page (`/health` is rt-http's, the server API rt-api's) |
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

mod config;
mod config_file;
mod demo;
mod error;
mod metrics;
mod router;
mod serve;
mod tls;
mod transport;

pub use config::{Config, LogFormat, Transport};
pub use config_file::ConfigError;
pub use error::Error;
#[cfg(feature = "redis")]
pub use rt_backplane::RedisArgs;
#[cfg(feature = "nats")]
pub use rt_backplane_nats::NatsArgs;
pub use rt_http::{AuthArgs, LimitArgs};
#[cfg(feature = "poll")]
pub use rt_poll::PollArgs;
pub use rt_proxy::ProxyArgs;
#[cfg(feature = "sse")]
pub use rt_sse::SseArgs;
#[cfg(feature = "ws")]
pub use rt_ws::WsArgs;
pub use serve::Server;
pub use tls::TlsArgs;
