//! The query of a poll: `?channel=a,b&cursor=...&timeout=25`.

use std::time::Duration;

use rt_core::{Channel, Start};
use rt_http::{Admitted, Query};

use crate::config::Config;
use crate::error::Error;
use crate::session::SessionId;

/// A parsed poll.
#[derive(Debug)]
pub(crate) struct PollRequest {
    pub(crate) channels: Vec<Channel>,
    pub(crate) start: Start,
    /// How long to hold the poll when nothing is ready; zero for a short poll.
    pub(crate) timeout: Duration,
    /// The session of the client's earlier polls, if it says it has one.
    pub(crate) session: Option<SessionId>,
}

impl PollRequest {
    /// The poll of `query`, of its channels and those `admitted` by the connect hook.
    pub(crate) fn parse(
        query: &Query,
        config: &Config,
        max_channels: usize,
        admitted: &Admitted,
    ) -> Result<Self, Error> {
        Ok(PollRequest {
            channels: admitted.with_joined(query.channels(max_channels))?,
            start: Start::parse(query.get("cursor"))?,
            timeout: timeout(query.get("timeout"), config)?,
            session: match query.get("session") {
                None | Some("") => None,
                Some(s) => Some(
                    SessionId::parse(s)
                        .ok_or_else(|| Error::InvalidSession(s.chars().take(40).collect()))?,
                ),
            },
        })
    }
}

/// Seconds as `25` or `0.5`, capped at the configured maximum: any number above it, however
/// many digits it has (`18446744073709551615`), is the maximum. Exponents, signs, `inf` and
/// `NaN` (which `f64::from_str` would take) and anything else that is not a decimal number are
/// refused.
fn timeout(value: Option<&str>, config: &Config) -> Result<Duration, Error> {
    let Some(value) = value else {
        return Ok(config.default_timeout.min(config.max_timeout));
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(Error::InvalidTimeout(value.chars().take(32).collect()));
    }
    let max = config.max_timeout;
    // Decimal digits always parse as an f64 (too many give infinity, which is capped too).
    let seconds: f64 = value.parse().unwrap_or(f64::INFINITY);
    Ok(Duration::try_from_secs_f64(seconds).map_or(max, |t| t.min(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let config = Config::default();
        let t = |v| timeout(v, &config);
        assert_eq!(t(None).unwrap(), Duration::from_secs(30));
        assert_eq!(t(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(t(Some("2.5")).unwrap(), Duration::from_millis(2500));
        assert_eq!(t(Some("99999")).unwrap(), config.max_timeout);
        // Every out-of-range number is capped, whatever its length.
        let nines = "9".repeat(400);
        for huge in [
            "9999999999",
            "18446744073709551615",
            "18446744073709551616.5",
            "12345678901234567",
            &nines,
        ] {
            assert_eq!(t(Some(huge)).unwrap(), config.max_timeout, "{huge}");
        }
        let unbounded = Config {
            max_timeout: Duration::MAX,
            ..Config::default()
        };
        let huge = "9".repeat(16);
        assert!(timeout(Some(&huge), &unbounded).unwrap() > Duration::from_secs(1 << 40));
        for bad in [
            "", "-1", "1e3", "inf", "NaN", ".5", "5.", "1.2.3", " 1", "1 ", "0x10", "+1",
        ] {
            assert!(
                matches!(t(Some(bad)), Err(Error::InvalidTimeout(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn queries() {
        let config = Config::default();
        let admitted = Admitted {
            permissions: rt_core::Permissions::open(),
            presented: false,
            attachment: rt_http::Attachment::default(),
            channels: Vec::new(),
            data: None,
        };
        let r = PollRequest::parse(
            &Query::parse(Some("channel=a,b&cursor=earliest&timeout=0")),
            &config,
            10,
            &admitted,
        )
        .unwrap();
        assert_eq!(r.channels.len(), 2);
        assert_eq!(r.start, Start::Earliest);
        assert!(r.timeout.is_zero());
        let code = |q| match PollRequest::parse(&Query::parse(Some(q)), &config, 10, &admitted) {
            Err(Error::Http(e)) => e.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(code("timeout=1"), "no_channels");
        assert_eq!(code("channel=a%20b"), "invalid_channel");
        assert_eq!(code("channel=a&cursor=zz"), "invalid_cursor");
        let session = |q: &str| {
            PollRequest::parse(&Query::parse(Some(q)), &config, 10, &admitted).map(|r| r.session)
        };
        assert!(matches!(session("channel=a&session="), Ok(None)));
        let id = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(
            session(&format!("channel=a&session={id}"))
                .unwrap()
                .map(|s| s.to_string()),
            Some(id.to_ascii_lowercase())
        );
        for bad in ["zz", "0123", "0123456789abcdef0123456789abcdef0"] {
            assert!(
                matches!(
                    session(&format!("channel=a&session={bad}")),
                    Err(Error::InvalidSession(_))
                ),
                "{bad}"
            );
        }
    }
}
