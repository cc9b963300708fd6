//! `GET /api/history?channel=..&since=<cursor>|earliest&limit=..`: a channel's retained
//! events.

use http::{Response, StatusCode};
use rt_core::{Channel, Cursor, Error, Hub, ReadFrom, Since, Start};
use rt_http::{self as h, Body, Query};

use crate::config::Config;

/// The events returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

/// Answers `200` with the channel's `epoch`, `head`, up to `limit` `events` after `since`
/// (each as the JSON object WebSocket and polling clients receive), whether `more` follow,
/// the `cursor` to pass as the next `since`, and `recovered`: false when the answer does not
/// continue exactly after `since` (history no longer covers it, or it is of another epoch),
/// in which case it starts at the oldest retained event.
pub(crate) async fn answer(hub: &Hub, config: &Config, query: Option<&str>) -> Response<Body> {
    match history(hub, config, query).await {
        Ok(body) => h::json(StatusCode::OK, &body),
        Err(e) => e.to_response(),
    }
}

async fn history(
    hub: &Hub,
    config: &Config,
    query: Option<&str>,
) -> Result<serde_json::Value, h::Error> {
    let query = Query::parse(query);
    let bad = |message: String| h::Error::Core(Error::BadRequest(message));
    let channel = query
        .get("channel")
        .ok_or_else(|| bad("channel is required: /api/history?channel=NAME".into()))?;
    let channel = Channel::new(channel)?;
    let max = config.max_history_limit;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT.min(max),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "limit must be a number from 1 to {max}, not {n:?}"
                )))
            }
        },
    };
    let after = match Start::parse(Some(query.get("since").unwrap_or(Start::EARLIEST)))? {
        Start::Live | Start::Earliest => None,
        Start::Cursor(cursor) => Some(cursor),
    };
    // A cursor without the channel has seen none of it: from offset 0.
    let from = after.as_ref().map_or(ReadFrom::Earliest, |c| {
        ReadFrom::After(c.offset(&channel).unwrap_or(0))
    });
    let read = hub.history(&channel, from, limit).await?;
    let same_epoch = after.as_ref().is_none_or(|c| c.epoch() == read.epoch);
    let (read, recovered) = match &read.page {
        Some(Since::Events { .. }) if same_epoch => (read, true),
        // Another epoch's offsets mean nothing now, and a gap cannot be bridged: start from
        // what is retained, and say so.
        _ => (
            hub.history(&channel, ReadFrom::Earliest, limit).await?,
            false,
        ),
    };
    let (events, more) = match read.page {
        Some(Since::Events { events, more }) => (events, more),
        _ => (Vec::new(), false),
    };
    let last = events.last().map_or(read.after, |e| e.offset());
    let mut cursor = Cursor::new(read.epoch);
    cursor.set(channel.clone(), last);
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_slice(e.json()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Unavailable(format!("an event could not be encoded: {e}")))?;
    Ok(serde_json::json!({
        "channel": channel,
        "epoch": read.epoch,
        "head": read.head,
        "events": events,
        "more": more,
        "cursor": cursor.to_string(),
        "recovered": recovered,
    }))
}
