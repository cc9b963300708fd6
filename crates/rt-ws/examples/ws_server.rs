//! A minimal rt WebSocket server on plain hyper and an in-memory hub, publishing the time on
//! channel `clock` every second.
//!
//! ```text
//! cargo run -p rt-ws --example ws_server
//! # in another terminal (Node):
//! # node -e "const ws=new (require('ws'))('ws://127.0.0.1:8090/ws');ws.on('open',()=>ws.send(JSON.stringify({type:'subscribe',channels:['clock']})));ws.on('message',m=>console.log(String(m)))"
//! ```

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_http::{Edge, StallGuard, DEFAULT_WRITE_STALL};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let clock = Channel::new("clock")?;
    let publisher = hub.clone();
    tokio::spawn(async move {
        loop {
            let now = rt_core::now_ms().to_string();
            let _ = publisher
                .publish(NewEvent::new(clock.clone(), Payload::text(now)))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    // Anyone may connect: an example. A real app sets an authenticator (see rt-http's Edge).
    let config = rt_ws::Config::default().edge(Edge::default().allow_anonymous());
    let ws = rt_ws::WebSocket::new(hub, config);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("ws://{}/ws", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        // Connections whose writes stall (a half-open client) are cut, as in rt-server.
        let io = TokioIo::new(StallGuard::new(stream, DEFAULT_WRITE_STALL));
        let service = TowerToHyperService::new(ws.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}
