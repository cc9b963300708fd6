//! Routing requests to the server's endpoints and the enabled transports.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::Hub;
use rt_http::{self as h, ApiKey, Body, Edge, Metrics, Origins};

use crate::config::{Config, Transport};

/// The server's routes: path, the `route` label of their metrics (every other path is
/// `other`, so that scanners cannot blow up the series count), and the transport that
/// `--disable` turns off.
const ROUTES: [(&str, &str, Option<Transport>); 15] = [
    ("/ws", "ws", Some(Transport::Ws)),
    ("/sse", "sse", Some(Transport::Sse)),
    ("/poll", "poll", Some(Transport::Poll)),
    ("/poll/publish", "poll_publish", Some(Transport::Poll)),
    ("/api/publish", "api_publish", None),
    ("/api/broadcast", "api_broadcast", None),
    ("/api/history", "api_history", None),
    ("/api/disconnect", "api_disconnect", None),
    ("/api/unsubscribe", "api_unsubscribe", None),
    ("/api/presence", "api_presence", None),
    ("/api/presence-stats", "api_presence_stats", None),
    ("/api/channels", "api_channels", None),
    ("/presence", "presence", None),
    ("/health", "health", None),
    ("/metrics", "metrics", None),
];

/// Everything a request may need, shared by all connections.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) hub: Hub,
    /// The server API (`/api/*`), keyed by `--api-key`.
    api: rt_api::Api,
    /// Clients' `/presence`, with their tokens.
    presence: rt_api::ClientPresence,
    /// Every transport reports its connections here.
    pub(crate) observer: Arc<Metrics>,
    disabled: Vec<Transport>,
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
        let observer = Arc::new(Metrics::default());
        let compiled = [
            (Transport::Ws, cfg!(feature = "ws")),
            (Transport::Sse, cfg!(feature = "sse")),
            (Transport::Poll, cfg!(feature = "poll")),
        ];
        let enabled: Vec<&'static str> = ROUTES
            .iter()
            .filter_map(|&(_, route, transport)| Some((route, transport?)))
            .filter(|&(route, transport)| {
                route != "poll_publish"
                    && compiled.contains(&(transport, true))
                    && !config.disable.contains(&transport)
            })
            .map(|(route, _)| route)
            .collect();
        crate::metrics::register(&observer, &enabled);
        // One edge for every transport: the same tokens, origins and telemetry.
        let origins = Origins::parse(&config.cors_origins);
        let edge = edge.origins(origins.clone()).observer(observer.clone());
        let api = rt_api::Config::default()
            .key(ApiKey::new(config.api_key.clone()))
            .origins(origins)
            .observer(observer.clone())
            .body_timeout(config.body_read_timeout);
        App {
            #[cfg(feature = "ws")]
            ws: rt_ws::WebSocket::new(hub.clone(), config.ws.config().edge(edge.clone())),
            #[cfg(feature = "sse")]
            sse: rt_sse::Sse::new(hub.clone(), config.sse.config().edge(edge.clone())),
            #[cfg(feature = "poll")]
            poll: rt_poll::Poll::new(
                hub.clone(),
                config
                    .poll
                    .config()
                    .edge(edge.clone())
                    .body_timeout(config.body_read_timeout),
            ),
            presence: rt_api::ClientPresence::new(hub.clone(), edge, api.clone()),
            api: rt_api::Api::new(hub.clone(), api),
            observer,
            disabled: config.disable.clone(),
            demo: config.demo,
            metrics: config.metrics,
            hub,
        }
    }

    /// Whether `head` (a bodiless HTTP/1.1 `GET`) is answered by the lean HTTP/1.1 path
    /// ([`rt_http::LeanHttp1`]): SSE requests, whose streams then hold no hyper buffers.
    pub(crate) fn lean(&self, head: &http::request::Parts) -> bool {
        cfg!(feature = "sse")
            && head.uri.path() == "/sse"
            && !self.disabled.contains(&Transport::Sse)
    }

    /// Answers a request that [`App::lean`] picked, and counts the answer.
    pub(crate) async fn handle_lean(&self, req: Request<()>) -> Response<Body> {
        #[cfg(feature = "sse")]
        let res = self.sse.handle(req).await;
        #[cfg(not(feature = "sse"))]
        let res = {
            drop(req);
            h::error(StatusCode::NOT_FOUND, "not_found", "this server has no SSE")
        };
        crate::metrics::answered("sse", res.status());
        res
    }

    /// Answers `req` and counts the answer by route.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let (route, transport) = ROUTES
            .iter()
            .find(|(path, _, _)| *path == req.uri().path())
            .map_or(("other", None), |&(_, route, transport)| (route, transport));
        let disabled = transport.is_some_and(|t| self.disabled.contains(&t));
        let res = match (req.method(), route, req.uri().path()) {
            (&Method::GET | &Method::HEAD, "health", _) => h::health(&self.hub),
            (&Method::GET | &Method::HEAD, "metrics", _) if self.metrics => {
                crate::metrics::render(&self.hub, crate::metrics::recorder().as_ref())
            }
            (_, _, path) if disabled => h::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{path} is disabled on this server (--disable); use another transport"),
            ),
            (&Method::GET | &Method::HEAD, _, path) if self.demo && crate::demo::serves(path) => {
                crate::demo::get(path)
            }
            (_, "presence", _) => self.presence.handle(req).await,
            (_, route, _) if route.starts_with("api_") => self.api.handle(req).await,
            #[cfg(feature = "ws")]
            (_, "ws", _) => self.ws.handle(req).await,
            #[cfg(feature = "sse")]
            (_, "sse", _) => self.sse.handle(req).await,
            #[cfg(feature = "poll")]
            (_, "poll" | "poll_publish", _) => self.poll.handle(req).await,
            (_, "health", _) => h::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            ),
            (_, _, path) => h::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "no route {:?}; see docs/protocol.md for the endpoints",
                    path.chars().take(64).collect::<String>()
                ),
            ),
        };
        crate::metrics::answered(route, res.status());
        Ok(res)
    }
}
