//! The Redis TLS and timeout options as command-line flags (feature `clap`), as rt-server has
//! them, for programs that build their own command line: flatten [`RedisArgs`] into a
//! `clap::Parser` and apply it to a [`RedisConfig`] with [`RedisArgs::apply`].

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, RedisConfig};

/// Redis options beyond the URL, prefix and history (`--redis-*`, environment `RT_REDIS_*`).
///
/// ```
/// use clap::Parser;
/// use rt_backplane::{RedisArgs, RedisConfig};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     redis: RedisArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--redis-tls-ca", "/nonexistent/ca.pem"]);
/// let refused = cli.redis.apply(RedisConfig::new("rediss://127.0.0.1:6380"));
/// assert!(refused.unwrap_err().to_string().starts_with("--redis-tls-ca: cannot read"));
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// PEM file with the CA certificate(s) that signed the Redis server's certificate, for a
    /// `rediss://` or `rediss-cluster://` backplane (default: the platform's root
    /// certificates).
    #[arg(long, env = "RT_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,

    /// How long Redis may take to answer a command (and to accept a connection): past it the
    /// publish or read answers `503`, the node reports `degraded` and reconnects. Raise it
    /// when Redis may pause longer (a slow disk, a big `BGSAVE` fork); lower it to fail fast.
    /// On a Redis Cluster, a publish waits for its replicas (`WAIT`) up to half of it.
    #[arg(long, env = "RT_REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
}

impl RedisArgs {
    /// `config` with the timeout and the CA file read into [`RedisConfig::tls_ca`]; the error
    /// names the option and the file.
    pub fn apply(&self, config: RedisConfig) -> Result<RedisConfig, Error> {
        if self.redis_timeout.is_zero() {
            return Err(Error::InvalidSetting("--redis-timeout must be above zero"));
        }
        let config = config.timeout(self.redis_timeout);
        let Some(path) = &self.redis_tls_ca else {
            return Ok(config);
        };
        let pem = std::fs::read(path).map_err(|e| Error::File {
            option: "--redis-tls-ca",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(config.tls_ca(pem))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        redis: RedisArgs,
    }

    #[test]
    fn the_timeout_defaults_to_the_configs() {
        let url = || RedisConfig::new("redis://127.0.0.1:6379");
        let cli = Cli::try_parse_from(["app"]).unwrap();
        let config = cli.redis.apply(url()).unwrap();
        assert_eq!(config.timeout, url().timeout);
    }

    #[test]
    fn the_timeout_is_set_and_zero_refused() {
        let url = || RedisConfig::new("redis://127.0.0.1:6379");
        let cli = Cli::try_parse_from(["app", "--redis-timeout", "250ms"]).unwrap();
        assert_eq!(
            cli.redis.apply(url()).unwrap().timeout,
            Duration::from_millis(250)
        );
        let cli = Cli::try_parse_from(["app", "--redis-timeout", "0s"]).unwrap();
        let refused = cli.redis.apply(url()).unwrap_err().to_string();
        assert!(refused.contains("--redis-timeout"), "{refused}");
    }

    #[test]
    fn the_ca_file_is_read() {
        let path = std::env::temp_dir().join(format!("rt-redis-args-{}.pem", std::process::id()));
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = || RedisConfig::new("rediss://127.0.0.1:6380");
        let cli = Cli::try_parse_from(["app"]).unwrap();
        assert_eq!(cli.redis.apply(url()).unwrap().tls_ca, None);
        let cli = Cli::try_parse_from(["app", "--redis-tls-ca", path.to_str().unwrap()]).unwrap();
        let config = cli.redis.apply(url()).unwrap();
        assert_eq!(
            config.tls_ca.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        std::fs::remove_file(path).unwrap();
    }
}
