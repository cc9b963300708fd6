//! Options of the polling endpoint.

use std::time::Duration;

use rt_http::Edge;

/// Options of the polling endpoint. Start from [`Config::default`] and set what differs with
/// the setters.
///
/// ```
/// use std::time::Duration;
/// use rt_http::{Edge, Origins};
///
/// let config = rt_poll::Config::default()
///     .max_timeout(Duration::from_secs(25))
///     .batch(50)
///     .edge(Edge::default().allow_anonymous().origins(Origins::parse("https://app.example.com")));
/// assert_eq!(config.batch, 50);
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
    /// Who may poll and publish (authenticator), from which pages (origins), and who hears
    /// about it. The default refuses every request until an authenticator (or
    /// `allow_anonymous`) is set.
    pub edge: Edge,
    /// Largest publish body in bytes; `None` (the default) derives it from the hub's payload
    /// limit with [`rt_http::publish_body_limit`].
    pub max_body: Option<usize>,
    /// How long a publish body may take to arrive before it is answered `408` (default
    /// 10 s): a client sending it slowly holds a connection and a task meanwhile.
    pub body_timeout: Duration,
    /// How long a poll session outlives its last poll (default 10 s): a polling client stays
    /// one presence member between polls, and leaves this long after its last poll ended
    /// (see `docs/protocol.md`). Give more than the gap between two polls: the short-poll
    /// interval, or a long poller's reconnect delay.
    pub session_grace: Duration,
    /// Most joins plus leaves buffered for a poll session between two polls (default 1,000):
    /// past it the oldest batches are dropped and the next answer says `presence_lost`.
    pub presence_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
            batch: 100,
            edge: Edge::default(),
            max_body: None,
            body_timeout: rt_http::DEFAULT_BODY_TIMEOUT,
            session_grace: Duration::from_secs(10),
            presence_buffer: 1000,
        }
    }
}

rt_http::setters!(Config {
    default_timeout: Duration,
    max_timeout: Duration,
    batch: usize,
    edge: Edge,
    max_body: Option<usize>,
    body_timeout: Duration,
    session_grace: Duration,
    presence_buffer: usize,
});
