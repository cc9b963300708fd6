//! rt-ws mounted in an axum app, beside an ordinary JSON route, sharing one hub.
//!
//! axum's `serve` runs hyper with upgrades enabled, so the WebSocket handshake `rt_ws::WebSocket`
//! answers on `/ws` is completed on the same connection: no `WebSocketUpgrade` extractor is
//! involved, the endpoint is mounted as a plain tower service.
//!
//! ```text
//! cargo run -p rt-ws --example ws-axum
//! # a WebSocket client (Node 20: --experimental-websocket; Node 22+ has WebSocket built in):
//! node --experimental-websocket -e "const ws=new WebSocket('ws://127.0.0.1:3000/ws');ws.onopen=()=>ws.send(JSON.stringify({type:'subscribe',channels:['news']}));ws.onmessage=m=>console.log(m.data)"
//! # then publish through the app's own route:
//! curl -H 'content-type: application/json' -d '{"text":"hello"}' http://127.0.0.1:3000/news
//! ```

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_http::{Edge, StallListener, DEFAULT_WRITE_STALL};

#[derive(serde::Deserialize)]
struct Post {
    text: String,
}

/// The app's own route: it publishes on the hub the WebSocket endpoint delivers from.
async fn news(State(hub): State<Hub>, Json(post): Json<Post>) -> Json<serde_json::Value> {
    let published = async {
        let event = NewEvent::new(Channel::new("news")?, Payload::text(post.text));
        hub.publish(event).await
    };
    Json(match published.await {
        Ok(p) => serde_json::json!({ "offset": p.event.offset() }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    // Anyone may connect, subscribe and publish: an example. A real app sets an authenticator
    // (see rt-http's Edge), e.g. `Edge::default().authenticator(Arc::new(verifier))`.
    let edge = Edge::default().allow_anonymous();
    let ws = rt_ws::WebSocket::new(hub.clone(), rt_ws::Config::default().edge(edge));
    let app = Router::new()
        .route_service("/ws", ws)
        .route("/news", post(news))
        .with_state(hub);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!("ws://{}/ws", tcp.local_addr()?);
    // Connections whose writes stall (a half-open client) are cut, as in rt-server. The guard
    // wraps the connection, so it still holds once hyper hands it over to the WebSocket.
    axum::serve(StallListener::new(tcp, DEFAULT_WRITE_STALL), app).await?;
    Ok(())
}
