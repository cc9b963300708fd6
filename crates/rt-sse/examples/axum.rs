//! rt-sse mounted in an axum app, beside an ordinary JSON route, sharing one hub.
//!
//! ```text
//! cargo run -p rt-sse --example sse-axum
//! curl -N 'http://127.0.0.1:3000/sse?channel=news'
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

/// The app's own route: it publishes on the hub the SSE endpoint reads from.
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
    // Anyone may read: an example. A real app sets an authenticator (see rt-http's Edge).
    let edge = Edge::default().allow_anonymous();
    let sse = rt_sse::Sse::new(hub.clone(), rt_sse::Config::default().edge(edge));
    let app = Router::new()
        .route_service("/sse", sse)
        .route("/news", post(news))
        .with_state(hub);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", tcp.local_addr()?);
    // Connections whose writes stall (a half-open client) are cut, as in rt-server.
    axum::serve(StallListener::new(tcp, DEFAULT_WRITE_STALL), app).await?;
    Ok(())
}
