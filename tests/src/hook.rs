//! A connect hook for tests that only need its answer: a small HTTP backend on 127.0.0.1 that
//! answers every call with what a function makes of its JSON body (tests/tests/proxy.rs has
//! the full backend, with sessions and every hook).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Serves `answer(body)` to every `POST` until the test ends; the URL of its `/connect`.
pub async fn connect_hook(answer: fn(&Value) -> Value) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let json = answer(&body).to_string();
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(json))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/connect")
}
