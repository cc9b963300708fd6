//! rt-server's authentication defaults (issue #16, item 4): without token options anyone may
//! subscribe, but client publishing is off except where `--anonymous-publish` allows it (and
//! on the demo page's `demo` channel while the demo is served); `--dev` opens everything.
//! Servers here start with `Server::start_exactly`, so the harness adds no `--dev`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use http::StatusCode;
use rt_tests::http::post_json;
use rt_tests::sse::SseStream;
use rt_tests::ws::{self, Ws};
use rt_tests::Server;
use serde_json::json;

/// `POST /poll/publish` without a token: the status and the error code (or `ok`).
async fn poll_publish(server: &Server, channel: &str) -> (StatusCode, String) {
    let (status, body) = post_json(
        &server.url("/poll/publish"),
        &[],
        &json!({"channel": channel, "data": "x"}),
    )
    .await;
    let code = body["error"]["code"].as_str().unwrap_or("ok").to_owned();
    (status, code)
}

/// A publish over WebSocket: `ok` with the offset, or the error code it was answered with.
async fn ws_publish(socket: &mut Ws, channel: &str) -> String {
    ws::send(
        socket,
        json!({"type": "publish", "channel": channel, "data": "x", "id": format!("m-{channel}")}),
    )
    .await;
    let answer = ws::recv(socket).await;
    match answer["type"].as_str() {
        Some("published") => "ok".into(),
        _ => answer["code"].as_str().unwrap_or("?").to_owned(),
    }
}

/// `GET /sse` of `channel`: the status of the answer.
async fn sse_status(server: &Server, channel: &str) -> StatusCode {
    let url = server.url(&format!("/sse?channel={channel}"));
    SseStream::open(&url, &[]).await.status
}

#[tokio::test]
async fn without_token_options_anyone_subscribes_but_publishes_only_on_the_demo_channel() {
    let server = Server::start_exactly(&[]).await;
    let mut socket = ws::connect(&server.ws_url("/ws"), &[]).await;
    ws::subscribe(&mut socket, &["news", "demo"], None).await;
    assert_eq!(sse_status(&server, "news").await, StatusCode::OK);

    assert_eq!(ws_publish(&mut socket, "news").await, "unauthorized");
    assert_eq!(
        poll_publish(&server, "news").await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    // The demo page works out of the box.
    assert_eq!(ws_publish(&mut socket, "demo").await, "ok");
    assert_eq!(poll_publish(&server, "demo").await.0, StatusCode::OK);
    // The backend's API key publishes anywhere, as before.
    rt_tests::http::publish(&server.url(""), "news", "from the backend").await;
}

#[tokio::test]
async fn without_the_demo_no_channel_takes_anonymous_publishes() {
    let server = Server::start_exactly(&["--no-demo"]).await;
    assert_eq!(
        poll_publish(&server, "demo").await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
}

#[tokio::test]
async fn anonymous_publishing_and_subscribing_are_opt_in_by_pattern() {
    let server = Server::start_exactly(&[
        "--anonymous-publish",
        "chat:*",
        "--anonymous-subscribe",
        "public:*,chat:*",
    ])
    .await;
    assert_eq!(poll_publish(&server, "chat:room").await.0, StatusCode::OK);
    assert_eq!(
        poll_publish(&server, "news").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sse_status(&server, "public:a").await, StatusCode::OK);
    assert_eq!(sse_status(&server, "news").await, StatusCode::UNAUTHORIZED);
    let mut socket = ws::connect(&server.ws_url("/ws"), &[]).await;
    assert_eq!(ws_publish(&mut socket, "chat:room").await, "ok");
    assert_eq!(ws_publish(&mut socket, "news").await, "unauthorized");
}

#[tokio::test]
async fn dev_mode_opens_every_channel() {
    let server = Server::start_exactly(&["--dev"]).await;
    assert_eq!(poll_publish(&server, "anything").await.0, StatusCode::OK);
    let mut socket = ws::connect(&server.ws_url("/ws"), &[]).await;
    assert_eq!(ws_publish(&mut socket, "else").await, "ok");
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("never use it in production"), "{log}");
}
