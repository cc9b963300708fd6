//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A transport that `--disable` can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// WebSocket (`/ws`).
    Ws,
    /// Server-Sent Events (`/sse`).
    Sse,
    /// Long and short polling (`/poll`, `/poll/publish`).
    Poll,
}

/// rt-server configuration. Every flag can also be given as the environment variable shown
/// in `--help` or in the `--config` file; flags win over the environment, which wins over the
/// file (see [`Config::load`]).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "rt-server",
    version,
    about = "rt reference server: WebSocket, SSE and polling on one event model"
)]
pub struct Config {
    /// A TOML file of options (keys are the long flag names). Flags win over the
    /// environment, which wins over the file; see docs/configuration.md.
    #[arg(long, env = "RT_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "RT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where events are ordered and stored: `memory` (this process only), a Redis URL
    /// (`redis://[:password@]host:port[/db]`, `rediss://` for TLS, a Redis Cluster as
    /// `redis-cluster://host:port[,host:port...][?replicas=N]`, `rediss-cluster://` for TLS;
    /// needs the `redis` feature)
    /// or NATS JetStream servers (`nats://[user:password@]host:port[,host:port...]`; needs
    /// the `nats` feature).
    #[arg(long, env = "RT_BACKPLANE", default_value = "memory")]
    pub backplane: String,

    /// Key prefix in Redis, so that several deployments can share one Redis.
    #[arg(long, env = "RT_REDIS_PREFIX", default_value = "rt")]
    pub redis_prefix: String,

    /// Channel patterns whose presence is kept (who is subscribed, on every node), read with
    /// `/api/presence`, `/api/presence-stats` and clients' `/presence` (repeat the flag or
    /// separate with commas, e.g. `chat:*`). Default: none.
    #[arg(long, env = "RT_PRESENCE", value_delimiter = ',', value_parser = rt_core::ChannelPattern::new)]
    pub presence: Vec<rt_core::ChannelPattern>,

    /// How long a node's presence and channel-registry entries in the backplane (Redis or
    /// NATS) outlive it (it refreshes them every third of this): a node that dies drops out
    /// this long after.
    #[arg(long, env = "RT_PRESENCE_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub presence_ttl: Duration,

    /// Events kept per channel for resuming clients.
    #[arg(long, env = "RT_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long events are kept for resuming clients (e.g. `30s`, `5m`, `1h`).
    #[arg(long, env = "RT_HISTORY_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub history_age: Duration,

    /// How long a client message id is remembered to make retried publishes idempotent.
    #[arg(long, env = "RT_IDEMPOTENCY_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub idempotency_window: Duration,

    /// How many live events a subscriber may fall behind before it catches up from history.
    #[arg(long, env = "RT_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,

    /// Most channels per connection or request.
    #[arg(long, env = "RT_MAX_CHANNELS", default_value_t = 100)]
    pub max_channels: usize,

    /// Largest event payload (and publish body) in bytes.
    #[arg(long, env = "RT_MAX_PAYLOAD", default_value_t = 64 * 1024)]
    pub max_payload: usize,

    /// API key for `POST /api/publish`. Without one, the publish API answers 401.
    #[arg(long, env = "RT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Browser origins, besides the server's own, allowed to use the transports: CORS for
    /// SSE and polling, the `Origin` check for WebSocket (comma-separated, `*` for any;
    /// empty: same-origin only).
    #[arg(
        long,
        env = "RT_CORS_ORIGINS",
        alias = "allowed-origins",
        default_value = ""
    )]
    pub cors_origins: String,

    /// How long a graceful shutdown may take before remaining connections are dropped.
    #[arg(long, env = "RT_SHUTDOWN_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_deadline: Duration,

    /// Transports to turn off although compiled in (comma-separated: `ws`, `sse`, `poll`);
    /// their routes answer 404. Clients fall back to the others.
    #[arg(long, env = "RT_DISABLE", value_enum, value_delimiter = ',')]
    pub disable: Vec<Transport>,

    /// Do not serve the demo page at `/` (a live view of a channel over every transport) and
    /// the browser client module under `/client/`.
    #[arg(long = "no-demo", action = clap::ArgAction::SetFalse)]
    pub demo: bool,

    /// Do not serve Prometheus metrics at `/metrics` (served by default; keep the path off the
    /// public internet at the proxy).
    #[arg(long = "no-metrics", action = clap::ArgAction::SetFalse)]
    pub metrics: bool,

    /// Log output format.
    #[arg(long, env = "RT_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Authentication: connection tokens and anonymous namespaces.
    #[command(flatten)]
    pub auth: rt_http::AuthArgs,

    /// Backend hooks.
    #[command(flatten)]
    pub proxy: rt_proxy::ProxyArgs,

    /// Connection limits.
    #[command(flatten)]
    pub limits: rt_http::LimitArgs,

    /// How long a publish body (`POST /api/publish`, `/poll/publish`) may take to arrive;
    /// slower is answered `408` and counted in rt_connections_cut_off_total{reason="body_timeout"}.
    #[arg(long, env = "RT_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// WebSocket options.
    #[cfg(feature = "ws")]
    #[command(flatten)]
    pub ws: rt_ws::WsArgs,

    /// SSE options.
    #[cfg(feature = "sse")]
    #[command(flatten)]
    pub sse: rt_sse::SseArgs,

    /// Polling options.
    #[cfg(feature = "poll")]
    #[command(flatten)]
    pub poll: rt_poll::PollArgs,

    /// TLS options.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// Redis backplane options.
    #[cfg(feature = "redis")]
    #[command(flatten)]
    pub redis: rt_backplane::RedisArgs,

    /// NATS backplane options.
    #[cfg(feature = "nats")]
    #[command(flatten)]
    pub nats: rt_backplane_nats::NatsArgs,
}
