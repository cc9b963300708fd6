//! HTTP publishes: bounded body reads and the one publish answer every HTTP route shares.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use rt_core::{Error, Hub, Permissions, PublishAck, PublishRequest};

use crate::body::{json, Body};
use crate::edge::Edge;
use crate::hooks::Client;

/// The largest declared body that is read (and dropped) before it is refused as too large;
/// a larger one is refused at once (its client may see the connection reset instead).
const DRAIN_MAX: u64 = 4 << 20;

/// Reads a whole request body, refusing more than `limit` bytes with
/// [`Error::BodyTooLarge`]: with the declared size when `Content-Length` gives it (its bytes
/// are read and dropped, up to 4 MiB, so that the client can read the answer), else "more
/// than `limit`".
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = |size| Error::BodyTooLarge {
        size,
        limit,
        max_payload: None,
    };
    let declared = http_body::Body::size_hint(&body).exact();
    if let Some(size) = declared.filter(|&n| n > limit as u64) {
        if size <= DRAIN_MAX {
            // Read and drop what the client is sending before answering: a connection closed
            // with unread data is reset, and the client would see the reset, not the 413.
            let mut body = std::pin::pin!(body);
            while let Some(Ok(_)) = body.frame().await {}
        }
        return Err(too_large(Some(usize::try_from(size).unwrap_or(usize::MAX))));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(None)),
        Err(e) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// The most of a refused request's body that is read before the refusal is sent.
const DISCARD_MAX: usize = 64 << 10;

/// Reads and drops (up to 64 KiB, for at most a second) the body of a request refused before
/// its body was read. Answering first, a server ends the request early: an HTTP/1.1 client
/// still sending then sees the connection reset, and some HTTP/2 clients (curl) a stream error,
/// instead of the answer.
pub async fn discard_body<B>(body: B)
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = Limited::new(body, DISCARD_MAX).collect();
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
}

/// The largest publish body for payloads of up to `max_payload` bytes: the payload plus room
/// for the JSON around it (base64 grows a binary payload by a third).
pub fn publish_body_limit(max_payload: usize) -> usize {
    max_payload.saturating_mul(4) / 3 + 4096
}

/// `Ok` when the request declares a JSON body: `Content-Type: application/json`, with any
/// parameters (`; charset=utf-8`). Anything else, or none, is
/// [`Error::UnsupportedMediaType`](crate::Error::UnsupportedMediaType) (`415`): browsers send
/// `text/plain` and form bodies cross-site without a CORS preflight, so a state-changing
/// endpoint that took them could be driven by any web page its users visit.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), crate::Error> {
    let declared = headers.get(CONTENT_TYPE);
    let json = declared
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json {
        return Ok(());
    }
    let got = match declared {
        None => "none".to_owned(),
        Some(v) => format!(
            "{:?}",
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(64)
                .collect::<String>()
        ),
    };
    Err(crate::Error::UnsupportedMediaType(got))
}

/// Reads the body of a state-changing JSON request: [`check_json_content_type`] (else `415`),
/// at most `limit` bytes ([`read_body`], else `413`) within `timeout` (else `408`, counted as
/// a connection cut off for `body_timeout`).
pub async fn read_json_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, crate::Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(e) = check_json_content_type(headers) {
        discard_body(body).await;
        return Err(e);
    }
    match tokio::time::timeout(timeout, read_body(body, limit)).await {
        Ok(body) => Ok(body?),
        Err(_) => {
            metrics::counter!(crate::CUT_OFF, "reason" => "body_timeout").increment(1);
            Err(crate::Error::BodyTimeout(timeout))
        }
    }
}

/// How long a publish body may take to arrive by default: 10 s, rt-server's
/// `--body-read-timeout` default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers an HTTP publish on behalf of a client holding `permissions`: checks that the
/// request declares `Content-Type: application/json` ([`check_json_content_type`], else
/// `415`), reads a [`PublishRequest`] JSON body of at most `limit` bytes within `timeout`
/// (else `408`, counted as a connection cut off for `body_timeout`), publishes it on
/// `hub` and answers `200` with the [`PublishAck`], or the JSON error (`401`/`403` for a
/// channel outside the permissions). Every HTTP publish route goes through here so they
/// validate alike; the caller checks the origin and the credentials first.
pub async fn publish<B>(
    hub: &Hub,
    permissions: &Permissions,
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    publish_hooked(hub, permissions, None, headers, body, limit, timeout).await
}

/// [`publish`] on behalf of a `client` that `edge` admitted: its publish hook may refuse or
/// rewrite the event ([`Edge::check_publish`]).
pub async fn publish_as_client<B>(
    hub: &Hub,
    edge: &Edge,
    client: Client<'_>,
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permissions = client.permissions;
    let hook = Some((edge, client));
    publish_hooked(hub, permissions, hook, headers, body, limit, timeout).await
}

async fn publish_hooked<B>(
    hub: &Hub,
    permissions: &Permissions,
    hook: Option<(&Edge, Client<'_>)>,
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = match read_json_body(headers, body, limit, timeout).await {
        Ok(body) => body,
        Err(crate::Error::Core(Error::BodyTooLarge { size, limit, .. })) => {
            // Say which payload limit the body limit leaves room for.
            let max_payload = Some(hub.config().max_payload);
            return crate::Error::Core(Error::BodyTooLarge {
                size,
                limit,
                max_payload,
            })
            .to_response();
        }
        Err(e) => return e.to_response(),
    };
    let result = async {
        let request = PublishRequest::from_json(&body)?;
        let id = request.id.clone();
        let mut event = request.into_new_event()?;
        if let Some((edge, client)) = hook {
            event = edge.check_publish(client, event).await?;
        }
        let published = hub.publish_as(permissions, event).await?;
        Ok::<_, crate::Error>(PublishAck::new(&published, id))
    }
    .await;
    match result {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => e.to_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn body_limit() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(read_body(body.clone(), 10).await.unwrap().len(), 10);
        assert_eq!(
            read_body(body, 9).await.unwrap_err().code(),
            "payload_too_large"
        );
    }

    #[tokio::test]
    async fn too_large_bodies_are_told_their_real_size_and_limit() {
        // Declared size (Content-Length): the real size.
        let limit = publish_body_limit(65536);
        let body = Full::new(Bytes::from(vec![b'x'; 200_000]));
        let e = read_body(body, limit).await.unwrap_err();
        assert_eq!(e.code(), "payload_too_large");
        let message = e.to_string();
        assert!(message.contains("of 200000 bytes"), "{message}");
        assert!(
            message.contains(&format!("limit of {limit} bytes")),
            "{message}"
        );
        assert!(!message.contains(&(limit + 1).to_string()), "{message}");
        // A streamed body of unknown size: "more than" the limit.
        struct Chunked(usize);
        impl http_body::Body for Chunked {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
                let more = self.0 > 0;
                self.0 = self.0.saturating_sub(1);
                std::task::Poll::Ready(
                    more.then(|| Ok(http_body::Frame::data(Bytes::from(vec![0u8; 40_000])))),
                )
            }
        }
        let e = read_body(Chunked(4), limit).await.unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains(&format!("of more than {limit} bytes")),
            "{message}"
        );
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, http::HeaderValue::from_static(v));
            h
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(check_json_content_type(&with(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            let e = check_json_content_type(&with(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert_eq!(e.code(), "unsupported_media_type");
        }
        let e = check_json_content_type(&HeaderMap::new()).unwrap_err();
        assert!(e.to_string().contains("application/json"), "{e}");
    }
}
