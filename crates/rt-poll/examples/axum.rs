//! rt-poll mounted in an axum app, beside an ordinary JSON route, sharing one hub.
//!
//! ```text
//! cargo run -p rt-poll --example poll-axum
//! curl 'http://127.0.0.1:3000/poll?channel=news&timeout=25'          # held until an event
//! curl -H 'content-type: application/json' -d '{"text":"hello"}' http://127.0.0.1:3000/news
//! curl -H 'content-type: application/json' -d '{"channel":"news","data":"hi"}' http://127.0.0.1:3000/poll/publish
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

/// The app's own route: it publishes on the hub the polling endpoint reads from.
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
    // Anyone may poll and publish: an example. A real app sets an authenticator (see rt-http's
    // Edge), e.g. `Edge::default().authenticator(Arc::new(verifier))`.
    let edge = Edge::default().allow_anonymous();
    let poll = rt_poll::Poll::new(hub.clone(), rt_poll::Config::default().edge(edge));
    // One endpoint on both routes: a path ending in `/publish` publishes, any other polls.
    let app = Router::new()
        .route_service("/poll", poll.clone())
        .route_service("/poll/publish", poll)
        .route("/news", post(news))
        .with_state(hub);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", tcp.local_addr()?);
    // Connections whose writes stall (a half-open client) are cut, as in rt-server.
    axum::serve(StallListener::new(tcp, DEFAULT_WRITE_STALL), app).await?;
    Ok(())
}
