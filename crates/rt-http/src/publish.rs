//! HTTP publishes: bounded body reads and the one publish answer every HTTP route shares.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use rt_core::{Error, Hub, Permissions, PublishAck, PublishRequest};

use crate::body::{json, Body};

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

/// Answers an HTTP publish on behalf of a client holding `permissions`: reads a
/// [`PublishRequest`] JSON body of at most `limit` bytes, publishes it on `hub` and answers
/// `200` with the [`PublishAck`], or the JSON error (`401`/`403` for a channel outside the
/// permissions). Every HTTP publish route goes through here so they validate alike.
pub async fn publish<B>(
    hub: &Hub,
    permissions: &Permissions,
    body: B,
    limit: usize,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = async {
        let body = read_body(body, limit).await?;
        let request = PublishRequest::from_json(&body)?;
        let id = request.id.clone();
        let published = hub
            .publish_as(permissions, request.into_new_event()?)
            .await?;
        Ok::<_, Error>(PublishAck::new(&published, id))
    }
    .await;
    match result {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => crate::Error::Core(e).to_response(),
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
}
