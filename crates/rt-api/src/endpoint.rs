//! [`Api`]: the endpoint, its routes and the checks every route shares.

use std::sync::Arc;

use http::{Method, Request, Response};
use rt_core::{Hub, Permissions};
use rt_http::{self as h, Body};

use crate::config::Config;
use crate::presence::Read;

/// The server API endpoint. Cheap to clone; a `tower_service::Service` over any request body.
/// It answers the paths ending in `/publish`, `/broadcast`, `/history`, `/disconnect`,
/// `/unsubscribe`, `/presence`, `/presence-stats` and `/channels` (mount it on `/api/*`),
/// anything else with `404`.
#[derive(Debug, Clone)]
pub struct Api {
    hub: Hub,
    config: Arc<Config>,
}

/// A route: its last path segment, its `route`/`transport` label and its method.
struct Route {
    segment: &'static str,
    label: &'static str,
    method: Method,
}

const ROUTES: [Route; 8] = [
    Route {
        segment: "publish",
        label: "api_publish",
        method: Method::POST,
    },
    Route {
        segment: "broadcast",
        label: "api_broadcast",
        method: Method::POST,
    },
    Route {
        segment: "history",
        label: "api_history",
        method: Method::GET,
    },
    Route {
        segment: "disconnect",
        label: "api_disconnect",
        method: Method::POST,
    },
    Route {
        segment: "unsubscribe",
        label: "api_unsubscribe",
        method: Method::POST,
    },
    Route {
        segment: "presence",
        label: "api_presence",
        method: Method::GET,
    },
    Route {
        segment: "presence-stats",
        label: "api_presence_stats",
        method: Method::GET,
    },
    Route {
        segment: "channels",
        label: "api_channels",
        method: Method::GET,
    },
];

impl Api {
    /// The API over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        Api {
            hub,
            config: Arc::new(config),
        }
    }

    /// The labels its routes report refused keys under (`api_publish`, ...), for an observer
    /// that registers its series ahead of use.
    pub fn routes() -> [&'static str; 8] {
        ROUTES.map(|r| r.label)
    }

    /// Answers one request.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<Body>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        rt_http::host_from_authority(&mut req);
        let segment = req.uri().path().rsplit('/').next().unwrap_or_default();
        let Some(route) = ROUTES.iter().find(|r| r.segment == segment) else {
            let message = "the server API has /api/publish, /api/broadcast, /api/history, \
                           /api/disconnect, /api/unsubscribe,
                           /api/presence, /api/presence-stats and /api/channels";
            return h::error(http::StatusCode::NOT_FOUND, "not_found", message);
        };
        if *req.method() != route.method {
            let method = req.method().clone();
            let allowed = route.method.as_str();
            return h::Error::MethodNotAllowed { method, allowed }.to_response();
        }
        let config = &self.config;
        let checked = config.origins.check(req.headers()).and_then(|()| {
            let observer = &*config.observer;
            config.key.check(req.headers(), route.label, observer)
        });
        let (parts, body) = req.into_parts();
        if let Err(e) = checked {
            h::discard_body(body).await;
            return e.to_response();
        }
        let limit = h::publish_body_limit(self.hub.config().max_payload);
        match route.segment {
            "publish" => {
                let open = Permissions::open();
                let timeout = config.body_timeout;
                h::publish(&self.hub, &open, &parts.headers, body, limit, timeout).await
            }
            "broadcast" => {
                let limit = limit.saturating_mul(2);
                crate::broadcast::answer(&self.hub, config, &parts.headers, body, limit).await
            }
            "disconnect" => {
                use crate::control::{answer, Disconnect};
                answer::<Disconnect, _>(&self.hub, config, &parts.headers, body).await
            }
            "unsubscribe" => {
                use crate::control::{answer, Unsubscribe};
                answer::<Unsubscribe, _>(&self.hub, config, &parts.headers, body).await
            }
            "history" => crate::history::answer(&self.hub, config, parts.uri.query()).await,
            segment => {
                let read = match segment {
                    "presence" => Read::Members,
                    "presence-stats" => Read::Stats,
                    _ => Read::Channels,
                };
                crate::presence::answer(&self.hub, config, read, parts.uri.query()).await
            }
        }
    }
}

rt_http::endpoint_service!(Api);
