//! A minimal rt WebSocket server on an in-memory hub, publishing the time on channel `clock`
//! every second.
//!
//! ```text
//! cargo run -p rt-ws --example ws_server
//! # in another terminal (Node):
//! # node -e "const ws=new (require('ws'))('ws://127.0.0.1:8090/ws');ws.on('open',()=>ws.send(JSON.stringify({type:'subscribe',channels:['clock']})));ws.on('message',m=>console.log(String(m)))"
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};

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
    let ws = rt_ws::WebSocket::new(hub, rt_ws::Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    println!("ws://{}/ws", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let ws = ws.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ws = ws.clone();
                async move { Ok::<_, Infallible>(ws.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
