//! The server's error type.

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port with --listen")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value is invalid; the message names the option.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The backplane could not be set up.
    #[error("backplane: {0}")]
    Backplane(String),
}
