//! Plain HTTP helpers shared by the transports and the server: bodies, JSON answers and
//! errors, query strings, bounded body reads and CORS. No I/O happens here.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;

use crate::error::Error;
use crate::name::Channel;

/// The response body type of every rt handler: a full buffer or a stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON response that no cache keeps.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    json_bytes(status, body)
}

/// A JSON response from already encoded bytes.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The stable code of a JSON error answer, put in the response's extensions by [`error`] so
/// that a server can tell refusals apart (e.g. count auth failures by route) without parsing
/// bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The JSON error body every rt endpoint uses: `{"error":{"code":"...","message":"..."}}`.
pub fn error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    // Every refusal of every HTTP endpoint passes here, so errors are counted by kind once.
    crate::telemetry::error(code);
    #[derive(Serialize)]
    struct Inner<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Outer<'a> {
        error: Inner<'a>,
    }
    let mut res = json(
        status,
        &Outer {
            error: Inner { code, message },
        },
    );
    res.extensions_mut().insert(ErrorCode(code));
    res
}

impl Error {
    /// This error as an HTTP response with its status and JSON error body.
    pub fn to_response(&self) -> Response<Body> {
        error(self.status(), self.code(), &self.to_string())
    }
}

/// A decoded query string. Repeated keys are kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes `query` (the part after `?`, percent- and `+`-decoded).
    pub fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The channels of a request: every `channel` parameter, each of which may also be a
    /// comma-separated list. Duplicates are removed; none at all or more than `max` is an
    /// error.
    pub fn channels(&self, max: usize) -> Result<Vec<Channel>, Error> {
        let mut out: Vec<Channel> = Vec::new();
        for name in self.all("channel").flat_map(|v| v.split(',')) {
            let channel = Channel::new(name)?;
            if !out.contains(&channel) {
                out.push(channel);
            }
            if out.len() > max {
                return Err(Error::TooManyChannels {
                    given: self.all("channel").flat_map(|v| v.split(',')).count(),
                    max,
                });
            }
        }
        if out.is_empty() {
            return Err(Error::NoChannels);
        }
        Ok(out)
    }
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge {
            size: limit + 1,
            max: limit,
        }),
        Err(e) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// The largest publish body for payloads of up to `max_payload` bytes: the payload plus room
/// for the JSON around it (base64 grows a binary payload by a third).
pub fn publish_body_limit(max_payload: usize) -> usize {
    max_payload.saturating_mul(4) / 3 + 4096
}

/// Answers an HTTP publish: reads a [`PublishRequest`](crate::PublishRequest) JSON body of at
/// most `limit` bytes, publishes it on `hub` and answers `200` with the
/// [`PublishAck`](crate::PublishAck), or the JSON error. Every HTTP publish endpoint (the
/// server's API, polling clients) goes through here so they validate alike.
pub async fn publish<B>(hub: &crate::Hub, body: B, limit: usize) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    publish_as(hub, &crate::Permissions::open(), body, limit).await
}

/// [`publish`] on behalf of a client holding `permissions` (usually
/// [`Permissions::of`](crate::Permissions::of) the request's extensions): a channel outside
/// them is answered `401` or `403`.
pub async fn publish_as<B>(
    hub: &crate::Hub,
    permissions: &crate::Permissions,
    body: B,
    limit: usize,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = async {
        let body = read_body(body, limit).await?;
        let request = crate::PublishRequest::from_json(&body)?;
        let id = request.id.clone();
        let published = hub
            .publish_as(permissions, request.into_new_event()?)
            .await?;
        Ok::<_, Error>(crate::PublishAck::new(&published, id))
    }
    .await;
    match result {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => e.to_response(),
    }
}

/// Which browser origins may call an HTTP endpoint from another site.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS headers: only same-origin pages (and non-browser clients) can read answers.
    #[default]
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`, no credentials).
    Any,
    /// Exactly these origins (e.g. `https://app.example.com`), echoed back when they match.
    List(Vec<String>),
}

impl Cors {
    /// Parses a comma-separated list: empty is [`Cors::Off`], `*` is [`Cors::Any`].
    pub fn parse(spec: &str) -> Self {
        let spec = spec.trim();
        match spec {
            "" => Cors::Off,
            "*" => Cors::Any,
            _ => Cors::List(
                spec.split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        }
    }

    fn allow_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        match self {
            Cors::Off => None,
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::List(list) => {
                let origin = request.get(header::ORIGIN)?;
                let s = origin.to_str().ok()?;
                list.iter().any(|o| o == s).then(|| origin.clone())
            }
        }
    }

    /// Adds the CORS headers a response to `request` needs.
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(origin) = self.allow_origin(request) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(header::VARY, HeaderValue::from_static("Origin"));
            response.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
        }
    }

    /// The answer to a preflight (`OPTIONS`) request: `204` with the allowed methods and
    /// headers when the origin is allowed, `403` otherwise.
    pub fn preflight(&self, request: &HeaderMap) -> Response<Body> {
        if self.allow_origin(request).is_none() {
            return error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not call this endpoint; add it to the CORS allow-list",
            );
        }
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        self.apply(request, h);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_channels() {
        let q = Query::parse(Some("channel=a&channel=b,c&channel=a&x=%2C"));
        let names: Vec<_> = q
            .channels(10)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(q.get("x"), Some(","));
        assert_eq!(q.channels(2).unwrap_err().code(), "too_many_channels");
        assert_eq!(
            Query::parse(None).channels(2).unwrap_err().code(),
            "no_channels"
        );
        assert_eq!(
            Query::parse(Some("channel=a%20b"))
                .channels(2)
                .unwrap_err()
                .code(),
            "invalid_channel"
        );
    }

    #[tokio::test]
    async fn body_limit() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(read_body(body.clone(), 10).await.unwrap().len(), 10);
        assert_eq!(
            read_body(body, 9).await.unwrap_err().code(),
            "payload_too_large"
        );
    }

    #[test]
    fn cors() {
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        let mut res = HeaderMap::new();
        Cors::parse("https://a.example, https://b.example/").apply(&req, &mut res);
        assert_eq!(
            res[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        let mut res = HeaderMap::new();
        Cors::parse("https://b.example").apply(&req, &mut res);
        assert!(res.is_empty());
        assert_eq!(Cors::Off.preflight(&req).status(), StatusCode::FORBIDDEN);
        assert_eq!(Cors::Any.preflight(&req).status(), StatusCode::NO_CONTENT);
    }
}
