//! Every rt transport in one axum app: WebSocket on `/ws`, Server-Sent Events on `/sse`,
//! polling on `/poll` (publishing on `/poll/publish`) and the app's own publish API on
//! `POST /api/publish`, all on one hub and behind one edge policy, with tower-http's CORS and
//! trace layers around them. This is what embedding rt looks like without rt-server: see
//! `docs/embedding.md` for what rt-server adds on top.
//!
//! ```text
//! cargo run -p rt-server --example axum_all
//! curl -N 'http://127.0.0.1:3000/sse?channel=news'
//! curl -s 'http://127.0.0.1:3000/poll?channel=news&cursor=earliest&timeout=0'
//! curl -s -H 'content-type: application/json' -d '{"channel":"news","data":"hello"}' \
//!      http://127.0.0.1:3000/api/publish
//! ```
//!
//! With `RT_JWT_SECRET` set, every route (the publish API included) wants an HS256 token
//! (`Authorization: Bearer ...` or `?token=...`) whose claims grant the channels, e.g.
//! `{"sub":"alice","exp":...,"subscribe":["news"],"publish":["news"]}`. `ORIGINS`
//! (comma-separated, `*` for any; default: same-origin only) names the pages that may use it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
use rt_http::{Edge, Origins, Query, StallListener, TokenVerifier, DEFAULT_WRITE_STALL};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

/// What the app's own routes share with the transports.
#[derive(Clone)]
struct App {
    hub: Hub,
    edge: Edge,
}

/// `POST /api/publish`: the JSON publish every rt publish route takes
/// (`{"channel","data","event","id","encoding"}`), for the permissions the edge grants the
/// caller, answered with the same ack or JSON error as `/poll/publish` and the WebSocket.
async fn publish(State(app): State<App>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    let admitted = match app.edge.admit("api", &parts.headers, &query).await {
        Ok(admitted) => admitted,
        Err(e) => return e.to_response().into_response(),
    };
    let limit = rt_http::publish_body_limit(app.hub.config().max_payload);
    rt_http::publish(
        &app.hub,
        &admitted.permissions,
        &parts.headers,
        body,
        limit,
        rt_http::DEFAULT_BODY_TIMEOUT,
    )
    .await
    .into_response()
}

/// The CORS layer for the same origins the edge allows, so that the app's own routes and the
/// transports (whose WebSocket `Origin` check no CORS layer can do) agree.
fn cors(origins: &Origins) -> CorsLayer {
    let allow = match origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
        // Same-origin requests need no CORS headers: allow no other origin.
        _ => AllowOrigin::list([]),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("last-event-id"),
        ])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=debug".into()),
        )
        .init();

    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let origins = Origins::parse(&std::env::var("ORIGINS").unwrap_or_default());
    // One edge for every route. With a secret, clients need a token granting the channels;
    // without one this example lets anyone subscribe and publish anywhere, which is only for
    // development (the default Edge would refuse everything instead).
    let edge = match std::env::var("RT_JWT_SECRET") {
        Ok(secret) if !secret.is_empty() => {
            Edge::default().authenticator(Arc::new(TokenVerifier::hs256(secret.as_bytes())?))
        }
        _ => {
            tracing::warn!("RT_JWT_SECRET is not set: anyone may use every channel");
            Edge::default().allow_anonymous()
        }
    }
    .origins(origins.clone());

    let ws = rt_ws::WebSocket::new(hub.clone(), rt_ws::Config::default().edge(edge.clone()));
    let sse = rt_sse::Sse::new(hub.clone(), rt_sse::Config::default().edge(edge.clone()));
    let poll = rt_poll::Poll::new(hub.clone(), rt_poll::Config::default().edge(edge.clone()));
    let app = Router::new()
        .route_service("/ws", ws)
        .route_service("/sse", sse)
        .route_service("/poll", poll.clone())
        .route_service("/poll/publish", poll)
        .route("/api/publish", post(publish))
        .layer(cors(&origins))
        .layer(TraceLayer::new_for_http())
        .with_state(App { hub, edge });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("listening on http://{}", tcp.local_addr()?);
    println!("listening on http://{}", tcp.local_addr()?);
    // Connections whose writes stall (a half-open client) are cut, as in rt-server: the guard
    // is on the connection, so it also covers SSE streams and upgraded WebSockets.
    axum::serve(StallListener::new(tcp, DEFAULT_WRITE_STALL), app).await?;
    Ok(())
}
