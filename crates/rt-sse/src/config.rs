//! Options of the transport.

use std::time::Duration;

use rt_http::Edge;

/// Options of the SSE endpoint. Start from [`Config::default`] and adjust with the setters.
///
/// ```
/// use std::time::Duration;
/// let config = rt_sse::Config::default()
///     .heartbeat(Duration::from_secs(30))
///     .retry(Duration::from_secs(2))
///     .edge(rt_http::Edge::default().allow_anonymous());
/// assert_eq!(config.heartbeat, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Idle time after which a `: ping` comment is sent, so that proxies and load balancers
    /// with idle timeouts keep the stream open and a dead client is noticed. Zero disables.
    /// Default 15 s.
    pub heartbeat: Duration,
    /// Reconnection delay sent to the client as `retry:` when a stream starts. On shutdown a
    /// random delay between this and twice this is sent, so that clients do not all come
    /// back at once. Default 3 s.
    pub retry: Duration,
    /// Who may open a stream, from which pages, and who hears about it. The default refuses
    /// every request until an authenticator (or `allow_anonymous`) is set.
    pub edge: Edge,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            edge: Edge::default(),
        }
    }
}

rt_http::setters!(Config {
    heartbeat: Duration,
    retry: Duration,
    edge: Edge,
});
