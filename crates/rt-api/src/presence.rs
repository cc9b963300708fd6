//! `GET /api/presence`, `GET /api/presence-stats` and `GET /api/channels`: who is subscribed
//! to a channel, how many, and which channels are active, on every node, a page at a time.

use http::{Response, StatusCode};
use rt_core::{Channel, ChannelPattern, Error, Hub, Member};
use rt_http::{self as h, Body, Query};
use serde_json::json;

use crate::config::Config;

/// The members or channels returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

/// Which of the three routes.
#[derive(Clone, Copy)]
pub(crate) enum Read {
    Members,
    Stats,
    Channels,
}

/// Answers `200` with the JSON of `read`, or the error's status and JSON.
pub(crate) async fn answer(
    hub: &Hub,
    config: &Config,
    read: Read,
    query: Option<&str>,
) -> Response<Body> {
    let query = Query::parse(query);
    let body = match read {
        Read::Members => members(hub, config, &query).await,
        Read::Stats => stats(hub, &query).await,
        Read::Channels => channels(hub, config, &query).await,
    };
    match body {
        Ok(body) => h::json(StatusCode::OK, &body),
        Err(e) => h::Error::Core(e).to_response(),
    }
}

/// A page of a channel's members (one per connection, in client id order) with its counts:
/// `{channel, connections, subjects, members: [{client, subject?, info?}], cursor}`; `cursor`
/// is `null` after the last page. Also what a client reads with its own token (see
/// [`ClientPresence`](crate::ClientPresence)).
pub(crate) async fn members(
    hub: &Hub,
    config: &Config,
    query: &Query,
) -> Result<serde_json::Value, Error> {
    let channel = channel(query, "/api/presence")?;
    let limit = limit(config, query)?;
    let after = match query.get("cursor") {
        Some(c) if !Member::is_client_id(c) => {
            return Err(Error::InvalidCursor(format!(
                "{:?} is not a presence cursor; pass the `cursor` of the previous page",
                c.chars().take(64).collect::<String>()
            )))
        }
        after => after,
    };
    let (page, stats) = futures_util::future::try_join(
        hub.presence(&channel, after, limit),
        hub.presence_stats(&channel),
    )
    .await?;
    Ok(json!({
        "channel": channel,
        "connections": stats.connections,
        "subjects": stats.subjects,
        "members": page.members,
        "cursor": page.next,
    }))
}

/// A channel's counts: `{channel, connections, subjects}`.
async fn stats(hub: &Hub, query: &Query) -> Result<serde_json::Value, Error> {
    let channel = channel(query, "/api/presence-stats")?;
    let stats = hub.presence_stats(&channel).await?;
    Ok(json!({
        "channel": channel,
        "connections": stats.connections,
        "subjects": stats.subjects,
    }))
}

/// A page of active channels matching `pattern` (default `*`), in name order, with their
/// subscriptions on every node: `{channels: [{channel, subscribers}], cursor}`.
async fn channels(hub: &Hub, config: &Config, query: &Query) -> Result<serde_json::Value, Error> {
    let pattern = match query.get("pattern") {
        Some(p) => ChannelPattern::new(p)?,
        None => ChannelPattern::any(),
    };
    let limit = limit(config, query)?;
    let after = query
        .get("cursor")
        .map(|c| {
            Channel::new(c).map_err(|_| {
                Error::InvalidCursor(format!(
                    "{:?} is not a channels cursor; pass the `cursor` of the previous page",
                    c.chars().take(64).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let page = hub.channels(&pattern, after.as_ref(), limit).await?;
    Ok(json!({ "channels": page.channels, "cursor": page.next }))
}

/// The `channel` parameter, required.
fn channel(query: &Query, route: &str) -> Result<Channel, Error> {
    let name = query
        .get("channel")
        .ok_or_else(|| Error::BadRequest(format!("channel is required: {route}?channel=NAME")))?;
    Channel::new(name)
}

/// The `limit` parameter: 1 to the configured maximum, [`DEFAULT_LIMIT`] when absent.
fn limit(config: &Config, query: &Query) -> Result<usize, Error> {
    let max = config.max_page_limit;
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Error::BadRequest(format!(
                "limit must be a number from 1 to {max}, not {:?}",
                n.chars().take(64).collect::<String>()
            ))),
        },
    }
}

/// `GET /presence?channel=..&cursor=..&limit=..` for clients, with their own token: the page
/// `/api/presence` answers, for a channel the token's `presence` grant allows (`401` without a
/// token that allows it, `403` with one that does not). Cheap to clone; a
/// `tower_service::Service` over any request body. The JS client's `client.presence(channel)`
/// calls it.
#[derive(Debug, Clone)]
pub struct ClientPresence {
    hub: Hub,
    edge: rt_http::Edge,
    config: std::sync::Arc<Config>,
}

impl ClientPresence {
    /// Clients of `hub` authenticated by `edge` (its origins apply too); `config`'s page
    /// limit applies, its key does not.
    pub fn new(hub: Hub, edge: rt_http::Edge, config: Config) -> Self {
        ClientPresence {
            hub,
            edge,
            config: std::sync::Arc::new(config),
        }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: http::Request<B>) -> Response<Body> {
        const ROUTE: &str = "presence";
        if req.method() != http::Method::GET {
            let method = req.method().clone();
            return h::Error::MethodNotAllowed {
                method,
                allowed: "GET",
            }
            .to_response();
        }
        let query = Query::parse(req.uri().query());
        let admitted = match self.edge.admit(ROUTE, req.headers(), &query).await {
            Ok(admitted) => admitted,
            Err(e) => return e.to_response(),
        };
        let allowed =
            channel(&query, "/presence").and_then(|c| admitted.permissions.check_presence(&c));
        if let Err(e) = allowed {
            return self
                .edge
                .refuse(ROUTE, &h::Error::Core(e), admitted.presented);
        }
        match members(&self.hub, &self.config, &query).await {
            Ok(body) => h::json(StatusCode::OK, &body),
            Err(e) => h::Error::Core(e).to_response(),
        }
    }
}

rt_http::endpoint_service!(ClientPresence);
