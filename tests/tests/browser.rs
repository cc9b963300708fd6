//! The whole system in a real browser: Debian's headless Chromium, driven by playwright-core
//! from `tests/js/browser-*.mjs`, against the real rt-server binary.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use rt_tests::browser::run_script;
use rt_tests::{redis_url, unique, Server, TlsCert, TlsServer};

/// One browser at a time: each is heavy on a small machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn native_event_source_gets_named_events_and_resumes_after_a_restart() {
    let _one = BROWSER.lock().await;
    let redis = redis_url();
    let prefix = unique("browser-es");
    // History lives in Redis, so it survives the restart; a short retry: brings the browser
    // back soon after.
    let mut server = Server::start(&[
        "--backplane",
        &redis,
        "--redis-prefix",
        &prefix,
        "--sse-retry",
        "2s",
    ])
    .await;
    let out = run_script("browser-eventsource.mjs", &mut server, &[], LIMIT).await;
    assert!(out.contains("PASS"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn native_websocket_subscribe_publish_round_trip() {
    let _one = BROWSER.lock().await;
    let mut server = Server::start(&[]).await;
    let out = run_script("browser-websocket.mjs", &mut server, &[], LIMIT).await;
    assert!(out.contains("PASS"), "{out}");
}

/// Chromium opens its WebSocket on the page's HTTP/2 connection (RFC 8441, over TLS with
/// ALPN h2): the server counts one WebSocket over HTTP/2 and none over HTTP/1.1. See
/// tests/js/browser-ws-h2.mjs for how the test certificate is trusted.
#[tokio::test(flavor = "multi_thread")]
async fn native_websocket_runs_over_the_pages_h2_connection() {
    let _one = BROWSER.lock().await;
    let cert = TlsCert::localhost();
    // The script's library wants a server of its own (RT_URL); the page uses the TLS one.
    let mut plain = Server::start(&[]).await;
    let tls = TlsServer::start(&cert, &[]).await;
    let pem = cert.cert_pem.to_str().unwrap();
    let out = run_script("browser-ws-h2.mjs", &mut plain, &[&tls.url(""), pem], LIMIT).await;
    assert!(out.contains("PASS"), "{out}");
    let over = |http: &str| format!("rt_upgrades_total{{transport=\"ws\",http=\"{http}\"}}");
    assert_eq!(tls.metric(&over("2")).await, 1.0);
    assert_eq!(tls.metric(&over("1.1")).await, 0.0);
    let _ = std::fs::remove_dir_all(cert.dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_falls_back_to_sse_then_long_polling_with_every_event_once() {
    let _one = BROWSER.lock().await;
    let redis = redis_url();
    let prefix = unique("browser-fallback");
    let backplane = ["--backplane", &redis, "--redis-prefix", &prefix];
    let mut args = backplane.to_vec();
    args.extend(["--disable", "ws"]);
    let mut server = Server::start(&args).await;
    let out = run_script("browser-fallback.mjs", &mut server, &backplane, LIMIT).await;
    assert!(out.contains("PASS"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_page_shows_every_transport_and_is_screenshotted() {
    let _one = BROWSER.lock().await;
    let mut server = Server::start(&[]).await;
    let out = run_script("browser-demo.mjs", &mut server, &[], LIMIT).await;
    assert!(out.contains("PASS"), "{out}");
    let png = rt_tests::browser::artifacts_dir().join("demo.png");
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{png:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_page_can_be_turned_off() {
    let server = Server::start(&["--no-demo"]).await;
    let (status, _, _) = rt_tests::http::get(&server.url("/")).await.unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = rt_tests::http::get(&server.url("/client/index.js"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let on = Server::start(&[]).await;
    let (status, headers, body) = rt_tests::http::get(&on.url("/client/index.js"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(String::from_utf8_lossy(&body).contains("export { connect"));
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_transports_answer_404_and_the_others_still_work() {
    let server = Server::start(&["--disable", "sse,poll"]).await;
    for path in ["/sse?channel=a", "/poll?channel=a&timeout=0"] {
        let (status, _, body) = rt_tests::http::get(&server.url(path)).await.unwrap();
        assert_eq!(status, 404, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("disabled"),
            "{body}"
        );
    }
    let (status, body) = rt_tests::http::post_json(
        &server.url("/poll/publish"),
        &[],
        &serde_json::json!({"channel": "a", "data": "x"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (404, &"not_found".into())
    );
    // WebSocket is still there: a plain GET (no upgrade) reaches it and is refused by it.
    let (status, _, _) = rt_tests::http::get(&server.url("/ws")).await.unwrap();
    assert_ne!(status, 404);
}
