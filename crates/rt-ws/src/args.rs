//! The WebSocket options as command-line flags (feature `clap`), the ones rt-server has, for
//! programs that build their own command line: flatten [`WsArgs`] into a `clap::Parser` and
//! call [`WsArgs::config`].

use std::time::Duration;

use crate::{Compression, Config};

/// Command-line options of the `ws` transport (`--ws-*`, environment `RT_WS_*`); their
/// defaults are [`Config::default`]'s.
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     ws: rt_ws::WsArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--ws-ping-interval", "10s"]);
/// let config = cli.ws.config().edge(rt_http::Edge::default().allow_anonymous());
/// assert_eq!(config.ping_interval, std::time::Duration::from_secs(10));
/// ```
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
    pub ws_compression: Compression,
}

impl WsArgs {
    /// [`Config::default`] with these options (`--ws-max-message` bounds frames too). Set its
    /// [`edge`](Config::edge): the default one refuses every connection.
    pub fn config(&self) -> Config {
        Config::default()
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
            .compression(self.ws_compression)
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
        ws: WsArgs,
    }

    /// The flags' defaults are the config's, so a program with no flags set runs as one that
    /// uses `Config::default()`.
    #[test]
    fn defaults_are_the_configs() {
        let parsed = Cli::try_parse_from(["app"]).unwrap().ws.config();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn flags_set_the_config() {
        let args = [
            "app",
            "--ws-max-message",
            "1000",
            "--ws-compression",
            "shared",
        ];
        let config = Cli::try_parse_from(args).unwrap().ws.config();
        assert_eq!((config.max_message, config.max_frame), (1000, 1000));
        assert_eq!(config.compression, "shared".parse().unwrap());
        let bad = Cli::try_parse_from(["app", "--ws-ping-interval", "soon"]);
        assert!(bad.unwrap_err().to_string().contains("--ws-ping-interval"));
    }
}
