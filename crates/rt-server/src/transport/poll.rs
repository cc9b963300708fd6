//! Options of the `poll` transport.

use std::num::NonZeroUsize;
use std::time::Duration;

use rt_core::Hub;
use rt_http::Edge;

use crate::config::Config;

/// Command-line options of the `poll` transport.
#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {
    /// How long a poll without a `timeout` parameter is held (e.g. `30s`).
    #[arg(long, env = "RT_POLL_DEFAULT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_default_timeout: Duration,

    /// The longest a poll is held, whatever its `timeout` asks; keep it below the idle
    /// timeout of proxies in front of the server.
    #[arg(long, env = "RT_POLL_MAX_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub poll_max_timeout: Duration,

    /// Most events in one poll answer; a client further behind catches up over several polls.
    #[arg(long, env = "RT_POLL_BATCH", default_value = "100")]
    pub poll_batch: NonZeroUsize,

    /// Largest `POST /poll/publish` body in bytes (default: derived from --max-payload).
    #[arg(long, env = "RT_POLL_MAX_BODY")]
    pub poll_max_body: Option<usize>,
}

pub(crate) fn build(hub: &Hub, config: &Config, edge: Edge) -> rt_poll::Poll {
    let args = &config.poll;
    let poll = rt_poll::Config::default()
        .default_timeout(args.poll_default_timeout)
        .max_timeout(args.poll_max_timeout)
        .batch(args.poll_batch.get())
        .max_body(args.poll_max_body)
        .edge(edge);
    rt_poll::Poll::new(hub.clone(), poll)
}
