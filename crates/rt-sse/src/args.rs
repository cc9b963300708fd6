//! The SSE options as command-line flags (feature `clap`), the ones rt-server has, for
//! programs that build their own command line: flatten [`SseArgs`] into a `clap::Parser` and
//! call [`SseArgs::config`].

use std::time::Duration;

use crate::Config;

/// Command-line options of the `sse` transport (`--sse-*`, environment `RT_SSE_*`); their
/// defaults are [`Config::default`]'s.
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     sse: rt_sse::SseArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--sse-retry", "1s"]);
/// let config = cli.sse.config().edge(rt_http::Edge::default().allow_anonymous());
/// assert_eq!(config.retry, std::time::Duration::from_secs(1));
/// ```
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

impl SseArgs {
    /// [`Config::default`] with these options. Set its [`edge`](Config::edge): the default one
    /// refuses every request.
    pub fn config(&self) -> Config {
        Config::default()
            .heartbeat(self.sse_heartbeat)
            .retry(self.sse_retry)
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
        sse: SseArgs,
    }

    /// The flags' defaults are the config's.
    #[test]
    fn defaults_are_the_configs() {
        let parsed = Cli::try_parse_from(["app"]).unwrap().sse.config();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
        let config = Cli::try_parse_from(["app", "--sse-heartbeat", "0s"]).unwrap();
        assert_eq!(config.sse.config().heartbeat, Duration::ZERO);
    }
}
