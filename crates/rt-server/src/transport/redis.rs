//! The Redis backplane, selected with `--backplane redis://...` (or `rediss://` for TLS).

use std::path::PathBuf;
use std::sync::Arc;

use rt_backplane::{RedisBackplane, RedisConfig};
use rt_core::Backplane;

use crate::config::Config;
use crate::error::Error;

/// Redis options beyond the URL, prefix and history (which are shared with `memory`).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// PEM file with the CA certificate(s) that signed the Redis server's certificate, for a
    /// `rediss://` backplane (default: the platform's root certificates).
    #[arg(long, env = "RT_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
}

/// Connects to Redis with the server's history, prefix and idempotency settings. An
/// unreachable Redis does not stop the server: it starts degraded and keeps reconnecting.
pub(crate) async fn build(config: &Config) -> Result<Arc<dyn Backplane>, Error> {
    let mut redis = RedisConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window);
    if let Some(path) = &config.redis.redis_tls_ca {
        let pem = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "--redis-tls-ca: cannot read {}: {e}",
                path.display()
            ))
        })?;
        redis = redis.tls_ca(pem);
    }
    let backplane = RedisBackplane::connect(redis)
        .await
        .map_err(|e| Error::Backplane(e.to_string()))?;
    if let rt_core::Health::Degraded(reason) = backplane.health() {
        tracing::warn!(%reason, "starting without Redis; publishes answer 503 until it is reachable");
    }
    Ok(Arc::new(backplane))
}
