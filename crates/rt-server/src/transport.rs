//! The Redis and NATS backplanes, built from the shared options and their crates' own
//! (`RedisArgs`, `NatsArgs`). Each is compiled only with its feature.

/// The Redis backplane of `--backplane redis://...` (`rediss://` for TLS, `redis-cluster://`
/// for a Redis Cluster, `rediss-cluster://` for one over TLS), with the
/// server's history, prefix, idempotency and presence settings.
#[cfg(feature = "redis")]
pub(crate) async fn redis(
    config: &crate::Config,
) -> Result<crate::serve::SharedBackplane, crate::Error> {
    use rt_backplane::{RedisBackplane, RedisConfig};
    let redis = RedisConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window)
        .presence_ttl(config.presence_ttl);
    let redis = config.redis.apply(redis);
    let redis = redis.map_err(|e| crate::Error::Config(e.to_string()))?;
    let backplane = RedisBackplane::connect(redis).await;
    let backplane = backplane.map_err(|e| crate::Error::Backplane(e.to_string()))?;
    Ok(std::sync::Arc::new(backplane))
}

/// The NATS JetStream backplane of `--backplane nats://host:port[,host:port...]`, with the
/// server's history, idempotency and presence settings; the stream is named after `--redis-prefix`
/// when it is a valid stream name (the default `rt` is).
#[cfg(feature = "nats")]
pub(crate) async fn nats(
    config: &crate::Config,
) -> Result<crate::serve::SharedBackplane, crate::Error> {
    use rt_backplane_nats::{NatsBackplane, NatsConfig};
    let nats = NatsConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window)
        .presence_ttl(config.presence_ttl);
    let nats = config.nats.apply(nats);
    let nats = nats.map_err(|e| crate::Error::Config(e.to_string()))?;
    let backplane = NatsBackplane::connect(nats).await;
    let backplane = backplane.map_err(|e| crate::Error::Backplane(e.to_string()))?;
    Ok(std::sync::Arc::new(backplane))
}
