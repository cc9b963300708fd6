//! The Redis backplane, selected with `--backplane redis://...`.

use std::sync::Arc;

use rt_backplane::{RedisBackplane, RedisConfig};
use rt_core::Backplane;

use crate::config::Config;
use crate::error::Error;

/// Connects to Redis with the server's history, prefix and idempotency settings. An
/// unreachable Redis does not stop the server: it starts degraded and keeps reconnecting.
pub(crate) async fn build(config: &Config) -> Result<Arc<dyn Backplane>, Error> {
    let redis = RedisConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window);
    let backplane = RedisBackplane::connect(redis)
        .await
        .map_err(|e| Error::Backplane(e.to_string()))?;
    if let rt_core::Health::Degraded(reason) = backplane.health() {
        tracing::warn!(%reason, "starting without Redis; publishes answer 503 until it is reachable");
    }
    Ok(Arc::new(backplane))
}
