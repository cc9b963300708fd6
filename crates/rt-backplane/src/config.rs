//! What a [`RedisBackplane`](crate::RedisBackplane) is built from.

use std::time::Duration;

use rt_core::Retention;

use crate::error::Error;

/// Settings of a [`RedisBackplane`](crate::RedisBackplane). Every node of one deployment must
/// use the same `prefix` (and should use the same retention).
///
/// ```
/// use std::time::Duration;
/// use rt_backplane::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .prefix("shop-prod")
///     .history(500, Duration::from_secs(600));
/// assert_eq!(config.retention.max_len, 500);
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `redis+unix:///path/to/socket`, with the
    /// `tls` feature `rediss://[user:password@]host:port[/db]`, or for a Redis Cluster
    /// `redis-cluster://[user:password@]host:port[,host:port...][?replicas=N]`: any of its
    /// nodes (the others are discovered), and how many replicas must hold an event before it
    /// is acknowledged (default 1; 0 for a cluster without replicas). A Redis Cluster over TLS
    /// (`tls` feature) is the same with `rediss-cluster://`.
    pub url: String,
    /// PEM certificate(s) of the authority that signed the Redis server's certificate, for
    /// `rediss://` and `rediss-cluster://` (needs the `tls` feature). Without it, the
    /// platform's roots are trusted.
    pub tls_ca: Option<Vec<u8>>,
    /// Prefix of every key and pub/sub channel, so that several deployments can share a Redis.
    pub prefix: String,
    /// How much history each channel keeps (in Redis) for resuming clients.
    pub retention: Retention,
    /// How long a client message id is remembered to make retried publishes idempotent.
    pub idempotency_window: Duration,
    /// Limit on connecting and on every command: a publish fails with `503` after this long
    /// instead of hanging.
    pub timeout: Duration,
    /// First delay before reconnecting; it doubles after every failed attempt.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Each delay is randomised between half and all of it, so
    /// that many nodes do not reconnect in lockstep.
    pub reconnect_max: Duration,
    /// How long a node's presence and channel-registry entries outlive its last heartbeat
    /// (it beats every third of this): a node that dies drops out of presence this long
    /// after.
    pub presence_ttl: Duration,
}

impl RedisConfig {
    /// Defaults: prefix `rt`, 1000 events / 5 minutes of history per channel, 2-minute
    /// idempotency window, 2 s timeout, reconnect delays from 100 ms doubling up to 5 s,
    /// presence entries that outlive a dead node by 15 s.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "rt".into(),
            tls_ca: None,
            retention: Retention::default(),
            idempotency_window: Duration::from_secs(120),
            timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(15),
        }
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the history kept per channel: at most `max_len` events, none older than `max_age`.
    pub fn history(mut self, max_len: usize, max_age: Duration) -> Self {
        self.retention = Retention { max_len, max_age };
        self
    }

    /// Sets the idempotency window.
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// Sets how long a dead node's presence entries last.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Trusts the CA certificate(s) in `pem` for `rediss://` and `rediss-cluster://` (needs the
    /// `tls` feature).
    pub fn tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// Sets the connect and command timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the reconnect backoff range.
    pub fn reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Checks the settings and says what to connect to.
    pub(crate) fn target(&self) -> Result<Target, Error> {
        self.validate()?;
        if let Some(cluster) = crate::cluster::Nodes::parse(&self.url, self.tls_ca.as_deref())? {
            return Ok(Target::Cluster(cluster));
        }
        self.client().map(|c| Target::Single(Box::new(c)))
    }

    /// The client of a single Redis.
    fn client(&self) -> Result<redis::Client, Error> {
        let invalid = |e: redis::RedisError| Error::InvalidUrl(e.to_string());
        match &self.tls_ca {
            None => redis::Client::open(self.url.as_str()).map_err(invalid),
            #[cfg(feature = "tls")]
            Some(pem) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )
            .map_err(invalid),
            #[cfg(not(feature = "tls"))]
            Some(_) => Err(Error::InvalidSetting(
                "a TLS CA was given but rt-backplane was built without its `tls` feature",
            )),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 64
            && self.prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/')
            });
        if !prefix_ok {
            return Err(Error::InvalidPrefix(self.prefix.chars().take(64).collect()));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidSetting("the timeout must be above zero"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(Error::InvalidSetting(
                "reconnect delays must be above zero, the maximum at least the minimum",
            ));
        }
        if self.presence_ttl < Duration::from_millis(300) {
            return Err(Error::InvalidSetting(
                "the presence ttl must be at least 300 ms",
            ));
        }
        if self.retention.max_age < Duration::from_millis(1) {
            return Err(Error::InvalidSetting(
                "the history age must be at least 1 ms",
            ));
        }
        Ok(())
    }
}

/// What a [`RedisConfig`] connects to.
pub(crate) enum Target {
    Single(Box<redis::Client>),
    Cluster(crate::cluster::Nodes),
}

/// The URL may hold a password: only its scheme and host are shown.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("prefix", &self.prefix)
            .field("retention", &self.retention)
            .field("idempotency_window", &self.idempotency_window)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `redis://user:secret@host:6379/0` shown as `redis://***@host:6379/0`.
pub(crate) fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RedisConfig::new("redis://x").validate().is_ok());
        for bad in ["", "has space", "a{b}", &"p".repeat(65)] {
            assert!(matches!(
                RedisConfig::new("redis://x").prefix(bad).validate(),
                Err(Error::InvalidPrefix(_))
            ));
        }
        assert!(RedisConfig::new("redis://x")
            .timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(RedisConfig::new("redis://x")
            .reconnect(Duration::from_secs(2), Duration::from_secs(1))
            .validate()
            .is_err());
    }

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redacted("redis://user:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
        let shown = format!("{:?}", RedisConfig::new("rediss://:pw@h"));
        assert!(!shown.contains("pw"), "{shown}");
    }
}
