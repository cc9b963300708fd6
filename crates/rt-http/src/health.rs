//! `GET /health`: whether the server can do its job, for load balancers and orchestrators.

use http::{Response, StatusCode};
use rt_core::{Health, Hub};

use crate::body::{json, Body};

/// The answer to a health check: `200` with the backplane's state and the hub's local load,
/// `{"status":"ok"|"degraded","backplane":"up"|"down: <reason>","channels":n,"subscriptions":n}`.
/// A degraded backplane answers `200` too (publishes answer `503` until it is back); the
/// body tells the two apart.
pub fn health(hub: &Hub) -> Response<Body> {
    let stats = hub.stats();
    let (status, reason) = match hub.health() {
        Health::Up => ("ok", None),
        Health::Degraded(reason) => ("degraded", Some(reason)),
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": status,
            "backplane": reason.map_or_else(|| "up".to_owned(), |r| format!("down: {r}")),
            "channels": stats.channels,
            "subscriptions": stats.subscriptions,
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use rt_core::{Channel, HubConfig, MemoryBackplane, Start};

    use super::*;

    #[tokio::test]
    async fn reports_the_backplane_and_the_load() {
        let backplane = Arc::new(MemoryBackplane::new(Default::default()));
        let hub = Hub::new(backplane, HubConfig::default());
        let channels = ["a", "b"].map(|c| Channel::new(c).unwrap());
        let _sub = hub.subscribe(channels, Start::Live).await.unwrap();
        let res = health(&hub);
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "ok", "backplane": "up", "channels": 2, "subscriptions": 1})
        );
    }
}
