//! `POST /api/broadcast`: one event to many channels.

use http::header::HeaderMap;
use http::{Response, StatusCode};
use rt_core::{Error, Hub, PublishAck, PublishRequest};
use rt_http::{self as h, Body};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The request body: [`PublishRequest`]'s fields, with `channels` instead of `channel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Broadcast {
    channels: Vec<String>,
    #[serde(default)]
    event: Option<String>,
    data: serde_json::Value,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// One channel's outcome: its position, or why it was not published.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    Published(PublishAck),
    Failed { channel: String, error: ErrorBody },
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

/// Publishes the body's event on each of its channels, concurrently. The answer is `200`
/// with one outcome per channel, in the order asked, once the request itself is valid: a
/// channel that fails (bad name, backplane down) does not undo the others, and retrying the
/// same request with the same `id` publishes only where it had not been.
pub(crate) async fn answer<B>(
    hub: &Hub,
    config: &Config,
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request = match read(config, headers, body, limit).await {
        Ok(request) => request,
        Err(e) => return e.to_response(),
    };
    let request = &request;
    let publishes = request.channels.iter().map(|channel| async move {
        let single = PublishRequest {
            channel: channel.clone(),
            event: request.event.clone(),
            data: request.data.clone(),
            encoding: request.encoding.clone(),
            id: request.id.clone(),
        };
        let published = async { hub.publish(single.into_new_event()?).await }.await;
        match published {
            Ok(published) => Outcome::Published(PublishAck::new(&published, request.id.clone())),
            Err(e) => Outcome::Failed {
                channel: channel.clone(),
                error: ErrorBody {
                    code: e.code(),
                    message: e.to_string(),
                },
            },
        }
    });
    let results = futures_util::future::join_all(publishes).await;
    h::json(StatusCode::OK, &serde_json::json!({ "results": results }))
}

/// The validated request: JSON, within the body limit and timeout, 1 to
/// `max_broadcast_channels` distinct channels.
async fn read<B>(
    config: &Config,
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Broadcast, h::Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = h::read_json_body(headers, body, limit, config.body_timeout).await?;
    let request: Broadcast = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))?;
    let max = config.max_broadcast_channels;
    let bad = |message: String| Err(h::Error::Core(Error::BadRequest(message)));
    if request.channels.is_empty() || request.channels.len() > max {
        return bad(format!(
            "channels must list 1 to {max} channels, not {}",
            request.channels.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = request.channels.iter().find(|c| !seen.insert(*c)) {
        return bad(format!("channel {twice:?} is listed twice; list each once"));
    }
    Ok(request)
}
