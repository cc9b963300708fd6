//! A WebSocket echo server built from rt-ws's handshake and socket setup, for the Autobahn
//! conformance suite (`cargo xtask autobahn`). Every text and binary message is sent back.
//!
//! ```text
//! cargo run -p rt-ws --example echo -- 127.0.0.1:9001
//! ```
//!
//! The message limit is raised to 16 MiB because Autobahn's section 9 sends messages that
//! large, and permessage-deflate is on (with context takeover, and every message compressed)
//! for sections 12 and 13; everything else (handshake checks, buffer sizes) is rt-ws's
//! default.

use std::convert::Infallible;

use futures_util::{SinkExt, StreamExt};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let config = rt_ws::Config::default()
        .max_message(16 << 20)
        .max_frame(16 << 20)
        .compression(rt_ws::Compression::context_takeover().min_size(0));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let config = config.clone();
                async move {
                    let upgrade = match rt_ws::Upgrade::new(req, &config).await {
                        Ok(u) => u,
                        Err(e) => return Ok::<_, Infallible>(e.to_response()),
                    };
                    let response = upgrade.response();
                    tokio::spawn(async move {
                        if let Ok(socket) = upgrade.socket().await {
                            echo(socket).await;
                        }
                    });
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn echo(mut socket: rt_ws::Socket) {
    while let Some(Ok(msg)) = socket.next().await {
        if (msg.is_text() || msg.is_binary()) && socket.send(msg).await.is_err() {
            return;
        }
    }
}
