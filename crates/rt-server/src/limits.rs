//! The connection-level limits' options: how many connections (in total and per client IP),
//! how long a client may take to start and to send its request, and how large its head may
//! be. rt-http's `Listener` applies them; limits on what flows inside a connection (channels,
//! payloads, message rates) belong to rt-core and the transports.

use std::time::Duration;

use rt_http::ConnectionLimits;

use crate::error::Error;

/// Connection limits.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most open connections in total; more are answered `503` and closed.
    #[arg(long, env = "RT_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Most open connections from one client IP address (0: no limit); more are answered `429`
    /// and closed. Off by default because behind a proxy every client has the proxy's address.
    #[arg(long, env = "RT_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// How long a new connection may stay silent before it is closed.
    #[arg(long, env = "RT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a client may take to send a request's headers (HTTP/1.1); also how long an idle
    /// keep-alive connection is kept. Cuts off slowloris clients.
    #[arg(long, env = "RT_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a publish body (`POST /api/publish`, `/poll/publish`) may take to arrive;
    /// slower is answered `408` and counted in rt_connections_cut_off_total{reason="body_timeout"}.
    #[arg(long, env = "RT_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger is answered `431`
    /// (HTTP/1.1) or refused (HTTP/2). At least 8192. It is also the read buffer hyper keeps
    /// for each HTTP/1.1 connection it serves (SSE streams are served without it).
    #[arg(long, env = "RT_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most concurrent HTTP/2 streams (SSE streams, polls) on one connection.
    #[arg(long, env = "RT_H2_MAX_STREAMS", default_value_t = 256)]
    pub h2_max_streams: u32,

    /// How long a connection's writes may make no progress before it is closed (`0s`: never):
    /// a client that stopped reading, or vanished without closing (half-open), otherwise holds
    /// its SSE streams and their subscriptions for as long as TCP keeps the connection.
    #[arg(long, env = "RT_WRITE_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_stall_timeout: Duration,
}

impl LimitArgs {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let message = if self.max_header_bytes < 8192 {
            "--max-header-bytes must be at least 8192"
        } else if self.max_connections == 0 || self.h2_max_streams == 0 {
            "--max-connections and --h2-max-streams must be at least 1"
        } else if [
            self.handshake_timeout,
            self.header_read_timeout,
            self.body_read_timeout,
        ]
        .contains(&Duration::ZERO)
        {
            "--handshake-timeout, --header-read-timeout and --body-read-timeout must be more than 0s"
        } else {
            return Ok(());
        };
        Err(Error::Config(message.into()))
    }

    /// The limits rt-http's listener applies.
    pub(crate) fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits::default()
            .max_connections(self.max_connections)
            .max_connections_per_ip(self.max_connections_per_ip)
            .handshake_timeout(self.handshake_timeout)
            .header_read_timeout(self.header_read_timeout)
            .max_header_bytes(self.max_header_bytes)
            .h2_max_streams(self.h2_max_streams)
            .write_stall_timeout(self.write_stall_timeout)
    }
}
