//! The error type of rt-backplane: what can be wrong before the backplane starts.
//!
//! Once running, every failure to reach Redis is reported through rt-core as
//! [`rt_core::Error::Unavailable`] (HTTP `503`), never as a panic.

/// Why a [`RedisBackplane`](crate::RedisBackplane) could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL could not be used. The URL itself is not repeated, as it may hold a
    /// password.
    #[error(
        "invalid Redis URL: {0}; use redis://[user:password@]host:port[/db], \
         redis+unix:///path/to/socket, rediss://... for TLS (rt-backplane's `tls` feature), \
         or redis-cluster://[user:password@]host:port[,host:port...][?replicas=N] for a Redis Cluster \
         (rediss-cluster://... over TLS)"
    )]
    InvalidUrl(String),
    /// The key prefix is empty, too long or has characters outside the allowed set.
    #[error("invalid Redis key prefix {0:?}: use 1 to 64 characters of A-Z a-z 0-9 _ - . : @ /")]
    InvalidPrefix(String),
    /// A `redis-cluster://` URL names a Redis that is not a cluster, or a cluster that
    /// refused the connection for good (e.g. wrong credentials).
    #[error(
        "the Redis at {0}; use redis:// for a single Redis, redis-cluster://host:port[,host:port...] for a Redis Cluster"
    )]
    NotACluster(String),
    /// A Redis Cluster over TLS showed a certificate that the trusted CA did not sign (or
    /// not for the address connected to).
    #[error(
        "the Redis Cluster's TLS certificate was refused: {0}; give the CA that signed the \
         nodes' certificates with --redis-tls-ca (a certificate must name the host or IP the \
         nodes announce)"
    )]
    TlsRefused(String),
    /// A setting is out of range.
    #[error("invalid Redis backplane setting: {0}")]
    InvalidSetting(&'static str),
    /// A file that an option names cannot be read.
    #[error("{option}: cannot read {path}: {reason}")]
    File {
        /// The option naming the file (`--redis-tls-ca`).
        option: &'static str,
        /// The file.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
}
