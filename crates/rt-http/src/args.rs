//! The connection limits as command-line flags (feature `clap`), the ones rt-server has, for
//! programs that build their own command line: flatten [`LimitArgs`] into a `clap::Parser`
//! and serve with [`LimitArgs::limits`].

use std::time::Duration;

use crate::{ConnectionLimits, Error};

/// Connection limits (`--max-connections`, ..., environment `RT_*`); their defaults are
/// [`ConnectionLimits::default`]'s.
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     limits: rt_http::LimitArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--max-connections-per-ip", "64"]);
/// assert_eq!(cli.limits.limits()?.max_connections_per_ip, 64);
/// let cli = Cli::parse_from(["app", "--max-header-bytes", "100"]);
/// assert!(cli.limits.limits().unwrap_err().to_string().contains("--max-header-bytes"));
/// # Ok::<(), rt_http::Error>(())
/// ```
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
    /// The limits, checked: hyper needs a head buffer of at least 8192 bytes, and a limit of
    /// zero connections, streams or seconds would refuse everyone.
    pub fn limits(&self) -> Result<ConnectionLimits, Error> {
        let invalid = if self.max_header_bytes < 8192 {
            "--max-header-bytes must be at least 8192"
        } else if self.max_connections == 0 || self.h2_max_streams == 0 {
            "--max-connections and --h2-max-streams must be at least 1"
        } else if self.handshake_timeout.is_zero() || self.header_read_timeout.is_zero() {
            "--handshake-timeout and --header-read-timeout must be more than 0s"
        } else {
            return Ok(ConnectionLimits::default()
                .max_connections(self.max_connections)
                .max_connections_per_ip(self.max_connections_per_ip)
                .handshake_timeout(self.handshake_timeout)
                .header_read_timeout(self.header_read_timeout)
                .max_header_bytes(self.max_header_bytes)
                .h2_max_streams(self.h2_max_streams)
                .write_stall_timeout(self.write_stall_timeout));
        };
        Err(Error::InvalidOption(invalid))
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
        limits: LimitArgs,
    }

    fn limits(args: &[&str]) -> Result<ConnectionLimits, Error> {
        let argv = ["app"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap().limits.limits()
    }

    /// The flags' defaults are the listener's.
    #[test]
    fn defaults_are_the_listeners() {
        let parsed = limits(&[]).unwrap();
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ConnectionLimits::default())
        );
    }

    #[test]
    fn out_of_range_limits_are_named() {
        for (flag, value) in [
            ("--max-header-bytes", "8191"),
            ("--max-connections", "0"),
            ("--h2-max-streams", "0"),
            ("--handshake-timeout", "0s"),
            ("--header-read-timeout", "0s"),
        ] {
            let e = limits(&[flag, value]).unwrap_err().to_string();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
        assert_eq!(
            limits(&["--write-stall-timeout", "0s"])
                .unwrap()
                .write_stall_timeout,
            Duration::ZERO
        );
    }
}
