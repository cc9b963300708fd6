//! The server API's configuration.

use std::sync::Arc;
use std::time::Duration;

use rt_http::{ApiKey, Log, Observer, Origins, DEFAULT_BODY_TIMEOUT};

/// How an [`Api`](crate::Api) answers. Build it with `Config::default()` and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The key every request must present. Default: none, so every request is refused with
    /// `401` until one is set.
    pub key: ApiKey,
    /// Browser origins allowed besides the server's own (backends send no `Origin`).
    /// Default: same-origin only.
    pub origins: Origins,
    /// Hears refused keys (as `auth_failed` of route `api_publish`, `api_broadcast`,
    /// `api_history`, `api_presence`, `api_presence_stats`, `api_channels`). Default: [`Log`].
    pub observer: Arc<dyn Observer>,
    /// How long a request body may take to arrive (`408` after). Default 10 s.
    pub body_timeout: Duration,
    /// Most channels in one broadcast. Default 1,000.
    pub max_broadcast_channels: usize,
    /// Most events in one history answer; a `limit` above it is refused. Default 1,000.
    pub max_history_limit: usize,
    /// Most members or channels in one presence or channels page; a `limit` above it is
    /// refused. Default 1,000.
    pub max_page_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            key: ApiKey::default(),
            origins: Origins::default(),
            observer: Arc::new(Log),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_broadcast_channels: 1_000,
            max_history_limit: 1_000,
            max_page_limit: 1_000,
        }
    }
}

rt_http::setters!(Config {
    key: ApiKey,
    origins: Origins,
    observer: Arc<dyn Observer>,
    body_timeout: Duration,
    max_broadcast_channels: usize,
    max_history_limit: usize,
    max_page_limit: usize,
});
