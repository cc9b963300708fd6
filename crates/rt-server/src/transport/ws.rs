//! Options of the `ws` transport.

use std::time::Duration;

use rt_core::Hub;
use rt_http::Edge;

use crate::config::Config;

/// Command-line options of the `ws` transport.
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
}

pub(crate) fn build(hub: &Hub, config: &Config, edge: Edge) -> rt_ws::WebSocket {
    let a = &config.ws;
    let ws = rt_ws::Config::default()
        .ping_interval(a.ws_ping_interval)
        .pong_timeout(a.ws_pong_timeout)
        .max_message(a.ws_max_message)
        .max_frame(a.ws_max_message)
        .outbound_queue(a.ws_outbound_queue)
        .stall_timeout(a.ws_stall_timeout)
        .close_timeout(a.ws_close_timeout)
        .ack_window(a.ws_ack_window)
        .rate_limit(a.ws_rate_limit)
        .rate_burst(a.ws_rate_burst)
        .edge(edge);
    rt_ws::WebSocket::new(hub.clone(), ws)
}
