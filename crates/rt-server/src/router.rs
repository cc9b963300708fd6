//! Routing requests to the server's endpoints and the enabled transports.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::Hub;
use rt_http::{self as h, Body, Edge, Origins};

use crate::config::Config;
use crate::metrics::Prometheus;

/// Everything a request may need, shared by all connections.
pub(crate) struct App {
    pub(crate) hub: Hub,
    api_key: Option<String>,
    /// Browser origins that may use the server; `/api/publish` refuses others too.
    origins: Origins,
    /// Every transport reports its connections here.
    pub(crate) observer: Arc<Prometheus>,
    disabled: Vec<crate::config::Transport>,
    demo: bool,
    metrics: bool,
    #[cfg(feature = "ws")]
    ws: rt_ws::WebSocket,
    #[cfg(feature = "sse")]
    sse: rt_sse::Sse,
    #[cfg(feature = "poll")]
    poll: rt_poll::Poll,
}

impl App {
    pub(crate) fn new(hub: Hub, config: &Config, edge: Edge) -> Self {
        let observer = Arc::new(Prometheus::default());
        // One edge for every transport: the same tokens, origins and telemetry.
        let origins = Origins::parse(&config.cors_origins);
        let edge = edge.origins(origins.clone()).observer(observer.clone());
        App {
            #[cfg(feature = "ws")]
            ws: crate::transport::ws::build(&hub, config, edge.clone()),
            #[cfg(feature = "sse")]
            sse: crate::transport::sse::build(&hub, config, edge.clone()),
            #[cfg(feature = "poll")]
            poll: crate::transport::poll::build(&hub, config, edge),
            // An empty key would let an empty header in: treat it as no key.
            api_key: config.api_key.clone().filter(|k| !k.is_empty()),
            origins,
            observer,
            disabled: config.disable.clone(),
            demo: config.demo,
            metrics: config.metrics,
            hub,
        }
    }

    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        Ok(crate::metrics::observe(req, &self.observer, |req| self.route(req)).await)
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let disabled = crate::config::Transport::of_path(req.uri().path())
            .filter(|t| self.disabled.contains(t));
        let res = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/health") => crate::api::health(&self.hub),
            (&Method::GET | &Method::HEAD, "/metrics") if self.metrics => {
                crate::metrics::render(&self.hub, crate::metrics::recorder().as_ref())
            }
            (_, path) if disabled.is_some() => h::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{path} is disabled on this server (--disable); use another transport"),
            ),
            (&Method::GET | &Method::HEAD, path) if self.demo && crate::demo::serves(path) => {
                crate::demo::get(path)
            }
            (&Method::POST, "/api/publish") => {
                crate::api::publish(&self.hub, self.api_key.as_deref(), &self.origins, req).await
            }
            #[cfg(feature = "ws")]
            (_, "/ws") => self.ws.handle(req).await,
            #[cfg(feature = "sse")]
            (_, "/sse") => self.sse.handle(req).await,
            #[cfg(feature = "poll")]
            (_, "/poll" | "/poll/publish") => self.poll.handle(req).await,
            (_, "/health" | "/api/publish") => h::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            ),
            (_, path) => h::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "no route {:?}; see docs/protocol.md for the endpoints",
                    path.chars().take(64).collect::<String>()
                ),
            ),
        };
        res
    }
}
