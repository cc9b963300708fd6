//! The reference server's own endpoints, through the real binary over real sockets.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use http::{Method, StatusCode};
use rt_tests::http::{curl_h2_prior_knowledge, get, post_json, send};
use rt_tests::Server;
use serde_json::json;

#[tokio::test]
async fn health_answers_over_http1_and_http2_cleartext() {
    let server = Server::start(&[]).await;
    let (status, headers, body) = get(&server.url("/health")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "ok");

    // HTTP/2 with prior knowledge on the same port.
    let text = curl_h2_prior_knowledge(&server.url("/health"));
    assert!(text.ends_with("\n2"), "not HTTP/2: {text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
}

#[tokio::test]
async fn publish_assigns_positions_and_is_idempotent() {
    let server = Server::start(&[]).await;
    let url = server.url("/api/publish");
    let key = [("x-api-key", "test-key")];
    let (s1, a1) = post_json(&url, &key, &json!({"channel":"news","data":"one"})).await;
    let (s2, a2) = post_json(
        &url,
        &key,
        &json!({"channel":"news","event":"update","data":{"n":2},"id":"m-1"}),
    )
    .await;
    let (s3, a3) = post_json(
        &url,
        &key,
        &json!({"channel":"news","data":"ignored","id":"m-1"}),
    )
    .await;
    let (s4, a4) = post_json(
        &url,
        &[("authorization", "Bearer test-key")],
        &json!({"channel":"other","data":"AP8=","encoding":"base64"}),
    )
    .await;
    assert_eq!([s1, s2, s3, s4], [StatusCode::OK; 4]);
    assert_eq!(a1["offset"], 1);
    assert_eq!(a2["offset"], 2);
    assert_eq!(a2["duplicate"], false);
    assert_eq!(
        a3["offset"], 2,
        "a retried message id returns the first position"
    );
    assert_eq!(a3["duplicate"], true);
    assert_eq!(a3["id"], "m-1");
    assert_eq!(a4["offset"], 1, "offsets are per channel");
    assert_eq!(a1["epoch"], a2["epoch"]);
    assert_eq!(a1["type"], "published");
}

/// Request headers, body, expected status and error code.
type Case<'a> = (Vec<(&'a str, &'a str)>, String, StatusCode, &'a str);

#[tokio::test]
async fn publish_errors_are_json_with_codes() {
    let server = Server::start(&["--max-payload", "16"]).await;
    let url = server.url("/api/publish");
    let key = ("x-api-key", "test-key");
    let cases: Vec<Case> = vec![
        (
            vec![],
            json!({"channel":"a","data":"x"}).to_string(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            vec![("x-api-key", "wrong")],
            json!({"channel":"a","data":"x"}).to_string(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            vec![key],
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            vec![key],
            json!({"data":"x"}).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            vec![key],
            json!({"channel":"a b","data":"x"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_channel",
        ),
        (
            vec![key],
            json!({"channel":"a","event":"no spaces","data":"x"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_event_name",
        ),
        (
            vec![key],
            json!({"channel":"a","data":"x".repeat(17)}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            vec![key],
            "x".repeat(1 << 20),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            vec![key],
            json!({"channel":"a","data":"x","id":""}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_message_id",
        ),
        // Only JSON bodies publish (no cross-site "simple" POSTs): see security.rs.
        (
            vec![key, ("content-type", "text/plain")],
            json!({"channel":"a","data":"x"}).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (mut headers, body, want_status, want_code) in cases {
        if !headers.iter().any(|(k, _)| *k == "content-type") {
            headers.push(("content-type", "application/json"));
        }
        let (status, h, body) = send(Method::POST, &url, &headers, body.clone())
            .await
            .unwrap();
        assert_eq!(status, want_status, "{body:?}");
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], want_code, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    // The server is still fine and nothing was published by the failures.
    let (_, ok) = post_json(&url, &[key], &json!({"channel":"a","data":"x"})).await;
    assert_eq!(ok["offset"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let server = Server::start(&[]).await;
    let (status, _, body) = get(&server.url("/nope")).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("not_found"));
    let (status, _, _) = get(&server.url("/api/publish")).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn publish_api_is_off_without_a_key() {
    let server = Server::start(&["--api-key", ""]).await;
    let (status, v) = post_json(
        &server.url("/api/publish"),
        &[("x-api-key", "")],
        &json!({"channel":"a","data":"x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut server = Server::start(&["--shutdown-deadline", "2s"]).await;
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(status.success(), "{status:?}");
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_option() {
    let bin = rt_tests::target_dir().join("debug").join("rt-server");
    // Server::start builds the binary; make sure it exists for this synchronous test.
    if !bin.exists() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { drop(Server::start(&[]).await) });
    }
    for (args, needle) in [
        (vec!["--history-age", "soon"], "--history-age"),
        (vec!["--backplane", "postgres://x"], "--backplane"),
        (vec!["--max-channels", "0"], "--max-channels"),
    ] {
        let out = std::process::Command::new(&bin)
            .args(&args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
