//! rt's three transports mounted in-process in plain hyper, as an application embeds them:
//! one tower service dispatching on the path ([`Routes`]: `/ws`, `/sse`, `/poll` and
//! `/poll/publish`), served by `hyper_util`'s auto builder with upgrades through
//! `TowerToHyperService` ([`serve`]). Shared by tests/tests/embedding.rs and
//! tests/tests/conformance.rs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{self, Context};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rt_core::Hub;
use rt_http::Edge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

/// The router of the plain-hyper mount: `/ws`, `/sse`, `/poll` and `/poll/publish` to their
/// transport, anything else a 404 `not_found`.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `/ws`.
    pub ws: rt_ws::WebSocket,
    /// `/sse`.
    pub sse: rt_sse::Sse,
    /// `/poll` and `/poll/publish`.
    pub poll: rt_poll::Poll,
}

impl Routes {
    /// The three transports over `hub`, each with its own config and all behind `edge`.
    pub fn new(
        hub: &Hub,
        edge: Edge,
        ws: rt_ws::Config,
        sse: rt_sse::Config,
        poll: rt_poll::Config,
    ) -> Routes {
        Routes {
            ws: rt_ws::WebSocket::new(hub.clone(), ws.edge(edge.clone())),
            sse: rt_sse::Sse::new(hub.clone(), sse.edge(edge.clone())),
            poll: rt_poll::Poll::new(hub.clone(), poll.edge(edge)),
        }
    }
}

impl Service<Request<Incoming>> for Routes {
    type Response = Response<rt_http::Body>;
    type Error = Infallible;
    type Future = rt_http::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> task::Poll<Result<(), Infallible>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        match req.uri().path() {
            "/ws" => self.ws.call(req),
            "/sse" => self.sse.call(req),
            "/poll" | "/poll/publish" => self.poll.call(req),
            _ => Box::pin(async {
                Ok(rt_http::error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route",
                ))
            }),
        }
    }
}

/// A listener on `127.0.0.1:0` and the address it got.
pub async fn listen() -> (TcpListener, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("local address");
    (tcp, addr)
}

/// Serves `routes` on every connection `tcp` accepts, HTTP/1.1 (with upgrades) or HTTP/2
/// (with extended CONNECT),
/// each connection first wrapped by `wrap` (e.g. in an `rt_http::StallGuard`, or `|s| s`).
/// Runs until its task is aborted.
pub async fn serve<I>(tcp: TcpListener, routes: Routes, wrap: impl Fn(TcpStream) -> I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let Ok((stream, _)) = tcp.accept().await else {
            continue;
        };
        let io = TokioIo::new(wrap(stream));
        let service = TowerToHyperService::new(routes.clone());
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // WebSockets over HTTP/2 too (RFC 8441), as docs/embedding.md says.
            builder.http2().enable_connect_protocol();
            let _ = builder.serve_connection_with_upgrades(io, service).await;
        });
    }
}
