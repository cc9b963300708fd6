//! The polling options as command-line flags (feature `clap`), the ones rt-server has, for
//! programs that build their own command line: flatten [`PollArgs`] into a `clap::Parser` and
//! call [`PollArgs::config`].

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::Config;

/// Command-line options of the `poll` transport (`--poll-*`, environment `RT_POLL_*`); their
/// defaults are [`Config::default`]'s.
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     poll: rt_poll::PollArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--poll-batch", "20"]);
/// let config = cli.poll.config().edge(rt_http::Edge::default().allow_anonymous());
/// assert_eq!(config.batch, 20);
/// ```
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

    /// How long a polling client stays a presence member after its last poll ended (e.g.
    /// `10s`); more than the gap between two polls.
    #[arg(long, env = "RT_POLL_SESSION_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_session_grace: Duration,

    /// Most joins plus leaves buffered for a polling client between two polls; past it the
    /// oldest are dropped and the answer says `presence_lost`.
    #[arg(long, env = "RT_POLL_PRESENCE_BUFFER", default_value = "1000")]
    pub poll_presence_buffer: NonZeroUsize,
}

impl PollArgs {
    /// [`Config::default`] with these options (`--max-payload` is the hub's
    /// `max_payload`). Set its [`edge`](Config::edge): the default one refuses every request.
    pub fn config(&self) -> Config {
        Config::default()
            .default_timeout(self.poll_default_timeout)
            .max_timeout(self.poll_max_timeout)
            .batch(self.poll_batch.get())
            .max_body(self.poll_max_body)
            .session_grace(self.poll_session_grace)
            .presence_buffer(self.poll_presence_buffer.get())
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
        poll: PollArgs,
    }

    /// The flags' defaults are the config's.
    #[test]
    fn defaults_are_the_configs() {
        let parsed = Cli::try_parse_from(["app"]).unwrap().poll.config();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
        let config = Cli::try_parse_from(["app", "--poll-max-body", "100"]).unwrap();
        assert_eq!(config.poll.config().max_body, Some(100));
        assert!(Cli::try_parse_from(["app", "--poll-batch", "0"]).is_err());
    }
}
