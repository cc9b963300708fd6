//! Connection tokens: which client may use which channel.
//!
//! Without any token option the server is open (the development default): every client may
//! subscribe and publish anywhere. With `--jwt-hs256-secret` or `--jwt-public-key`, every
//! subscribe and publish needs a token granting the channel, except in the `--anonymous`
//! namespaces. Each transport's edge reads and verifies the token (`Authorization: Bearer`,
//! or `?token=` for browser APIs that cannot set headers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rt_core::ChannelPattern;
use rt_http::{Edge, TokenAlgorithm, TokenVerifier};

use crate::error::Error;

/// Authentication options.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Require connection tokens (JWT) signed with this HS256 secret. Without this or
    /// --jwt-public-key the server is OPEN: anyone may subscribe and publish anywhere (a
    /// development default; see docs/security.md).
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

    /// With tokens required: channel patterns anyone may SUBSCRIBE to without a token
    /// (comma-separated, e.g. `public:*,news`).
    #[arg(long, env = "RT_ANONYMOUS", default_value = "")]
    pub anonymous: String,

    /// With tokens required: channel patterns anyone may PUBLISH on without a token.
    #[arg(long, env = "RT_ANONYMOUS_PUBLISH", default_value = "")]
    pub anonymous_publish: String,
}

impl AuthArgs {
    /// The edge every transport shares: tokens verified as configured, or open to everyone.
    pub(crate) fn edge(&self) -> Result<Edge, Error> {
        let args = self;
        let config = |option: &str, e: rt_core::Error| Error::Config(format!("{option}: {e}"));
        let verifier = match (&args.jwt_hs256_secret, &args.jwt_public_key) {
            (Some(secret), _) => TokenVerifier::hs256(secret.as_bytes())
                .map_err(|e| config("--jwt-hs256-secret", e))?,
            (None, Some(path)) => {
                let algorithm: TokenAlgorithm = args
                    .jwt_algorithm
                    .parse()
                    .map_err(|e| config("--jwt-algorithm", e))?;
                let pem = std::fs::read(path)
                    .map_err(|e| Error::unreadable("--jwt-public-key", path, e))?;
                TokenVerifier::from_pem(algorithm, &pem)
                    .map_err(|e| config("--jwt-public-key", e))?
            }
            (None, None) => {
                if !args.anonymous.is_empty() || !args.anonymous_publish.is_empty() {
                    return Err(Error::Config(
                        "--anonymous and --anonymous-publish only make sense with tokens required (--jwt-hs256-secret or --jwt-public-key); without them everything is open".into(),
                    ));
                }
                tracing::warn!("no --jwt-hs256-secret or --jwt-public-key: anyone may subscribe and publish on any channel (development default)");
                return Ok(Edge::default().allow_anonymous());
            }
        };
        let mut verifier = verifier
            .leeway(args.jwt_leeway)
            .anonymous_subscribe(
                ChannelPattern::parse_list(&args.anonymous)
                    .map_err(|e| config("--anonymous", e))?,
            )
            .anonymous_publish(
                ChannelPattern::parse_list(&args.anonymous_publish)
                    .map_err(|e| config("--anonymous-publish", e))?,
            );
        if let Some(aud) = &args.jwt_audience {
            verifier = verifier.audience(aud);
        }
        if let Some(iss) = &args.jwt_issuer {
            verifier = verifier.issuer(iss);
        }
        Ok(Edge::default().authenticator(Arc::new(verifier)))
    }
}
