//! Connection tokens: which client may use which channel.
//!
//! Without any token option, anyone may subscribe to any channel (`--anonymous-subscribe`,
//! default `*`) but publish only where `--anonymous-publish` allows (default: nowhere but
//! the demo page's `demo` channel while the demo is served); `--dev` opens everything. With
//! `--jwt-hs256-secret` or `--jwt-public-key`, every subscribe and publish needs a token
//! granting the channel, except in the anonymous namespaces (default: none). Each transport's
//! edge reads and verifies the token (`Authorization: Bearer`, or `?token=` for browser APIs
//! that cannot set headers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rt_core::ChannelPattern;
use rt_http::{AnonymousGrants, Edge, TokenAlgorithm, TokenVerifier};

use crate::error::Error;

/// Authentication options.
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

/// The channel the demo page uses, open to anonymous clients while the demo is served.
const DEMO_CHANNEL: &str = "demo";

impl AuthArgs {
    /// The edge every transport shares: tokens verified as configured, or the anonymous
    /// grants, or (`--dev`) open to everyone. `demo`: the demo page is served.
    pub(crate) fn edge(&self, demo: bool) -> Result<Edge, Error> {
        let args = self;
        let config = |option: &str, e: rt_core::Error| Error::Config(format!("{option}: {e}"));
        let patterns = |option: &str, list: &str| {
            ChannelPattern::parse_list(list).map_err(|e| config(option, e))
        };
        let subscribe = args.anonymous_subscribe.as_deref();
        let subscribe =
            |default: &str| patterns("--anonymous-subscribe", subscribe.unwrap_or(default));
        let publish = patterns("--anonymous-publish", &args.anonymous_publish)?;
        let verifier = match (&args.jwt_hs256_secret, &args.jwt_public_key) {
            (Some(secret), _) => TokenVerifier::hs256(secret.as_bytes())
                .map_err(|e| config("--jwt-hs256-secret", e))?,
            (None, Some(path)) => {
                let algorithm: TokenAlgorithm = args
                    .jwt_algorithm
                    .parse()
                    .map_err(|e| config("--jwt-algorithm", e))?;
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Config(format!(
                        "--jwt-public-key: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                TokenVerifier::from_pem(algorithm, &pem)
                    .map_err(|e| config("--jwt-public-key", e))?
            }
            (None, None) if args.dev => {
                tracing::warn!("--dev: anyone may subscribe and publish on any channel without a token; never use it in production");
                return Ok(Edge::default().allow_anonymous());
            }
            (None, None) => {
                let mut subscribe = subscribe("*")?;
                let mut publish = publish;
                if demo {
                    let channel =
                        ChannelPattern::new(DEMO_CHANNEL).map_err(|e| config("demo", e))?;
                    subscribe.push(channel.clone());
                    publish.push(channel);
                }
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
            .leeway(args.jwt_leeway)
            .anonymous_subscribe(subscribe("")?)
            .anonymous_publish(publish);
        if let Some(aud) = &args.jwt_audience {
            verifier = verifier.audience(aud);
        }
        if let Some(iss) = &args.jwt_issuer {
            verifier = verifier.issuer(iss);
        }
        Ok(Edge::default().authenticator(Arc::new(verifier)))
    }
}

/// Patterns as the comma-separated list they were given in.
fn list(patterns: &[ChannelPattern]) -> String {
    let names: Vec<String> = patterns.iter().map(ToString::to_string).collect();
    names.join(",")
}
