//! Options of the transport.

use std::time::Duration;

use rt_core::http::Cors;

/// Options of the SSE endpoint. Start from [`Config::default`] and adjust with the setters.
///
/// ```
/// use std::time::Duration;
/// let config = rt_sse::Config::default()
///     .heartbeat(Duration::from_secs(30))
///     .retry(Duration::from_secs(2));
/// assert_eq!(config.heartbeat, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Which browser origins may open a stream from another site.
    pub cors: Cors,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            cors: Cors::Off,
        }
    }
}

impl Config {
    /// Sets [`Config::heartbeat`].
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Sets [`Config::retry`].
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = delay;
        self
    }

    /// Sets [`Config::cors`].
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = cors;
        self
    }
}
