//! Connection tokens: which client may use which channel.
//!
//! Without any token option the server is open (the development default): every client may
//! subscribe and publish anywhere. With `--jwt-hs256-secret` or `--jwt-public-key`, every
//! subscribe and publish needs a token granting the channel, except in the `--anonymous`
//! namespaces. The token is read here, once, for every transport route (`Authorization:
//! Bearer`, or `?token=` for browser APIs that cannot set headers), verified, and handed to
//! the transport as [`Permissions`] in the request's extensions; a bad token is answered
//! `401` at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::Request;
use rt_core::http::Query;
use rt_core::{Authenticator, ChannelPattern, Permissions, TokenAlgorithm, TokenVerifier};

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

/// Decides the permissions of each transport request.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    /// `None`: the server is open.
    authenticator: Option<Arc<dyn Authenticator>>,
}

impl Auth {
    pub(crate) fn new(args: &AuthArgs) -> Result<Self, Error> {
        let config = |option: &str, e: rt_core::Error| Error::Config(format!("{option}: {e}"));
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
            (None, None) => {
                if !args.anonymous.is_empty() || !args.anonymous_publish.is_empty() {
                    return Err(Error::Config(
                        "--anonymous and --anonymous-publish only make sense with tokens required (--jwt-hs256-secret or --jwt-public-key); without them everything is open".into(),
                    ));
                }
                tracing::warn!("no --jwt-hs256-secret or --jwt-public-key: anyone may subscribe and publish on any channel (development default)");
                return Ok(Auth {
                    authenticator: None,
                });
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
        Ok(Auth {
            authenticator: Some(Arc::new(verifier)),
        })
    }

    /// Authenticates a transport request: puts its [`Permissions`] and the authenticator
    /// (for tokens sent later, over WebSocket) into its extensions, or answers `401` for a
    /// token that does not verify. Other routes (`/api/publish` has its API key) pass as they
    /// are.
    pub(crate) fn admit<B>(&self, req: &mut Request<B>) -> Result<(), rt_core::Error> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(());
        };
        if crate::config::Transport::of_path(req.uri().path()).is_none() {
            return Ok(());
        }
        let query = Query::parse(req.uri().query());
        let token = token(req.headers(), &query);
        let permissions = authenticator.authenticate(token.as_deref())?;
        let extensions = req.extensions_mut();
        extensions.insert::<Permissions>(permissions);
        extensions.insert::<Arc<dyn Authenticator>>(authenticator.clone());
        Ok(())
    }
}

/// The token a request presents: `Authorization: Bearer <token>`, else `?token=<token>`.
fn token(headers: &HeaderMap, query: &Query) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .or_else(|| query.get("token"))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn auth(args: &[&str]) -> Result<Auth, Error> {
        let mut argv = vec!["rt-server"];
        argv.extend_from_slice(args);
        Auth::new(&crate::config::Config::try_parse_from(argv).unwrap().auth)
    }

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        let q = Query::parse(Some("token=from-query"));
        assert_eq!(token(&h, &q).as_deref(), Some("from-query"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(token(&h, &q).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(token(&h, &Query::default()), None);
        assert_eq!(
            token(&HeaderMap::new(), &Query::parse(Some("token="))),
            None
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(auth(&[]).unwrap().authenticator.is_none());
        let err = auth(&["--anonymous", "public:*"]).unwrap_err();
        assert!(err.to_string().contains("--anonymous"), "{err}");
        let err = auth(&["--jwt-hs256-secret", "s", "--anonymous", "a*b"]).unwrap_err();
        assert!(err.to_string().contains("--anonymous"), "{err}");
        let err = auth(&["--jwt-public-key", "/nonexistent.pem"]).unwrap_err();
        assert!(err.to_string().contains("--jwt-public-key"), "{err}");
        let err = auth(&["--jwt-public-key", "/dev/null", "--jwt-algorithm", "HS512"]).unwrap_err();
        assert!(err.to_string().contains("--jwt-algorithm"), "{err}");
        let mut req = Request::builder().uri("/poll").body(()).unwrap();
        assert!(auth(&["--jwt-hs256-secret", "s"])
            .unwrap()
            .admit(&mut req)
            .is_ok());
        assert!(!Permissions::of(req.extensions()).is_authenticated());
        let mut req = Request::builder().uri("/sse?token=bad").body(()).unwrap();
        let err = auth(&["--jwt-hs256-secret", "s"])
            .unwrap()
            .admit(&mut req)
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        // The publish API's bearer is an API key, not a token.
        let mut req = Request::builder()
            .uri("/api/publish")
            .header("authorization", "Bearer api-key")
            .body(())
            .unwrap();
        assert!(auth(&["--jwt-hs256-secret", "s"])
            .unwrap()
            .admit(&mut req)
            .is_ok());
    }
}
