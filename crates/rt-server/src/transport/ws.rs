//! Options of the `ws` transport.

use rt_core::Hub;

use crate::config::Config;

/// Command-line options of the `ws` transport.
#[derive(Debug, Clone, clap::Args)]
pub struct WsArgs {}

pub(crate) fn build(hub: &Hub, _config: &Config) -> rt_ws::WebSocket {
    rt_ws::WebSocket::new(hub.clone(), rt_ws::Config::default())
}
