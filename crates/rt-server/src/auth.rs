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
                let pem = std::fs::read(path)
                    .map_err(|e| Error::unreadable("--jwt-public-key", path, e))?;
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

/// Backend hooks (docs/protocol.md, "Backend hooks"): the application decides connects,
/// subscribes and client publishes over HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// POST each new connection (WebSocket, SSE stream, poll) to this URL; the application's
    /// JSON answer allows it (with its subject, channels and meta) or denies it (403 / close
    /// 1008 with its reason). Replaces token checks for connects.
    #[arg(long, env = "RT_PROXY_CONNECT", value_name = "URL")]
    pub proxy_connect: Option<String>,

    /// POST each channel a client subscribes to (and may, by its permissions) to this URL.
    #[arg(long, env = "RT_PROXY_SUBSCRIBE", value_name = "URL")]
    pub proxy_subscribe: Option<String>,

    /// POST each client publish (WebSocket, /poll/publish) to this URL; the answer may deny it
    /// or replace its payload.
    #[arg(long, env = "RT_PROXY_PUBLISH", value_name = "URL")]
    pub proxy_publish: Option<String>,

    /// Request headers copied onto hook calls (comma-separated, e.g. `cookie,authorization`),
    /// so that the application recognises its own sessions.
    #[arg(long, env = "RT_PROXY_FORWARD_HEADERS", default_value = "")]
    pub proxy_forward_headers: String,

    /// Longest the backend may take to answer a hook call; then the call fails.
    #[arg(long, env = "RT_PROXY_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub proxy_timeout: Duration,

    /// Most hook calls in flight at once; one more fails at once (503 `hook_failed`, or let
    /// through with --proxy-fail-open).
    #[arg(long, env = "RT_PROXY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub proxy_max_in_flight: usize,

    /// Let requests through when a hook call fails (timeout, backend down, bad answer) instead
    /// of refusing them with 503 `hook_failed` (the default: fail-closed).
    #[arg(long, env = "RT_PROXY_FAIL_OPEN")]
    pub proxy_fail_open: bool,
}

impl ProxyArgs {
    /// `edge` with the configured hooks, if any.
    pub(crate) fn hooks(&self, edge: Edge) -> Result<Edge, Error> {
        let config = |e: rt_proxy::Error| Error::Config(format!("--proxy-*: {e}"));
        let mut proxy = rt_proxy::ProxyConfig::default()
            .forward_headers(&self.proxy_forward_headers)
            .map_err(config)?
            .timeout(self.proxy_timeout)
            .max_in_flight(self.proxy_max_in_flight)
            .fail_open(self.proxy_fail_open);
        if let Some(url) = &self.proxy_connect {
            proxy = proxy.connect(url).map_err(config)?;
        }
        if let Some(url) = &self.proxy_subscribe {
            proxy = proxy.subscribe(url).map_err(config)?;
        }
        if let Some(url) = &self.proxy_publish {
            proxy = proxy.publish(url).map_err(config)?;
        }
        if !proxy.is_enabled() {
            return Ok(edge);
        }
        let proxy = rt_proxy::Proxy::new(proxy).map_err(config)?;
        Ok(edge.hooks(Arc::new(proxy)))
    }
}
