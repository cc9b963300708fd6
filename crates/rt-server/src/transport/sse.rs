//! Options of the `sse` transport.

use rt_core::Hub;

use crate::config::Config;

/// Command-line options of the `sse` transport.
#[derive(Debug, Clone, clap::Args)]
pub struct SseArgs {}

pub(crate) fn build(hub: &Hub, _config: &Config) -> rt_sse::Sse {
    rt_sse::Sse::new(hub.clone(), rt_sse::Config::default())
}
