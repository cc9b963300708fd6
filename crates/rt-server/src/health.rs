//! `GET /health`.

use http::{Response, StatusCode};
use rt_core::{Health, Hub};
use rt_http::{self as h, Body};

/// `GET /health`: `200` with the backplane's state (`ok` or `degraded`) and local load.
pub(crate) fn answer(hub: &Hub) -> Response<Body> {
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
