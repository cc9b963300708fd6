//! The error type of rt-backplane-nats: what can be wrong before the backplane starts.
//!
//! Once running, every failure to reach NATS is reported through rt-core as
//! [`rt_core::Error::Unavailable`] (HTTP `503`), never as a panic.

/// Why a [`NatsBackplane`](crate::NatsBackplane) could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server list could not be used. Credentials in it are not repeated.
    #[error(
        "invalid NATS URL: {0}; use nats://[user:password@]host:port[,host:port...] \
         (or tls://... for TLS)"
    )]
    InvalidUrl(String),
    /// The prefix is empty, too long or has characters outside the allowed set.
    #[error("invalid NATS prefix {0:?}: use 1 to 32 characters of A-Z a-z 0-9 _ -")]
    InvalidPrefix(String),
    /// A setting is out of range.
    #[error("invalid NATS backplane setting: {0}")]
    InvalidSetting(&'static str),
    /// The subscription to the signal subject (messages between nodes) could not be made.
    #[error("cannot subscribe to the NATS signal subject: {0}; is the connection closed?")]
    Signals(String),
    /// The credentials could not be parsed.
    #[error("invalid NATS credentials: {0}")]
    Credentials(String),
    /// A file that an option names cannot be read, or does not hold what it should.
    #[error("{option}: cannot read {path}: {reason}")]
    File {
        /// The option naming the file (`--nats-creds`...).
        option: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
