//! rt-proxy: backend hooks. rt asks the application over HTTP whether a client may connect,
//! subscribe and publish, so that the application decides with its own sessions (cookies)
//! instead of minting tokens.
//!
//! | piece | what |
//! | --- | --- |
//! | [`ProxyConfig`] | the hook URLs, the headers to forward, the timeout, the concurrency bound, fail-closed or open |
//! | [`Proxy`] | the [`rt_http::Hooks`] that make the calls; mount it with [`rt_http::Edge::hooks`] on any transport |
//! | [`metrics`] | the calls' latency, answers and errors through the `metrics` facade |
//! | [`Error`] | configuration mistakes and failed calls |
//! | `ProxyArgs` (feature `clap`) | the same options as `--proxy-*` command-line flags, as rt-server has them |
//!
//! The JSON of the calls and answers is in docs/protocol.md ("Backend hooks");
//! docs/embedding.md shows a transport mounted with them. `examples/proxy_sse.rs` serves SSE
//! with a connect hook.

#[cfg(feature = "clap")]
mod args;
mod config;
mod error;
pub mod metrics;
mod proxy;
mod wire;

#[cfg(feature = "clap")]
pub use args::ProxyArgs;
pub use config::ProxyConfig;
pub use error::Error;
pub use proxy::Proxy;
