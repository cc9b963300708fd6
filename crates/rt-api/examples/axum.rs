//! The server API mounted in an axum app, beside the app's own routes, over one hub.
//!
//! ```text
//! cargo run -p rt-api --example axum
//! curl -H 'x-api-key: change-me' -H 'content-type: application/json' \
//!      -d '{"channels":["news","alerts"],"data":"hello"}' http://127.0.0.1:3000/api/broadcast
//! curl -H 'x-api-key: change-me' 'http://127.0.0.1:3000/api/history?channel=news'
//! ```

use std::sync::Arc;

use rt_api::{Api, ApiKey, Config};
use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let key = std::env::var("API_KEY").unwrap_or_else(|_| "change-me".into());
    let api = Api::new(hub, Config::default().key(ApiKey::new(Some(key))));
    let app = axum::Router::new()
        .route_service("/api/{*route}", api)
        .route("/", axum::routing::get(|| async { "the app's own page" }));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", tcp.local_addr()?);
    axum::serve(tcp, app).await?;
    Ok(())
}
