//! Options of the `poll` transport.

use rt_core::Hub;

use crate::config::Config;

/// Command-line options of the `poll` transport.
#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {}

pub(crate) fn build(hub: &Hub, _config: &Config) -> rt_poll::Poll {
    rt_poll::Poll::new(hub.clone(), rt_poll::Config::default())
}
