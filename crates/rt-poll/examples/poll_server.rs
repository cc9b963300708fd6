//! A polling server on plain hyper and an in-memory hub.
//!
//! Without an address it is a demo: it serves on a free port, holds a long poll, publishes
//! through `/poll/publish`, prints what the poll got and exits. With one (`ADDR`, or the first
//! argument) it keeps serving there.
//!
//! ```text
//! cargo run -p rt-poll --example poll_server                                # the demo
//! ADDR=127.0.0.1:8080 cargo run -p rt-poll --example poll_server            # keep serving
//! curl 'http://127.0.0.1:8080/poll?channel=news&timeout=25'
//! curl -H 'content-type: application/json' http://127.0.0.1:8080/poll/publish -d '{"channel":"news","data":"hello"}'
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
use rt_http::{Edge, StallGuard, DEFAULT_WRITE_STALL};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let serve_forever = std::env::var("ADDR")
        .ok()
        .or_else(|| std::env::args().nth(1));
    run(serve_forever.as_deref()).await
}

/// Serves on `serve_forever` until killed, or (without an address) runs the demo and returns
/// (tests/example.rs runs it in-process).
pub(crate) async fn run(serve_forever: Option<&str>) -> Result<(), Error> {
    let addr: SocketAddr = serve_forever.unwrap_or("127.0.0.1:0").parse()?;
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    // Anyone may poll and publish on every channel: an example. A real app sets an
    // authenticator (see rt-http's Edge); the default Edge refuses every request.
    let config = rt_poll::Config::default().edge(Edge::default().allow_anonymous());
    let poll = rt_poll::Poll::new(hub, config);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("polling on http://{addr}/poll, publishing on http://{addr}/poll/publish");
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            // Connections whose writes stall (a half-open client) are cut, as in rt-server.
            let io = TokioIo::new(StallGuard::new(stream, DEFAULT_WRITE_STALL));
            let service = TowerToHyperService::new(poll.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    if serve_forever.is_some() {
        server.await?;
        return Ok(());
    }

    // Demo: a short poll gives the live cursor; a long poll from it is released by a publish
    // from a polling client, and would get it even if the publish reached the server first.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |uri: String| {
        let client = client.clone();
        async move {
            let res = client.get(uri.parse()?).await?;
            Ok::<_, Error>(res.into_body().collect().await?.to_bytes())
        }
    };
    let short = get(format!("http://{addr}/poll?channel=news&timeout=0")).await?;
    let short: serde_json::Value = serde_json::from_slice(&short)?;
    let cursor = short["cursor"].as_str().unwrap_or_default();
    println!("short poll answer: {short}");
    let held = tokio::spawn(get(format!(
        "http://{addr}/poll?channel=news&timeout=10&cursor={cursor}"
    )));
    let publish = hyper::Request::post(format!("http://{addr}/poll/publish"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"channel":"news","data":"hello","id":"demo-1"}"#,
        )))?;
    let ack = client.request(publish).await?.into_body().collect().await?;
    println!("publish ack: {}", String::from_utf8_lossy(&ack.to_bytes()));
    let answer = held.await??;
    println!("long poll answer: {}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    if answer["events"][0]["data"] != "hello" {
        return Err("the long poll did not get the published event".into());
    }
    Ok(())
}
