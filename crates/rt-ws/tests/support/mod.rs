//! What the test files share: the endpoint served by plain hyper on a free loopback port.

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

/// Serves `ws` (HTTP/1.1 with upgrades) on a free port of 127.0.0.1 until the test ends.
pub(crate) async fn serve(ws: rt_ws::WebSocket) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(ws.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}
