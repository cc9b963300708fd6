//! The connection limits and, with feature `jwt`, the token options as command-line flags
//! (feature `clap`), the ones rt-server has, for programs that build their own command line:
//! flatten [`LimitArgs`] (and `AuthArgs`) into a `clap::Parser`, serve with
//! [`LimitArgs::limits`] and build the edge with `AuthArgs::edge`.

#[cfg(feature = "jwt")]
use std::path::PathBuf;
#[cfg(feature = "jwt")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "jwt")]
use rt_core::ChannelPattern;

#[cfg(feature = "jwt")]
use crate::Edge;
use crate::{ConnectionLimits, Error};

/// Connection limits (`--max-connections`, ..., environment `RT_*`); their defaults are
/// [`ConnectionLimits::default`]'s.
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     limits: rt_http::LimitArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--max-connections-per-ip", "64"]);
/// assert_eq!(cli.limits.limits()?.max_connections_per_ip, 64);
/// let cli = Cli::parse_from(["app", "--max-header-bytes", "100"]);
/// assert!(cli.limits.limits().unwrap_err().to_string().contains("--max-header-bytes"));
/// # Ok::<(), rt_http::Error>(())
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most open connections in total; more are answered `503` and closed.
    #[arg(long, env = "RT_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Most open connections from one client IP address (0: no limit); more are answered `429`
    /// and closed. Off by default because behind a proxy every client has the proxy's address.
    #[arg(long, env = "RT_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// How long a new connection may stay silent before it is closed.
    #[arg(long, env = "RT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a client may take to send a request's headers (HTTP/1.1); also how long an idle
    /// keep-alive connection is kept. Cuts off slowloris clients.
    #[arg(long, env = "RT_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger is answered `431`
    /// (HTTP/1.1) or refused (HTTP/2). At least 8192. It is also the read buffer hyper keeps
    /// for each HTTP/1.1 connection it serves (SSE streams are served without it).
    #[arg(long, env = "RT_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most concurrent HTTP/2 streams (SSE streams, polls) on one connection.
    #[arg(long, env = "RT_H2_MAX_STREAMS", default_value_t = 256)]
    pub h2_max_streams: u32,

    /// How long a connection's writes may make no progress before it is closed (`0s`: never):
    /// a client that stopped reading, or vanished without closing (half-open), otherwise holds
    /// its SSE streams and their subscriptions for as long as TCP keeps the connection.
    #[arg(long, env = "RT_WRITE_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_stall_timeout: Duration,
}

impl LimitArgs {
    /// The limits, checked: hyper needs a head buffer of at least 8192 bytes, and a limit of
    /// zero connections, streams or seconds would refuse everyone.
    pub fn limits(&self) -> Result<ConnectionLimits, Error> {
        let invalid = if self.max_header_bytes < 8192 {
            "--max-header-bytes must be at least 8192"
        } else if self.max_connections == 0 || self.h2_max_streams == 0 {
            "--max-connections and --h2-max-streams must be at least 1"
        } else if self.handshake_timeout.is_zero() || self.header_read_timeout.is_zero() {
            "--handshake-timeout and --header-read-timeout must be more than 0s"
        } else {
            return Ok(ConnectionLimits::default()
                .max_connections(self.max_connections)
                .max_connections_per_ip(self.max_connections_per_ip)
                .handshake_timeout(self.handshake_timeout)
                .header_read_timeout(self.header_read_timeout)
                .max_header_bytes(self.max_header_bytes)
                .h2_max_streams(self.h2_max_streams)
                .write_stall_timeout(self.write_stall_timeout));
        };
        Err(Error::InvalidOption(invalid.to_owned()))
    }
}

/// Who may connect (`--jwt-*`, `--anonymous-*`, `--dev`, environment `RT_*`), feature `jwt`
/// too: connection tokens verified by a [`TokenVerifier`](crate::TokenVerifier), or without
/// token options the anonymous grants; [`AuthArgs::edge`] builds the [`Edge`].
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     auth: rt_http::AuthArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--jwt-hs256-secret", "s3cret"]);
/// let edge = cli.auth.edge(&[])?;
/// # Ok::<(), rt_http::Error>(())
/// ```
#[cfg(feature = "jwt")]
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Require connection tokens (JWT) signed with this HS256 secret. Without this or
    /// --jwt-public-key, clients need no token: they get the anonymous grants (see
    /// --anonymous-subscribe, --anonymous-publish and --dev; docs/security.md).
    #[arg(long, env = "RT_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// Require connection tokens (JWT) verified with this PEM public key (see
    /// --jwt-algorithm).
    #[arg(long, env = "RT_JWT_PUBLIC_KEY", conflicts_with = "jwt_hs256_secret")]
    pub jwt_public_key: Option<PathBuf>,

    /// Algorithm of --jwt-public-key: RS256 or ES256.
    #[arg(long, env = "RT_JWT_ALGORITHM", default_value = "RS256")]
    pub jwt_algorithm: String,

    /// Tolerated clock difference with the token issuer; a connection is ended this long after
    /// its token's `exp`.
    #[arg(long, env = "RT_JWT_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// Only accept tokens whose `aud` claim names this audience.
    #[arg(long, env = "RT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Only accept tokens whose `iss` claim is this issuer.
    #[arg(long, env = "RT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Channel patterns anyone may SUBSCRIBE to without a token (comma-separated, e.g.
    /// `public:*,news`). Default: `*` without token options (every channel), none with them.
    #[arg(long, env = "RT_ANONYMOUS_SUBSCRIBE", alias = "anonymous")]
    pub anonymous_subscribe: Option<String>,

    /// Channel patterns anyone may PUBLISH on without a token (comma-separated, e.g.
    /// `chat:*`). Default: none, except the demo page's `demo` channel while the demo is
    /// served and no token options are given.
    #[arg(long, env = "RT_ANONYMOUS_PUBLISH", default_value = "")]
    pub anonymous_publish: String,

    /// Development mode: anyone may subscribe and publish on every channel without a token.
    /// Never in production.
    #[arg(long, env = "RT_DEV", conflicts_with_all = ["jwt_hs256_secret", "jwt_public_key"])]
    pub dev: bool,
}

#[cfg(feature = "jwt")]
impl AuthArgs {
    /// The edge every endpoint shares: tokens verified as configured (anonymous grants from
    /// `--anonymous-*`, none by default), or without token options the anonymous grants
    /// (subscribe: every channel by default) plus `open`, which anyone may subscribe and
    /// publish on (rt-server: the demo page's channel), or with `--dev` open to everyone. The
    /// error names the option at fault.
    pub fn edge(&self, open: &[ChannelPattern]) -> Result<Edge, Error> {
        use crate::{AnonymousGrants, TokenAlgorithm, TokenVerifier};
        let invalid = |option: &str, e: &dyn std::fmt::Display| {
            Error::InvalidOption(format!("{option}: {e}"))
        };
        let patterns = |option: &str, list: &str| {
            ChannelPattern::parse_list(list).map_err(|e| invalid(option, &e))
        };
        let subscribe = self.anonymous_subscribe.as_deref();
        let subscribe =
            |default: &str| patterns("--anonymous-subscribe", subscribe.unwrap_or(default));
        let publish = patterns("--anonymous-publish", &self.anonymous_publish)?;
        let verifier = match (&self.jwt_hs256_secret, &self.jwt_public_key) {
            (Some(secret), _) => TokenVerifier::hs256(secret.as_bytes())
                .map_err(|e| invalid("--jwt-hs256-secret", &e))?,
            (None, Some(path)) => {
                let algorithm: TokenAlgorithm =
                    (self.jwt_algorithm.parse()).map_err(|e| invalid("--jwt-algorithm", &e))?;
                let pem = std::fs::read(path).map_err(|e| {
                    let e = format!("cannot read {}: {e}", path.display());
                    invalid("--jwt-public-key", &e)
                })?;
                TokenVerifier::from_pem(algorithm, &pem)
                    .map_err(|e| invalid("--jwt-public-key", &e))?
            }
            (None, None) if self.dev => {
                tracing::warn!("--dev: anyone may subscribe and publish on any channel without a token; never use it in production");
                return Ok(Edge::default().allow_anonymous());
            }
            (None, None) => {
                let (mut subscribe, mut publish) = (subscribe("*")?, publish);
                subscribe.extend_from_slice(open);
                publish.extend_from_slice(open);
                tracing::info!(
                    subscribe = %list(&subscribe),
                    publish = %list(&publish),
                    "no token options: clients need no token and get these anonymous grants"
                );
                let grants = AnonymousGrants::new(subscribe, publish);
                return Ok(Edge::default().authenticator(Arc::new(grants)));
            }
        };
        let mut verifier = verifier
            .leeway(self.jwt_leeway)
            .anonymous_subscribe(subscribe("")?)
            .anonymous_publish(publish);
        if let Some(aud) = &self.jwt_audience {
            verifier = verifier.audience(aud);
        }
        if let Some(iss) = &self.jwt_issuer {
            verifier = verifier.issuer(iss);
        }
        Ok(Edge::default().authenticator(Arc::new(verifier)))
    }
}

/// Patterns as the comma-separated list they were given in.
#[cfg(feature = "jwt")]
fn list(patterns: &[ChannelPattern]) -> String {
    let names: Vec<String> = patterns.iter().map(ToString::to_string).collect();
    names.join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn limits(args: &[&str]) -> Result<ConnectionLimits, Error> {
        let argv = ["app"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap().limits.limits()
    }

    /// The flags' defaults are the listener's.
    #[test]
    fn defaults_are_the_listeners() {
        let parsed = limits(&[]).unwrap();
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ConnectionLimits::default())
        );
    }

    #[test]
    fn out_of_range_limits_are_named() {
        for (flag, value) in [
            ("--max-header-bytes", "8191"),
            ("--max-connections", "0"),
            ("--h2-max-streams", "0"),
            ("--handshake-timeout", "0s"),
            ("--header-read-timeout", "0s"),
        ] {
            let e = limits(&[flag, value]).unwrap_err().to_string();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
        assert_eq!(
            limits(&["--write-stall-timeout", "0s"])
                .unwrap()
                .write_stall_timeout,
            Duration::ZERO
        );
    }

    #[cfg(feature = "jwt")]
    #[derive(Debug, Parser)]
    struct AuthCli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    /// What a client without a token may do on the edge that `args` build (with `demo` open).
    #[cfg(feature = "jwt")]
    fn anonymous(args: &[&str]) -> Result<rt_core::Permissions, String> {
        let argv = ["app"].iter().chain(args);
        let auth = AuthCli::try_parse_from(argv).unwrap().auth;
        let edge = auth.edge(&[ChannelPattern::new("demo").unwrap()]);
        let edge = edge.map_err(|e| e.to_string())?;
        let query = crate::Query::parse(None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let headers = http::HeaderMap::new();
        let admitted = runtime.block_on(edge.admit("api", &headers, &query));
        admitted.map(|a| a.permissions).map_err(|e| e.to_string())
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn anonymous_grants_follow_the_options() {
        let [news, demo] = ["news", "demo"].map(|c| rt_core::Channel::new(c).unwrap());
        let by_default = anonymous(&[]).unwrap();
        assert!(by_default.can_subscribe(&news) && by_default.can_publish(&demo));
        assert!(!by_default.can_publish(&news));
        let dev = anonymous(&["--dev"]).unwrap();
        assert!(dev.can_publish(&news));
        let granted = anonymous(&["--anonymous-publish", "news"]).unwrap();
        assert!(granted.can_publish(&news));
        // With tokens required, only the anonymous namespaces are open (none by default).
        let tokens = anonymous(&["--jwt-hs256-secret", "s", "--anonymous", "news"]).unwrap();
        assert!(tokens.can_subscribe(&news) && !tokens.can_subscribe(&demo));
        assert!(!tokens.can_publish(&demo));
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn bad_auth_options_are_named() {
        for (args, named) in [
            (&["--anonymous-publish", "a*b"][..], "--anonymous-publish"),
            (
                &["--jwt-hs256-secret", "s", "--anonymous", "a*b"],
                "--anonymous-subscribe",
            ),
            (
                &["--jwt-public-key", "/nonexistent.pem"],
                "--jwt-public-key: cannot read",
            ),
            (
                &["--jwt-public-key", "/dev/null", "--jwt-algorithm", "HS512"],
                "--jwt-algorithm",
            ),
        ] {
            let e = anonymous(args).unwrap_err();
            assert!(e.starts_with(named), "{args:?}: {e}");
        }
        assert!(AuthCli::try_parse_from(["app", "--dev", "--jwt-hs256-secret", "s"]).is_err());
    }
}
