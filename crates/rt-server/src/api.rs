//! The server's own endpoints: `/health` and the API-key protected `POST /api/publish`.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::{Health, Hub, Permissions};
use rt_http::{self as h, ApiKey, Body, Observer, Origins};

/// `GET /health`: `200` with the backplane's state (`ok` or `degraded`) and local load.
pub(crate) fn health(hub: &Hub) -> Response<Body> {
    let stats = hub.stats();
    let (status, reason) = match hub.health() {
        Health::Up => ("ok", None),
        Health::Degraded(reason) => ("degraded", Some(reason)),
    };
    h::json(
        StatusCode::OK,
        &serde_json::json!({
            "status": status,
            "backplane": reason.map_or_else(|| "up".to_owned(), |r| format!("down: {r}")),
            "channels": stats.channels,
            "subscriptions": stats.subscriptions,
        }),
    )
}

/// `POST /api/publish`: publish as the application backend, with its API key. Backends send
/// no `Origin`; a browser request from an origin not in `origins` is refused (`403`), like on
/// every route.
pub(crate) async fn publish(
    hub: &Hub,
    key: &ApiKey,
    observer: &dyn Observer,
    origins: &Origins,
    body_timeout: Duration,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(e) = origins.check(req.headers()) {
        return e.to_response();
    }
    if let Err(e) = key.check(req.headers(), "api_publish", observer) {
        return e.to_response();
    }
    let limit = h::publish_body_limit(hub.config().max_payload);
    let (parts, body) = req.into_parts();
    let open = Permissions::open();
    h::publish(hub, &open, &parts.headers, body, limit, body_timeout).await
}
