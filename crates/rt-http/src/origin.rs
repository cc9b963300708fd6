//! One origin policy for every endpoint: which browser pages may use it, for CORS and for the
//! WebSocket `Origin` check alike.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{empty, Body};
use crate::error::Error;

/// Which browser origins may use an endpoint.
///
/// A request without an `Origin` header (a non-browser client, or a browser's same-origin
/// `GET`) is always allowed. A request whose `Origin` names the host it was sent to (its
/// `Host` header or HTTP/2 authority) is same-origin and always allowed. Any other origin is
/// allowed only as configured here. The default, like an empty list, is same-origin only.
///
/// # Examples
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use rt_http::Origins;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("host", HeaderValue::from_static("rt.example.com"));
/// headers.insert("origin", HeaderValue::from_static("https://app.example.com"));
/// assert!(!Origins::default().allows(&headers));
/// assert!(Origins::parse("https://app.example.com").allows(&headers));
/// headers.insert("origin", HeaderValue::from_static("https://rt.example.com"));
/// assert!(Origins::default().allows(&headers));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origins {
    /// Only pages of the endpoint's own origin.
    #[default]
    SameOrigin,
    /// Any origin (CORS answers `Access-Control-Allow-Origin: *`, without credentials).
    Any,
    /// The own origin and exactly these (e.g. `https://app.example.com`).
    List(Vec<String>),
}

impl Origins {
    /// Parses a comma-separated list: empty is [`Origins::SameOrigin`], `*` is
    /// [`Origins::Any`]. A trailing `/` is ignored.
    pub fn parse(spec: &str) -> Self {
        let list: Vec<String> = spec
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if list.iter().any(|o| o == "*") {
            Origins::Any
        } else if list.is_empty() {
            Origins::SameOrigin
        } else {
            Origins::List(list)
        }
    }

    /// Whether a request with these headers may use the endpoint.
    pub fn allows(&self, request: &HeaderMap) -> bool {
        match request.get(header::ORIGIN) {
            None => true,
            Some(origin) => self.allows_origin(origin, request),
        }
    }

    /// `Ok` when [`allows`](Self::allows), else [`Error::OriginNotAllowed`].
    pub fn check(&self, request: &HeaderMap) -> Result<(), Error> {
        if self.allows(request) {
            return Ok(());
        }
        let origin = request
            .get(header::ORIGIN)
            .map(|o| {
                String::from_utf8_lossy(o.as_bytes())
                    .chars()
                    .take(64)
                    .collect()
            })
            .unwrap_or_default();
        Err(Error::OriginNotAllowed(origin))
    }

    fn allows_origin(&self, origin: &HeaderValue, request: &HeaderMap) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        same_origin(origin, request)
            || match self {
                Origins::SameOrigin => false,
                Origins::Any => true,
                Origins::List(list) => list.iter().any(|o| o == origin),
            }
    }

    /// The `Access-Control-Allow-Origin` a cross-origin request gets, if its origin is
    /// allowed. Same-origin requests need none.
    fn allow_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(header::ORIGIN)?;
        let s = origin.to_str().ok()?.trim_end_matches('/');
        if same_origin(s, request) {
            return None;
        }
        match self {
            Origins::SameOrigin => None,
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => list.iter().any(|o| o == s).then(|| origin.clone()),
        }
    }

    /// Adds the CORS headers the answer to `request` needs.
    pub fn apply_cors(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(origin) = self.allow_origin(request) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(header::VARY, HeaderValue::from_static("Origin"));
            response.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
        }
    }

    /// The answer to a CORS preflight: `204` with the allowed methods and headers when the
    /// origin is allowed, `403` otherwise.
    pub fn preflight(&self, request: &HeaderMap) -> Response<Body> {
        if let Err(e) = self.check(request) {
            return e.to_response();
        }
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        self.apply_cors(request, h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Authorization, Last-Event-ID"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        res
    }

    /// Whether `method` + headers make a CORS preflight.
    pub fn is_preflight(method: &Method, request: &HeaderMap) -> bool {
        method == Method::OPTIONS && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }
}

/// Gives an HTTP/2 request the `Host` its `:authority` stands for (RFC 9113, 8.3.1), as an
/// HTTP/1.1 proxy would. h2 clients send no `Host`, and the same-origin check compares
/// `Origin` with `Host`: without this, a browser's same-origin request over h2 that carries
/// `Origin` (a WebSocket, a `fetch` POST) would be judged cross-site. Every endpoint calls it
/// first.
pub fn host_from_authority<B>(req: &mut Request<B>) {
    if req.headers().contains_key(header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(header::HOST, host);
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to. Only the
/// authority is compared: behind a TLS-terminating proxy the server cannot know the scheme.
fn same_origin(origin: &str, request: &HeaderMap) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    request
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: &'static str, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(origin));
        h.insert(header::HOST, HeaderValue::from_static(host));
        h
    }

    #[test]
    fn same_meaning_for_every_check() {
        let cross = headers("https://a.example", "rt.example:8080");
        let same = headers("http://rt.example:8080", "rt.example:8080");
        for o in [
            Origins::default(),
            Origins::parse(""),
            Origins::parse(" , "),
        ] {
            assert_eq!(o, Origins::SameOrigin);
            assert!(!o.allows(&cross));
            assert!(o.allows(&same));
            assert!(o.allows(&HeaderMap::new()));
            assert_eq!(o.preflight(&cross).status(), StatusCode::FORBIDDEN);
        }
        let list = Origins::parse("https://a.example/, https://b.example");
        assert!(list.allows(&cross));
        let mut res = HeaderMap::new();
        list.apply_cors(&cross, &mut res);
        assert_eq!(
            res[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        let mut res = HeaderMap::new();
        list.apply_cors(&same, &mut res);
        assert!(res.is_empty(), "same-origin answers need no CORS headers");
        assert!(!Origins::parse("https://b.example").allows(&cross));
        assert_eq!(Origins::parse("*"), Origins::Any);
        assert_eq!(
            Origins::Any.preflight(&cross).status(),
            StatusCode::NO_CONTENT
        );
        assert!(!Origins::default().allows(&headers("null", "rt.example:8080")));
    }
}
