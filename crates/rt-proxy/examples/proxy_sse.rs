//! SSE behind a connect hook, with a stand-in for the application's backend in the same
//! process: it admits `Cookie: session=demo` (subject `demo`, channels `news*`) and denies
//! everyone else with a reason.
//!
//! ```text
//! cargo run -p rt-proxy --example proxy_sse
//! curl -N -H 'cookie: session=demo' 'http://127.0.0.1:8090/sse?channel=news'   # the stream
//! curl -i 'http://127.0.0.1:8090/sse?channel=news'                            # 403, "not logged in"
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
use rt_proxy::{Proxy, ProxyConfig};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let connect = format!("http://{}/rt/connect", backend.local_addr()?);
    tokio::spawn(serve(backend, service_fn(application)));

    let hooks = ProxyConfig::default()
        .connect(&connect)?
        .forward_headers("cookie")?;
    let edge = rt_http::Edge::default().hooks(Arc::new(Proxy::new(hooks)?));
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let sse = rt_sse::Sse::new(hub, rt_sse::Config::default().edge(edge));
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("SSE on http://{addr}/sse?channel=news; the connect hook at {connect}");
    serve(listener, TowerToHyperService::new(sse)).await;
    Ok(())
}

/// The application's connect hook: its own session cookie decides.
async fn application(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let cookie = req.headers().get("cookie").and_then(|v| v.to_str().ok());
    let answer = match cookie {
        Some("session=demo") => {
            r#"{"allow": true, "subject": "demo", "subscribe": ["news*"], "meta": {"plan": "free"}}"#
        }
        _ => r#"{"allow": false, "reason": "not logged in"}"#,
    };
    Ok(Response::new(Full::new(Bytes::from_static(
        answer.as_bytes(),
    ))))
}

/// Serves `service` on every connection `listener` accepts, HTTP/1.1 or HTTP/2.
async fn serve<S, B>(listener: TcpListener, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
