//! A polling server on an in-memory hub.
//!
//! ```text
//! cargo run -p rt-poll --example poll_server                  # demo: hold a poll, publish, print, exit
//! cargo run -p rt-poll --example poll_server -- 127.0.0.1:8080  # keep serving on that address
//! curl 'http://127.0.0.1:8080/poll?channel=news&timeout=25'
//! curl -X POST http://127.0.0.1:8080/poll/publish -d '{"channel":"news","data":"hello"}'
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let serve_forever = std::env::args().nth(1);
    let addr: SocketAddr = serve_forever.as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let poll = rt_poll::Poll::new(hub, rt_poll::Config::default());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("polling on http://{addr}/poll, publishing on http://{addr}/poll/publish");
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let poll = poll.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let poll = poll.clone();
                    async move { Ok::<_, Infallible>(poll.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
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
