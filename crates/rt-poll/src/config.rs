//! Options of the polling endpoint.

use std::time::Duration;

use rt_core::http::Cors;

/// Options of the polling endpoint. Start from [`Config::default`] and set what differs.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = rt_poll::Config::default();
/// config.max_timeout = Duration::from_secs(25);
/// config.batch = 50;
/// config.cors = rt_core::http::Cors::parse("https://app.example.com");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a poll without a `timeout` parameter is held (default 30 s).
    pub default_timeout: Duration,
    /// The longest a poll is held, whatever its `timeout` asks (default 60 s). Keep it below
    /// the idle timeout of the proxies in front of the server.
    pub max_timeout: Duration,
    /// Most events in one answer (default 100; 0 counts as 1). A client further behind
    /// catches up over several polls.
    pub batch: usize,
    /// Which browser origins may poll and publish from another site (default: none).
    pub cors: Cors,
    /// Largest publish body in bytes; `None` (the default) derives it from the hub's payload
    /// limit with [`rt_core::http::publish_body_limit`].
    pub max_body: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
            batch: 100,
            cors: Cors::Off,
            max_body: None,
        }
    }
}
