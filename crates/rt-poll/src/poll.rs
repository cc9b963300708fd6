//! The endpoint: routing a request to a poll, a publish or a CORS preflight.

use std::time::Duration;

use http::header::{HeaderMap, ORIGIN};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rt_core::http::{self as h, Body, Cors};
use rt_core::{Hub, Permissions};

use crate::batch::Batch;
use crate::config::Config;
use crate::error::Error;
use crate::request::PollRequest;

/// The long and short polling endpoint, bound to a hub. Cheap to clone.
///
/// A request whose path ends in `/publish` publishes (`POST`); any other path polls (`GET`).
/// `OPTIONS` preflights are answered from [`Config::cors`].
#[derive(Debug, Clone)]
pub struct Poll {
    hub: Hub,
    config: Config,
}

impl Poll {
    /// The endpoint over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        Poll { hub, config }
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request. Every answer, errors included, carries `Cache-Control: no-store`
    /// and the CORS headers the request's origin is allowed. Polls and publishes are limited
    /// to the [`Permissions`] the request carries in its extensions (everything when it
    /// carries none).
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if Cors::is_preflight(req.method(), req.headers()) {
            return self.config.cors.preflight(req.headers());
        }
        // Only the origin is needed once the request is consumed.
        let mut origin = HeaderMap::new();
        if let Some(o) = req.headers().get(ORIGIN) {
            origin.insert(ORIGIN, o.clone());
        }
        // Set by the embedding server's authentication, if any; open otherwise.
        let permissions = Permissions::of(req.extensions());
        let publish = req.uri().path().ends_with("/publish");
        let result = match (publish, req.method()) {
            (false, &Method::GET) => self.poll(&permissions, req.uri().query()).await,
            (true, &Method::POST) => Ok(self.publish(&permissions, req.into_body()).await),
            (false, _) => Err(Error::MethodNotAllowed("GET")),
            (true, _) => Err(Error::MethodNotAllowed("POST")),
        };
        let mut res = result.unwrap_or_else(|e| e.to_response());
        self.config.cors.apply(&origin, res.headers_mut());
        res
    }

    /// A long (or, with `timeout=0`, short) poll.
    ///
    /// The subscription replays what is after the cursor; whatever is ready is answered at
    /// once. Otherwise the request waits on the subscription itself, which the hub wakes on
    /// publish, so a held poll does no work and is released by the first event. Dropping the
    /// future (the client went away) drops the subscription.
    async fn poll(
        &self,
        permissions: &Permissions,
        query: Option<&str>,
    ) -> Result<Response<Body>, Error> {
        let request = PollRequest::parse(query, &self.config, self.hub.config().max_channels)?;
        let mut sub = self
            .hub
            .empty_subscription()
            .with_permissions(permissions.clone());
        let joined = sub.add(request.channels, request.start).await?;
        let mut batch = Batch::new(joined, self.config.batch);
        batch.fill(&mut sub);
        if !batch.is_ready() && request.timeout > Duration::ZERO && !self.hub.is_closing() {
            tokio::select! {
                // An event that is ready at the deadline still goes out.
                biased;
                delivery = sub.next() => {
                    batch.push(delivery);
                    batch.fill(&mut sub);
                }
                () = tokio::time::sleep(request.timeout) => {}
                // Shutting down: answer now so the client re-polls (another node) from here.
                () = self.hub.closing() => {}
            }
        }
        Ok(h::json_bytes(StatusCode::OK, batch.encode(&sub.cursor())))
    }

    /// A publish from a polling client: the same JSON and validation as every other publish.
    async fn publish(&self, permissions: &Permissions, body: Incoming) -> Response<Body> {
        let limit = self
            .config
            .max_body
            .unwrap_or_else(|| h::publish_body_limit(self.hub.config().max_payload));
        h::publish_as(&self.hub, permissions, body, limit).await
    }
}
