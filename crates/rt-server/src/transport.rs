//! The command-line options of each optional part and how it is built from them. Each is
//! compiled only with its feature.
#![cfg_attr(
    not(any(feature = "ws", feature = "sse", feature = "poll")),
    allow(unused_imports)
)]

use std::time::Duration;

use rt_core::Hub;
use rt_http::Edge;

/// Command-line options of the `ws` transport.
#[cfg(feature = "ws")]
#[derive(Debug, Clone, clap::Args)]
pub struct WsArgs {
    /// Interval of WebSocket Pings and application heartbeats.
    #[arg(long, env = "RT_WS_PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ws_ping_interval: Duration,

    /// How long a client may take to answer a Ping before it is disconnected.
    #[arg(long, env = "RT_WS_PONG_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ws_pong_timeout: Duration,

    /// Largest incoming WebSocket message (and frame) in bytes; larger ones close with 1009.
    #[arg(long, env = "RT_WS_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub ws_max_message: usize,

    /// Most messages written to a connection per flush (events, replies and heartbeats are
    /// batched, then flushed once).
    #[arg(long, env = "RT_WS_OUTBOUND_QUEUE", default_value_t = 256)]
    pub ws_outbound_queue: usize,

    /// How long a connection may not take events (socket not draining, acks missing) before
    /// it is closed with 1013.
    #[arg(long, env = "RT_WS_STALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ws_stall_timeout: Duration,

    /// How long a close handshake may take (the close frame waits behind queued data)
    /// before the socket is dropped.
    #[arg(long, env = "RT_WS_CLOSE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub ws_close_timeout: Duration,

    /// Most unacknowledged events per connection for clients that opted into acks.
    #[arg(long, env = "RT_WS_ACK_WINDOW", default_value_t = 1024)]
    pub ws_ack_window: usize,

    /// Inbound messages per second allowed per connection.
    #[arg(long, env = "RT_WS_RATE_LIMIT", default_value_t = 100)]
    pub ws_rate_limit: u32,

    /// Inbound messages allowed in a burst above the rate.
    #[arg(long, env = "RT_WS_RATE_BURST", default_value_t = 200)]
    pub ws_rate_burst: u32,

    /// permessage-deflate for clients that offer it: `off`, `shared` (each event compressed
    /// once per publish, no compressor per connection) or `context-takeover` (a compressor
    /// per connection: smaller frames for similar events, 200-320 KiB more per connection).
    #[arg(long, env = "RT_WS_COMPRESSION", default_value = "off")]
    pub ws_compression: rt_ws::Compression,
}

#[cfg(feature = "ws")]
impl WsArgs {
    pub(crate) fn build(&self, hub: &Hub, edge: Edge) -> rt_ws::WebSocket {
        let ws = rt_ws::Config::default()
            .ping_interval(self.ws_ping_interval)
            .pong_timeout(self.ws_pong_timeout)
            .max_message(self.ws_max_message)
            .max_frame(self.ws_max_message)
            .outbound_queue(self.ws_outbound_queue)
            .stall_timeout(self.ws_stall_timeout)
            .close_timeout(self.ws_close_timeout)
            .ack_window(self.ws_ack_window)
            .rate_limit(self.ws_rate_limit)
            .rate_burst(self.ws_rate_burst)
            .compression(self.ws_compression);
        rt_ws::WebSocket::new(hub.clone(), ws.edge(edge))
    }
}

/// Command-line options of the `sse` transport.
#[cfg(feature = "sse")]
#[derive(Debug, Clone, clap::Args)]
pub struct SseArgs {
    /// Idle time after which an SSE stream gets a `: ping` comment, so proxies with idle
    /// timeouts keep it open (`0s` disables).
    #[arg(long, env = "RT_SSE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_heartbeat: Duration,

    /// Reconnection delay sent to SSE clients as `retry:`.
    #[arg(long, env = "RT_SSE_RETRY", default_value = "3s", value_parser = humantime::parse_duration)]
    pub sse_retry: Duration,
}

#[cfg(feature = "sse")]
impl SseArgs {
    pub(crate) fn build(&self, hub: &Hub, edge: Edge) -> rt_sse::Sse {
        let sse = rt_sse::Config::default()
            .heartbeat(self.sse_heartbeat)
            .retry(self.sse_retry);
        rt_sse::Sse::new(hub.clone(), sse.edge(edge))
    }
}

/// Command-line options of the `poll` transport.
#[cfg(feature = "poll")]
#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {
    /// How long a poll without a `timeout` parameter is held (e.g. `30s`).
    #[arg(long, env = "RT_POLL_DEFAULT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_default_timeout: Duration,

    /// The longest a poll is held, whatever its `timeout` asks; keep it below the idle
    /// timeout of proxies in front of the server.
    #[arg(long, env = "RT_POLL_MAX_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub poll_max_timeout: Duration,

    /// Most events in one poll answer; a client further behind catches up over several polls.
    #[arg(long, env = "RT_POLL_BATCH", default_value = "100")]
    pub poll_batch: std::num::NonZeroUsize,

    /// Largest `POST /poll/publish` body in bytes (default: derived from --max-payload).
    #[arg(long, env = "RT_POLL_MAX_BODY")]
    pub poll_max_body: Option<usize>,
}

#[cfg(feature = "poll")]
impl PollArgs {
    pub(crate) fn build(&self, hub: &Hub, edge: Edge, body_timeout: Duration) -> rt_poll::Poll {
        let poll = rt_poll::Config::default()
            .default_timeout(self.poll_default_timeout)
            .max_timeout(self.poll_max_timeout)
            .batch(self.poll_batch.get())
            .max_body(self.poll_max_body)
            .body_timeout(body_timeout);
        rt_poll::Poll::new(hub.clone(), poll.edge(edge))
    }
}

/// Redis options beyond the URL, prefix and history (which are shared with `memory`).
#[cfg(feature = "redis")]
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// PEM file with the CA certificate(s) that signed the Redis server's certificate, for a
    /// `rediss://` backplane (default: the platform's root certificates).
    #[arg(long, env = "RT_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<std::path::PathBuf>,

    /// How long a node's presence and channel-registry entries in Redis outlive it (it
    /// refreshes them every third of this): a node that dies drops out this long after.
    #[arg(long, env = "RT_PRESENCE_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub presence_ttl: std::time::Duration,
}

/// The Redis backplane of `--backplane redis://...` (or `rediss://` for TLS), with the
/// server's history, prefix and idempotency settings.
#[cfg(feature = "redis")]
pub(crate) async fn redis(
    config: &crate::Config,
) -> Result<crate::serve::SharedBackplane, crate::Error> {
    use rt_backplane::{RedisBackplane, RedisConfig};
    let mut redis = RedisConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window)
        .presence_ttl(config.redis.presence_ttl);
    if let Some(path) = &config.redis.redis_tls_ca {
        let pem =
            std::fs::read(path).map_err(|e| crate::Error::unreadable("--redis-tls-ca", path, e))?;
        redis = redis.tls_ca(pem);
    }
    let backplane = RedisBackplane::connect(redis).await;
    let backplane = backplane.map_err(|e| crate::Error::Backplane(e.to_string()))?;
    Ok(std::sync::Arc::new(backplane))
}

/// NATS options beyond the URL (which may hold `user:password@`), prefix and history.
#[cfg(feature = "nats")]
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// A NATS `.creds` file (user JWT and NKey seed) to authenticate with.
    #[arg(long, env = "RT_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<std::path::PathBuf>,

    /// A file holding the NKey seed (`SU...`) to authenticate with, for NATS servers that
    /// list the user's public NKey.
    #[arg(long, env = "RT_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<std::path::PathBuf>,

    /// PEM file with the CA certificate(s) that signed the NATS servers' certificates; TLS is
    /// then required.
    #[arg(long, env = "RT_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<std::path::PathBuf>,

    /// PEM client certificate for NATS servers that verify clients (with --nats-tls-key).
    #[arg(
        long,
        env = "RT_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --nats-tls-cert.
    #[arg(
        long,
        env = "RT_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<std::path::PathBuf>,
}

/// The NATS JetStream backplane of `--backplane nats://host:port[,host:port...]`, with the
/// server's history and idempotency settings; the stream is named after `--redis-prefix`
/// when it is a valid stream name (the default `rt` is).
#[cfg(feature = "nats")]
pub(crate) async fn nats(
    config: &crate::Config,
) -> Result<crate::serve::SharedBackplane, crate::Error> {
    use rt_backplane_nats::{NatsBackplane, NatsConfig};
    let mut nats = NatsConfig::new(config.backplane.as_str())
        .prefix(config.redis_prefix.as_str())
        .history(config.history_size, config.history_age)
        .idempotency_window(config.idempotency_window);
    let args = &config.nats;
    /// Reads one file into the NATS settings.
    type Set = fn(NatsConfig, &std::path::Path) -> std::io::Result<NatsConfig>;
    let files: [(&str, &Option<std::path::PathBuf>, Set); 5] = [
        ("--nats-creds", &args.nats_creds, |c, p| {
            c.credentials_file(p)
        }),
        ("--nats-nkey", &args.nats_nkey, |c, p| c.nkey_seed_file(p)),
        ("--nats-tls-ca", &args.nats_tls_ca, |c, p| c.tls_ca_file(p)),
        ("--nats-tls-cert", &args.nats_tls_cert, |c, p| {
            c.tls_client_cert_file(p)
        }),
        ("--nats-tls-key", &args.nats_tls_key, |c, p| {
            c.tls_client_key_file(p)
        }),
    ];
    for (option, path, set) in files {
        if let Some(path) = path {
            nats = set(nats, path).map_err(|e| crate::Error::unreadable(option, path, e))?;
        }
    }
    let backplane = NatsBackplane::connect(nats).await;
    let backplane = backplane.map_err(|e| crate::Error::Backplane(e.to_string()))?;
    Ok(std::sync::Arc::new(backplane))
}
