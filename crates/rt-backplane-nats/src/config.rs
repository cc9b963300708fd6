//! What a [`NatsBackplane`](crate::NatsBackplane) is built from.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rt_core::Retention;

use crate::error::Error;

/// Settings of a [`NatsBackplane`](crate::NatsBackplane). Every node of one deployment must
/// use the same `prefix` (it names the JetStream stream and its subjects) and the same
/// retention (the last node to connect sets the stream's limits).
///
/// ```
/// use std::time::Duration;
/// use rt_backplane_nats::NatsConfig;
///
/// let config = NatsConfig::new("nats://10.0.0.1:4222,10.0.0.2:4222")
///     .prefix("shop_prod")
///     .history(500, Duration::from_secs(600));
/// assert_eq!(config.retention.max_len, 500);
/// ```
#[derive(Clone)]
pub struct NatsConfig {
    /// `nats://[user:password@]host:port[,host:port...]` (or `tls://`): the servers of one
    /// NATS cluster.
    pub url: String,
    /// The contents of a `.creds` file (a user JWT and its NKey seed) to authenticate with,
    /// set by [`credentials_file`](Self::credentials_file).
    pub credentials: Option<String>,
    /// An NKey seed (`SU...`) to authenticate with, set by
    /// [`nkey_seed_file`](Self::nkey_seed_file).
    pub nkey_seed: Option<String>,
    /// PEM file of the authority that signed the servers' certificates, for TLS (read again
    /// on every connect).
    pub tls_ca: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that verify clients.
    pub tls_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub tls_client_key: Option<PathBuf>,
    /// Names the stream (`<prefix>`) and prefixes its subjects (`<prefix>.ch.<channel>`).
    pub prefix: String,
    /// How much history each channel keeps for resuming clients.
    pub retention: Retention,
    /// How long a client message id is remembered (the stream's duplicate window).
    pub idempotency_window: Duration,
    /// Replicas of the stream and of the presence bucket (1, 3 or 5 on a JetStream cluster).
    pub replicas: usize,
    /// How long a node's presence and channel-registry entries outlive its last heartbeat
    /// (it rewrites them every third of this): the presence bucket's `max_age`, so every node
    /// of a deployment should use the same (the last one to start sets it).
    pub presence_ttl: Duration,
    /// Limit on connecting and on every request: a publish fails with `503` after this long.
    pub timeout: Duration,
    /// First delay before reconnecting; it doubles after every failed attempt.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay (each delay is randomised between half and all of it).
    pub reconnect_max: Duration,
}

impl NatsConfig {
    /// Defaults: prefix `rt`, 1000 events / 5 minutes of history per channel, 2-minute
    /// idempotency window, 1 replica, 2 s timeout, reconnect delays from 100 ms up to 5 s,
    /// presence entries that outlive a dead node by 15 s.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            credentials: None,
            nkey_seed: None,
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
            prefix: "rt".into(),
            retention: Retention::default(),
            idempotency_window: Duration::from_secs(120),
            replicas: 1,
            presence_ttl: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }

    /// Sets the prefix.
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

    /// Sets the connect and request timeout.
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

    /// Sets how long a dead node's presence entries last.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Sets the number of stream replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Authenticates with the `.creds` file at `path` (a user JWT and its NKey seed, as
    /// `nsc` writes them). The file is read and parsed now, so a bad file fails at start-up
    /// rather than at every reconnect.
    ///
    /// ```
    /// use rt_backplane_nats::NatsConfig;
    ///
    /// let missing = NatsConfig::new("nats://127.0.0.1:4222").credentials_file("/nonexistent.creds");
    /// assert_eq!(missing.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn credentials_file(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        let creds = std::fs::read_to_string(path)?;
        async_nats::ConnectOptions::with_credentials(&creds)?;
        self.credentials = Some(creds);
        Ok(self)
    }

    /// Authenticates with the NKey seed (`SU...`, the user's private key) in the file at
    /// `path`, for servers that list the user's public key under `authorization { users }`.
    /// The file is read and the seed checked now.
    pub fn nkey_seed_file(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        let seed = std::fs::read_to_string(path)?.trim().to_owned();
        nkeys::KeyPair::from_seed(&seed).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("not an NKey seed: {e}"))
        })?;
        self.nkey_seed = Some(seed);
        Ok(self)
    }

    /// Requires TLS and trusts the CA certificate(s) in the PEM file at `path` (checked to be
    /// readable and to hold a certificate now).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        pem_certificate(&path)?;
        self.tls_ca = Some(path);
        Ok(self)
    }

    /// Requires TLS and presents the client certificate in the PEM file at `path` (checked
    /// now), for servers that verify clients (`tls { verify: true }`); needs
    /// [`tls_client_key_file`](Self::tls_client_key_file) too.
    pub fn tls_client_cert_file(mut self, path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        pem_certificate(&path)?;
        self.tls_client_cert = Some(path);
        Ok(self)
    }

    /// The private key (PEM) of the client certificate, checked to be readable now.
    pub fn tls_client_key_file(mut self, path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        std::fs::File::open(&path)?;
        self.tls_client_key = Some(path);
        Ok(self)
    }

    /// The servers, each `scheme://[user:pass@]host:port`, after checking the settings.
    pub(crate) fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, Error> {
        self.validate()?;
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| Error::InvalidUrl("no scheme".into()))?;
        if !matches!(scheme, "nats" | "tls") {
            return Err(Error::InvalidUrl(format!("unknown scheme {scheme:?}")));
        }
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        if hosts.is_empty() {
            return Err(Error::InvalidUrl("no host".into()));
        }
        hosts
            .split(',')
            .map(|host| {
                format!("{scheme}://{auth}{}", host.trim())
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|e| Error::InvalidUrl(format!("{}: {e}", host.trim())))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), Error> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !prefix_ok {
            return Err(Error::InvalidPrefix(self.prefix.chars().take(32).collect()));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidSetting("the timeout must be above zero"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(Error::InvalidSetting(
                "reconnect delays must be above zero, the maximum at least the minimum",
            ));
        }
        if self.retention.max_age < Duration::from_millis(1) {
            return Err(Error::InvalidSetting(
                "the history age must be at least 1 ms",
            ));
        }
        if self.idempotency_window < Duration::from_millis(100) {
            return Err(Error::InvalidSetting(
                "the idempotency window must be at least 100 ms",
            ));
        }
        if self.tls_client_cert.is_some() != self.tls_client_key.is_some() {
            return Err(Error::InvalidSetting(
                "a TLS client certificate needs its key, and a key its certificate",
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(Error::InvalidSetting("replicas must be 1 to 5"));
        }
        if self.presence_ttl < Duration::from_millis(300) {
            return Err(Error::InvalidSetting(
                "the presence ttl must be at least 300 ms",
            ));
        }
        Ok(())
    }
}

/// Checks that `path` is a readable PEM file with at least one certificate.
fn pem_certificate(path: &Path) -> io::Result<()> {
    let pem = std::fs::read(path)?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(())
}

/// The URL may hold a password, and the credentials are secrets: only the scheme and hosts
/// are shown, and whether credentials are set.
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redacted(&self.url))
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("prefix", &self.prefix)
            .field("retention", &self.retention)
            .field("idempotency_window", &self.idempotency_window)
            .field("replicas", &self.replicas)
            .field("presence_ttl", &self.presence_ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `nats://user:secret@host:4222` shown as `nats://***@host:4222`.
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
    fn parses_server_lists_and_validates() {
        let servers = NatsConfig::new("nats://u:p@a:4222,b:4223")
            .servers()
            .unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].port(), 4223);
        assert!(servers[1].has_user_pass());
        for bad in ["", "redis://a", "nats://", "nats://a:x"] {
            assert!(NatsConfig::new(bad).servers().is_err(), "{bad}");
        }
        for bad in ["", "has.dot", "a b", &"p".repeat(33)] {
            assert!(matches!(
                NatsConfig::new("nats://x").prefix(bad).servers(),
                Err(Error::InvalidPrefix(_))
            ));
        }
        assert!(NatsConfig::new("nats://x")
            .timeout(Duration::ZERO)
            .servers()
            .is_err());
        assert!(NatsConfig::new("nats://x")
            .presence_ttl(Duration::from_millis(299))
            .servers()
            .is_err());
    }

    #[test]
    fn hides_passwords() {
        let shown = format!("{:?}", NatsConfig::new("nats://user:pw@h:4222"));
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(redacted("nats://h:1"), "nats://h:1");
    }
}
