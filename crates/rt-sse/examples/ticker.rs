//! A tiny SSE server: channel `ticks` gets an event every second.
//!
//! ```text
//! cargo run -p rt-sse --example ticker
//! curl -N 'http://127.0.0.1:3000/sse?channel=ticks'
//! curl -N 'http://127.0.0.1:3000/sse?channel=ticks&lastEventId=earliest'
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rt_core::{Channel, EventName, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let sse = rt_sse::Sse::new(hub.clone(), rt_sse::Config::default());

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
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("curl -N 'http://{addr}/sse?channel=ticks'");
    loop {
        let (stream, _) = listener.accept().await?;
        let sse = sse.clone();
        let service = service_fn(move |req| {
            let sse = sse.clone();
            async move { Ok::<_, Infallible>(sse.handle(req).await) }
        });
        tokio::spawn(async move {
            // Serves HTTP/1.1 and HTTP/2 prior knowledge alike.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
