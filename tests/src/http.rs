//! A minimal HTTP/1.1 client for tests.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How long [`http1`] waits for a connection.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Status, headers and the whole body.
pub type Answer = (StatusCode, HeaderMap, Bytes);

/// Sends one request and reads the whole answer.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    // No idle pool: the connection closes with the answer, so a test that counts the server's
    // connections (limits) never sees one left over from an earlier request.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within 30 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// A fresh HTTP/1.1 connection to `authority` (`host:port`), for requests sent one after
/// the other on it (send each with a `host` header); the error says why there is none.
pub async fn http1(authority: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = tokio::time::timeout(CONNECT_WAIT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| format!("{authority}: no TCP connection in time"))?
        .map_err(|e| format!("{authority}: TCP connect failed: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{authority}: HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Answer, String> {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// `POST url` with a JSON body and extra headers; returns the status and the parsed JSON body.
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, body) = send(Method::POST, url, &all, body.to_string())
        .await
        .expect("POST failed");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url} answered non-JSON ({e}): {body:?}"));
    (status, json)
}

/// Publishes through the server's `/api/publish` with the test API key.
pub async fn publish(base: &str, channel: &str, data: &str) -> serde_json::Value {
    let (status, json) = post_json(
        &format!("{base}/api/publish"),
        &[("x-api-key", "test-key")],
        &serde_json::json!({ "channel": channel, "data": data }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "publish failed: {json}");
    json
}

/// `GET url` with curl over cleartext HTTP/2 (prior knowledge), as an h2 proxy would send it:
/// the body, a newline, then the HTTP version curl used (`2` when it was HTTP/2).
pub fn curl_h2_prior_knowledge(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            url,
        ])
        .output()
        .expect("run curl");
    String::from_utf8(out.stdout).expect("curl printed UTF-8")
}
