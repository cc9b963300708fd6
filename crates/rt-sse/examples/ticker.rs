//! A tiny SSE server: channel `ticks` gets an event every second.
//!
//! ```text
//! cargo run -p rt-sse --example ticker
//! curl -N 'http://127.0.0.1:3000/sse?channel=ticks'
//! curl -N 'http://127.0.0.1:3000/sse?channel=ticks&lastEventId=earliest'
//! ```

use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use rt_core::{Channel, EventName, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_http::{ConnectionLimits, Edge, Listener};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    // Anyone may read: an example. A real app sets an authenticator (see rt-http's Edge).
    let config = rt_sse::Config::default().edge(Edge::default().allow_anonymous());
    let sse = rt_sse::Sse::new(hub.clone(), config);

    let stop = hub.clone();
    let ticks = Channel::new("ticks")?;
    tokio::spawn(async move {
        for n in 1u64.. {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut event = NewEvent::new(ticks.clone(), Payload::text(format!("tick {n}")));
            event.name = EventName::new("tick").unwrap_or_default();
            if let Err(e) = hub.publish(event).await {
                eprintln!("publish failed: {e}");
            }
        }
    });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!("curl -N 'http://{addr}/sse?channel=ticks'");
    // HTTP/1.1 and HTTP/2 within rt-server's connection limits; stalled writes (a half-open
    // client) are cut.
    let connections = Listener::new(tcp, ConnectionLimits::default())
        .serve(TowerToHyperService::new(sse), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Streams end with a spread-out `retry:`, so clients come back to another server.
    stop.begin_shutdown();
    connections.shutdown().await;
    Ok(())
}
