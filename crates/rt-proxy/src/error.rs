//! Everything that can go wrong configuring or calling a hook.

use std::time::Duration;

/// Why a hook could not be configured, or could not decide.
///
/// A call that fails is turned into [`rt_http::Error::HookFailed`] (`503`): hooks fail closed
/// unless [`ProxyConfig::fail_open`](crate::ProxyConfig::fail_open) says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hook URL that is not an absolute `http://` or `https://` URL.
    #[error("hook URL {url:?} is not usable: {reason}; give an absolute http:// or https:// URL such as http://app:3000/rt/connect")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name to forward that is not a valid HTTP header name.
    #[error("{0:?} is not a header name to forward; list names such as cookie,authorization")]
    InvalidHeader(String),
    /// `max_in_flight` is zero: no call could ever be made.
    #[error("the most hook calls in flight must be at least 1")]
    NoConcurrency,
    /// The most calls in flight were already running.
    #[error("{max} hook calls were already in flight, the most allowed (raise --proxy-max-in-flight or speed up the backend)")]
    Overloaded {
        /// The concurrency bound.
        max: usize,
    },
    /// The backend did not answer within the timeout.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The hook URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The backend could not be reached (refused, reset, DNS, TLS).
    #[error("{url} could not be reached: {reason}")]
    Unreachable {
        /// The hook URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The backend answered with a status other than 2xx.
    #[error(
        "{url} answered HTTP {status}; a hook answers 200 with {{\"allow\": true|false, ...}}"
    )]
    Status {
        /// The hook URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The backend's answer is not the JSON a hook answers with.
    #[error("{url} gave an unusable answer: {reason}; a hook answers {{\"allow\": true|false, ...}} (docs/protocol.md, \"Backend hooks\")")]
    InvalidAnswer {
        /// The hook URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// A stable, short name for the `kind` label of [`ERRORS`](crate::metrics::ERRORS).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } | Error::InvalidHeader(_) | Error::NoConcurrency => "config",
            Error::Overloaded { .. } => "overloaded",
            Error::Timeout { .. } => "timeout",
            Error::Unreachable { .. } => "unreachable",
            Error::Status { .. } => "status",
            Error::InvalidAnswer { .. } => "invalid_answer",
        }
    }
}
