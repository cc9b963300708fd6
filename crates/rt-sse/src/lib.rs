//! rt-sse: the Server-Sent Events transport of rt (being built; see issue tracker).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::http::Body;
use rt_core::Hub;

/// Options of the transport.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Config {}

/// The Server-Sent Events endpoint, bound to a hub.
#[derive(Debug, Clone)]
pub struct Sse {
    hub: Hub,
    config: Config,
}

impl Sse {
    /// The endpoint over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        Sse { hub, config }
    }

    /// Answers one request.
    pub async fn handle(&self, _req: Request<Incoming>) -> Response<Body> {
        let _ = (&self.hub, &self.config);
        rt_core::http::error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "this transport is being built",
        )
    }
}
