//! What the hooks call, and how.

use std::time::Duration;

use http::header::HeaderName;
use http::Uri;

use crate::error::Error;

/// Which hooks are called, where, and within which bounds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rt_proxy::ProxyConfig;
///
/// let config = ProxyConfig::default()
///     .connect("http://127.0.0.1:3000/rt/connect")?
///     .publish("http://127.0.0.1:3000/rt/publish")?
///     .forward_headers("cookie, authorization")?
///     .timeout(Duration::from_millis(500));
/// assert_eq!(config.forward_headers.len(), 2);
/// # Ok::<_, rt_proxy::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Called for every new connection (WebSocket, SSE stream, poll, poll publish); without
    /// it, the edge's authenticator decides.
    pub connect: Option<Uri>,
    /// Called for every channel a client subscribes to that its permissions allow.
    pub subscribe: Option<Uri>,
    /// Called for every client publish that its permissions allow; may rewrite the payload.
    pub publish: Option<Uri>,
    /// Request headers copied onto every hook call (e.g. `cookie`, `authorization`), so that
    /// the backend recognises its own session. Those of the connecting request are kept for
    /// the connection's later subscribe and publish calls.
    pub forward_headers: Vec<HeaderName>,
    /// The longest a call may wait for the backend's answer (default 1 s).
    pub timeout: Duration,
    /// The most calls in flight at once (default 256); one more fails at once, refusing its
    /// request like any failed call.
    pub max_in_flight: usize,
    /// On a failed call (timeout, backend down, bad answer): `false` (the default) refuses
    /// the request with `503 hook_failed`; `true` lets it through as if no hook were set.
    pub fail_open: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect: None,
            subscribe: None,
            publish: None,
            forward_headers: Vec::new(),
            timeout: Duration::from_secs(1),
            max_in_flight: 256,
            fail_open: false,
        }
    }
}

impl ProxyConfig {
    /// Sets [`connect`](Self::connect) from a URL.
    pub fn connect(mut self, url: &str) -> Result<Self, Error> {
        self.connect = Some(parse_url(url)?);
        Ok(self)
    }

    /// Sets [`subscribe`](Self::subscribe) from a URL.
    pub fn subscribe(mut self, url: &str) -> Result<Self, Error> {
        self.subscribe = Some(parse_url(url)?);
        Ok(self)
    }

    /// Sets [`publish`](Self::publish) from a URL.
    pub fn publish(mut self, url: &str) -> Result<Self, Error> {
        self.publish = Some(parse_url(url)?);
        Ok(self)
    }

    /// Sets [`forward_headers`](Self::forward_headers) from a comma-separated list.
    pub fn forward_headers(mut self, list: &str) -> Result<Self, Error> {
        self.forward_headers = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                HeaderName::try_from(name).map_err(|_| Error::InvalidHeader(name.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_in_flight`](Self::max_in_flight).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Sets [`fail_open`](Self::fail_open).
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// Whether any hook is configured.
    pub fn is_enabled(&self) -> bool {
        self.connect.is_some() || self.subscribe.is_some() || self.publish.is_some()
    }
}

/// An absolute `http://` or `https://` URL.
fn parse_url(url: &str) -> Result<Uri, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        Some("http" | "https") => Err(invalid("it names no host")),
        _ => Err(invalid("its scheme is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_and_headers_are_checked() {
        for bad in ["app/rt", "ftp://app/rt", "http://", "not a url"] {
            let e = ProxyConfig::default().connect(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidUrl { .. }), "{bad}: {e}");
        }
        let e = ProxyConfig::default()
            .forward_headers("cookie, bad header")
            .unwrap_err();
        assert_eq!(e, Error::InvalidHeader("bad header".into()));
        let c = ProxyConfig::default()
            .subscribe("https://app.example.com/rt/subscribe")
            .unwrap();
        assert!(c.is_enabled());
        assert!(!ProxyConfig::default().is_enabled());
    }
}
