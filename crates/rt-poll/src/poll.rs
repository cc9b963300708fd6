//! The endpoint: routing a request to a poll, a publish or a CORS preflight.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HOST, ORIGIN};
use http::{Method, Request, Response, StatusCode};
use rt_core::{Delivery, Hub};
use rt_http::{self as h, Admitted, Body, Client, Close, Connection, Origins, Query};

use crate::batch::Batch;
use crate::config::Config;
use crate::error::Error;
use crate::request::PollRequest;
use crate::session::{Attached, Sessions};

/// The transport's name in telemetry; its publishes are told apart as `poll_publish`.
const TRANSPORT: &str = "poll";
const PUBLISH: &str = "poll_publish";
/// How long a held poll woken by a join/leave batch waits for more before it answers: each
/// node sends its own batches, a few milliseconds apart.
const PRESENCE_COALESCE: Duration = Duration::from_millis(50);

/// The long and short polling endpoint, bound to a hub. Cheap to clone.
///
/// A request whose path ends in `/publish` publishes (`POST`); any other path polls (`GET`).
/// `OPTIONS` preflights are answered from the configuration's origins. It is a
/// `tower_service::Service` over any request body: mount it in an axum app
/// (`Router::route_service`), or serve it with plain hyper through
/// `hyper_util::service::TowerToHyperService`.
#[derive(Debug, Clone)]
pub struct Poll {
    hub: Hub,
    config: Arc<Config>,
    /// The poll sessions of this endpoint on this node (shared by its clones).
    sessions: Sessions,
}

rt_http::endpoint_service!(Poll);

impl Poll {
    /// The endpoint over `hub`.
    pub fn new(hub: Hub, config: Config) -> Self {
        Poll {
            hub,
            sessions: Sessions::new(&config),
            config: Arc::new(config),
        }
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request. Every answer, errors included, carries `Cache-Control: no-store`
    /// and the CORS headers the request's origin is allowed. The request passes the
    /// configuration's [`Edge`](rt_http::Edge) first (origin, then token); polls and
    /// publishes are limited to the permissions its token grants.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<Body>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let edge = &self.config.edge;
        rt_http::host_from_authority(&mut req);
        let (parts, body) = req.into_parts();
        if Origins::is_preflight(&parts.method, &parts.headers) {
            return edge.origins.preflight(&parts.headers);
        }
        // Only the origin (and the host it is compared with) is needed once the request is
        // answered.
        let mut origin = HeaderMap::new();
        for name in [ORIGIN, HOST] {
            if let Some(v) = parts.headers.get(&name) {
                origin.insert(name, v.clone());
            }
        }
        let query = Query::parse(parts.uri.query());
        let publish = parts.uri.path().ends_with("/publish");
        let name = if publish { PUBLISH } else { TRANSPORT };
        // A publish refused before its body is read has it read and dropped at the end.
        let mut body = (publish && parts.method == Method::POST).then_some(body);
        // A poll is held before it is answered: it is a connection from the request on.
        let mut tracked = (!publish && parts.method == Method::GET)
            .then(|| Connection::open(edge.observer.clone(), TRANSPORT));
        // A refusal at admission is reported by the edge itself; later ones (a channel outside
        // the grant) are reported here.
        let mut presented = None;
        let result = match edge.admit(name, &parts.headers, &query).await {
            Err(e) => Err(e.into()),
            Ok(admitted) => {
                presented = Some(admitted.presented);
                let client = admitted.client(name);
                match (publish, &parts.method, body.take()) {
                    (false, &Method::GET, _) => self.poll(&admitted, &query, &mut tracked).await,
                    (true, &Method::POST, Some(body)) => {
                        let res = self.publish(client, &parts.headers, body).await;
                        if let Some(code) = res.extensions().get::<rt_http::ErrorCode>() {
                            edge.count_refusal(PUBLISH, code.0, admitted.presented);
                        }
                        Ok(res)
                    }
                    (false, method, _) => Err(not_allowed(method, "GET, OPTIONS")),
                    (true, method, _) => Err(not_allowed(method, "POST, OPTIONS")),
                }
            }
        };
        let mut res = match result {
            Ok(res) => res,
            Err(Error::Http(e)) => match presented {
                Some(presented) => edge.refuse(name, &e, presented),
                None => e.to_response(),
            },
            Err(e) => e.to_response(),
        };
        if let Some(conn) = &mut tracked {
            conn.close(Close::Code(res.status().as_u16()));
        }
        if let Some(body) = body {
            h::discard_body(body).await;
        }
        edge.origins.apply_cors(&origin, res.headers_mut());
        res
    }

    /// A long (or, with `timeout=0`, short) poll, of the channels it names and those the
    /// connect hook joins, answered with the hook's `data`.
    ///
    /// The subscription replays what is after the cursor; whatever is ready is answered at
    /// once. Otherwise the request waits on the subscription itself, which the hub wakes on
    /// publish, so a held poll does no work and is released by the first event, or by the
    /// first join/leave batch for its session (after [`PRESENCE_COALESCE`], to gather the
    /// batches of other nodes too). Dropping the future (the client went away) drops the
    /// subscription.
    ///
    /// A poll that names a session, or a channel that keeps presence, is attached to a session
    /// (`session.rs`): the session, not the poll's subscription, is the client's presence
    /// member, so that polling again is no leave and join.
    async fn poll(
        &self,
        admitted: &Admitted,
        query: &Query,
        tracked: &mut Option<Connection>,
    ) -> Result<Response<Body>, Error> {
        let client = admitted.client(TRANSPORT);
        let request = PollRequest::parse(
            query,
            &self.config,
            self.hub.config().max_channels,
            admitted,
        )?;
        self.config
            .edge
            .check_subscribe(client, &request.channels)
            .await?;
        let with_session = request.session.is_some()
            || request
                .channels
                .iter()
                .any(|c| self.hub.presence_enabled(c));
        let mut sub = self
            .hub
            .empty_subscription()
            .with_permissions(client.permissions.clone());
        if with_session {
            sub = sub.without_presence();
        }
        let joined = sub.add(request.channels.clone(), request.start).await?;
        let session = with_session.then(|| {
            self.sessions.attach(
                &self.hub,
                request.session,
                client.permissions,
                &request.channels,
            )
        });
        let mut batch = Batch::new(joined, self.config.batch);
        if let Some(session) = &session {
            answer_signals(session, &mut batch, &mut sub, &request.channels);
        }
        batch.fill(&mut sub).await;
        let presence_waits = session.as_ref().is_some_and(Attached::has_presence);
        if !batch.is_ready()
            && !presence_waits
            && request.timeout > Duration::ZERO
            && !self.hub.is_closing()
        {
            tokio::select! {
                // An event that is ready at the deadline still goes out.
                biased;
                // Join and leave events come from the session (see `Batch::push`).
                delivery = async {
                    loop {
                        match sub.next().await {
                            Some(Delivery::Presence(_)) => continue,
                            other => break other,
                        }
                    }
                } => {
                    batch.push(delivery);
                    batch.fill(&mut sub).await;
                }
                () = async {
                    match &session {
                        Some(session) => session.news().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tokio::time::sleep(PRESENCE_COALESCE).await;
                    batch.fill(&mut sub).await;
                }
                () = tokio::time::sleep(request.timeout) => {}
                // Shutting down: answer now so the client re-polls (another node) from here.
                () = self.hub.closing() => {}
            }
        }
        if let Some(session) = &session {
            answer_signals(session, &mut batch, &mut sub, &request.channels);
            for channel in batch.unsubscribed() {
                session.unsubscribed(channel);
            }
            if let Some(disconnect) = batch.disconnect() {
                session.disconnected(disconnect.clone());
            }
            let taken = session.take(&request.channels, client.permissions);
            batch.set_session(session.id(), taken);
        }
        if let Some(conn) = tracked {
            conn.delivered(batch.events());
        }
        let data = admitted.data.as_ref();
        Ok(h::json_bytes(
            StatusCode::OK,
            batch.encode(&sub.cursor(), data),
        ))
    }

    /// A publish from a polling client: the same JSON and validation as every other publish.
    async fn publish<B>(&self, client: Client<'_>, headers: &HeaderMap, body: B) -> Response<Body>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self
            .config
            .max_body
            .unwrap_or_else(|| h::publish_body_limit(self.hub.config().max_payload));
        let timeout = self.config.body_timeout;
        let edge = &self.config.edge;
        h::publish_as_client(&self.hub, edge, client, headers, body, limit, timeout).await
    }
}

/// Adds the signals that `session` heard while no poll of it could answer them (and that
/// the poll's subscription, made later, did not hear) to `batch`, as the subscription would
/// have: a channel taken away leaves `sub` too, so the answer's cursor no longer names it.
fn answer_signals(
    session: &Attached,
    batch: &mut Batch,
    sub: &mut rt_core::Subscription,
    channels: &[rt_core::Channel],
) {
    let signals = session.signals(channels);
    for channel in signals.unsubscribed {
        if !batch.unsubscribed().contains(&channel) {
            sub.remove(&channel);
            batch.push(Some(Delivery::Unsubscribed { channel }));
        }
    }
    if let Some(d) = signals.disconnect {
        if batch.disconnect().is_none() {
            batch.push(Some(Delivery::Disconnected {
                reconnect: d.reconnect,
                reason: d.reason,
            }));
        }
    }
}

fn not_allowed(method: &Method, allowed: &'static str) -> Error {
    rt_http::Error::MethodNotAllowed {
        method: method.clone(),
        allowed,
    }
    .into()
}
