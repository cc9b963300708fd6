//! Tuning and policy of the WebSocket transport.

use std::time::Duration;

use rt_http::Edge;

use crate::Compression;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Options of the WebSocket transport. Start from [`Config::default`] and change what you
/// need with the setters.
///
/// ```
/// use std::time::Duration;
/// let config = rt_ws::Config::default()
///     .ping_interval(Duration::from_secs(20))
///     .edge(rt_http::Edge::default().allow_anonymous());
/// assert_eq!(config.pong_timeout, Duration::from_secs(20));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How often the server sends a WebSocket Ping (and, with `app_heartbeat`, a
    /// `{"type":"heartbeat"}` message).
    pub ping_interval: Duration,
    /// How long the client may take to answer a Ping with a Pong before it is disconnected.
    pub pong_timeout: Duration,
    /// Also send a `heartbeat` data message at every ping: browsers cannot see control frames
    /// and some proxies only reset their idle timers on data frames.
    pub app_heartbeat: bool,
    /// Largest incoming message in bytes (close 1009 above it).
    pub max_message: usize,
    /// Largest incoming frame payload in bytes (close 1009 above it).
    pub max_frame: usize,
    /// Read buffer per connection, kept for the connection's life, and the most read from
    /// the socket at once. tungstenite's default (128 KiB) is far too big for many mostly
    /// idle connections, which only send a subscribe and pongs; a larger incoming frame
    /// still grows the buffer to fit it.
    pub read_buffer: usize,
    /// Bytes gathered before a write reaches the socket (each batch is flushed at its end
    /// anyway).
    pub write_buffer: usize,
    /// Most messages written to a connection's socket in one batch (one flush): the events
    /// already queued in its subscription are taken up to this many at a time.
    pub outbound_queue: usize,
    /// The write-stall bound: how long a write may wait for the client to drain its socket,
    /// or the acks window may stay full, before the connection is closed with 1013. A
    /// half-open client is cut by it.
    pub stall_timeout: Duration,
    /// For clients that opted into acks: most events sent and not yet acknowledged.
    pub ack_window: usize,
    /// Inbound messages per second allowed per connection (sustained).
    pub rate_limit: u32,
    /// Inbound messages allowed in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Invalid or rate-limited messages in a row before the connection is closed with 1008.
    pub max_strikes: u32,
    /// Subprotocols the server accepts, in order of preference (`rt.v1`).
    pub subprotocols: Vec<String>,
    /// How long a close handshake may take before the socket is dropped.
    pub close_timeout: Duration,
    /// permessage-deflate (RFC 7692): off by default; see [`Compression`].
    pub compression: Compression,
    /// Who may connect (authenticator), from which pages (origins), and who hears about it.
    /// The default refuses every connection (close 1008) until an authenticator (or
    /// `allow_anonymous`) is set.
    pub edge: Edge,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(20),
            app_heartbeat: true,
            max_message: 64 * 1024,
            max_frame: 64 * 1024,
            read_buffer: 1024,
            write_buffer: 4 * 1024,
            outbound_queue: 256,
            stall_timeout: Duration::from_secs(10),
            ack_window: 1024,
            rate_limit: 100,
            rate_burst: 200,
            max_strikes: 10,
            subprotocols: vec![crate::SUBPROTOCOL.to_owned()],
            close_timeout: Duration::from_secs(5),
            compression: Compression::off(),
            edge: Edge::default(),
        }
    }
}

rt_http::setters!(Config {
    ping_interval: Duration,
    pong_timeout: Duration,
    app_heartbeat: bool,
    max_message: usize,
    max_frame: usize,
    read_buffer: usize,
    write_buffer: usize,
    outbound_queue: usize,
    stall_timeout: Duration,
    ack_window: usize,
    rate_limit: u32,
    rate_burst: u32,
    max_strikes: u32,
    subprotocols: Vec<String>,
    close_timeout: Duration,
    compression: Compression,
    edge: Edge,
});

impl Config {
    /// The tungstenite configuration these options imply: small buffers and the size limits.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(self.write_buffer)
            .max_message_size(Some(self.max_message))
            .max_frame_size(Some(self.max_frame))
    }
}
