//! Options of the `sse` transport.

use std::time::Duration;

use rt_core::Hub;
use rt_http::Edge;

use crate::config::Config;

/// Command-line options of the `sse` transport.
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

pub(crate) fn build(hub: &Hub, config: &Config, edge: Edge) -> rt_sse::Sse {
    let sse = rt_sse::Config::default()
        .heartbeat(config.sse.sse_heartbeat)
        .retry(config.sse.sse_retry)
        .edge(edge);
    rt_sse::Sse::new(hub.clone(), sse)
}
