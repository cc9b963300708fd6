//! The hook options as command-line flags (feature `clap`), the ones rt-server has, for
//! programs that build their own command line: flatten [`ProxyArgs`] into a `clap::Parser`
//! and call [`ProxyArgs::hooks`].

use std::sync::Arc;
use std::time::Duration;

use rt_http::Edge;

use crate::{Error, Proxy, ProxyConfig};

/// Backend hooks (docs/protocol.md, "Backend hooks"): the application decides connects,
/// subscribes and client publishes over HTTP (`--proxy-*`, environment `RT_PROXY_*`).
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     proxy: rt_proxy::ProxyArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--proxy-connect", "http://127.0.0.1:3000/rt/connect"]);
/// let edge = cli.proxy.hooks(rt_http::Edge::default()).unwrap();
/// # let _ = edge;
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// POST each new connection (WebSocket, SSE stream, poll) and WebSocket `auth` token to
    /// this URL; the application's JSON answer allows it (with its subject, grants, meta,
    /// channels to join and data to show the client) or denies it (403 / close 1008 with its
    /// reason). Replaces token checks for connects.
    #[arg(long, env = "RT_PROXY_CONNECT", value_name = "URL")]
    pub proxy_connect: Option<String>,

    /// POST each channel a client subscribes to (and may, by its permissions) to this URL.
    #[arg(long, env = "RT_PROXY_SUBSCRIBE", value_name = "URL")]
    pub proxy_subscribe: Option<String>,

    /// POST each client publish (WebSocket, /poll/publish) to this URL; the answer may deny it
    /// or replace its payload.
    #[arg(long, env = "RT_PROXY_PUBLISH", value_name = "URL")]
    pub proxy_publish: Option<String>,

    /// Request headers copied onto hook calls (comma-separated, e.g. `cookie,authorization`),
    /// so that the application recognises its own sessions.
    #[arg(long, env = "RT_PROXY_FORWARD_HEADERS", default_value = "")]
    pub proxy_forward_headers: String,

    /// Longest the backend may take to answer a hook call; then the call fails.
    #[arg(long, env = "RT_PROXY_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub proxy_timeout: Duration,

    /// Most hook calls in flight at once; one more fails at once (503 `hook_failed`, or let
    /// through with --proxy-fail-open).
    #[arg(long, env = "RT_PROXY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub proxy_max_in_flight: usize,

    /// Let requests through when a hook call fails (timeout, backend down, bad answer) instead
    /// of refusing them with 503 `hook_failed` (the default: fail-closed).
    #[arg(long, env = "RT_PROXY_FAIL_OPEN")]
    pub proxy_fail_open: bool,
}

impl ProxyArgs {
    /// `edge` with the configured hooks; `edge` as it is when no hook URL is given.
    pub fn hooks(&self, edge: Edge) -> Result<Edge, Error> {
        let mut proxy = ProxyConfig::default()
            .forward_headers(&self.proxy_forward_headers)?
            .timeout(self.proxy_timeout)
            .max_in_flight(self.proxy_max_in_flight)
            .fail_open(self.proxy_fail_open);
        if let Some(url) = &self.proxy_connect {
            proxy = proxy.connect(url)?;
        }
        if let Some(url) = &self.proxy_subscribe {
            proxy = proxy.subscribe(url)?;
        }
        if let Some(url) = &self.proxy_publish {
            proxy = proxy.publish(url)?;
        }
        if !proxy.is_enabled() {
            return Ok(edge);
        }
        Ok(edge.hooks(Arc::new(Proxy::new(proxy)?)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    #[test]
    fn defaults_are_the_configs() {
        let cli = Cli::parse_from(["app"]);
        let config = ProxyConfig::default();
        assert_eq!(cli.proxy.proxy_timeout, config.timeout);
        assert_eq!(cli.proxy.proxy_max_in_flight, config.max_in_flight);
        assert_eq!(cli.proxy.proxy_fail_open, config.fail_open);
    }

    #[test]
    fn a_bad_url_or_header_is_refused() {
        let cli = Cli::parse_from(["app", "--proxy-connect", "app/rt"]);
        assert!(matches!(
            cli.proxy.hooks(Edge::default()),
            Err(Error::InvalidUrl { .. })
        ));
        let cli = Cli::parse_from(["app", "--proxy-forward-headers", "bad header"]);
        assert!(matches!(
            cli.proxy.hooks(Edge::default()),
            Err(Error::InvalidHeader(_))
        ));
    }
}
