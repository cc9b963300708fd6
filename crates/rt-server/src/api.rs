//! The server's own endpoints: `/health` and the API-key protected `POST /api/publish`.

use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::{Health, Hub, Permissions};
use rt_http::{self as h, AuthFailure, Body, Observer, Origins};
use subtle::ConstantTimeEq;

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

/// The key a request presents in `X-Api-Key` or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = headers.get(header::AUTHORIZATION)?.as_bytes();
    auth.strip_prefix(b"Bearer ")
}

/// `POST /api/publish`: publish as the application backend. A refused key is reported to
/// `observer` as an auth failure. Backends send no `Origin`; a browser request from an origin
/// not in `origins` is refused (`403`), like on every route.
pub(crate) async fn publish(
    hub: &Hub,
    api_key: Option<&str>,
    observer: &dyn Observer,
    origins: &Origins,
    body_timeout: Duration,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(e) = origins.check(req.headers()) {
        return e.to_response();
    }
    let refused = |message| {
        let presented = req.headers().contains_key("x-api-key")
            || req.headers().contains_key(header::AUTHORIZATION);
        let failure = if presented {
            AuthFailure::Invalid
        } else {
            AuthFailure::Missing
        };
        observer.auth_failed("api_publish", failure);
        h::error(StatusCode::UNAUTHORIZED, "unauthorized", message)
    };
    let Some(expected) = api_key else {
        return refused(
            "the publish API is disabled: start the server with --api-key (or RT_API_KEY)",
        );
    };
    // Constant time, so the key cannot be guessed byte by byte from response timings.
    let authorised =
        presented_key(req.headers()).is_some_and(|k| bool::from(k.ct_eq(expected.as_bytes())));
    if !authorised {
        return refused("missing or wrong API key: send it in the X-Api-Key header");
    }
    let limit = h::publish_body_limit(hub.config().max_payload);
    let (parts, body) = req.into_parts();
    h::publish(
        hub,
        &Permissions::open(),
        &parts.headers,
        body,
        limit,
        body_timeout,
    )
    .await
}
