//! Publishers: how each target is told to publish.
//!
//! rt: `POST /api/publish` on one keep-alive HTTP/1.1 connection, one request at a time (the
//! server API a backend uses; a publisher that outruns the server is slowed down, which the
//! achieved rate shows). rt's WebSocket publish is not used: rt-ws closes a client whose
//! acknowledgements queue up (1013) instead of slowing it down, so a fast publisher is
//! disconnected as soon as the server saturates (see docs/benchmarks.md).
//! baseline and Node `ws`: text frames on `/pub`, broadcast as they are.
//! Socket.IO: a Socket.IO client emitting `pub`, which the server broadcasts as `m`.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::marker::{now_us, payload, Marker};
use crate::servers::Target;
use crate::wsclient::{tcp, Frame, WsConn};

/// How a publish refused by the server (not a failed connection) is reported.
const ANSWERED: &str = "publish answered";

/// The API key rt-server is started with.
pub(crate) const API_KEY: &str = "bench-key";

/// A connected publisher.
#[derive(Debug)]
pub(crate) enum Publisher {
    Http {
        sender: SendRequest<Full<Bytes>>,
        addr: SocketAddr,
    },
    Ws {
        target: Target,
        conn: WsConn,
    },
}

impl Publisher {
    pub(crate) async fn connect(target: Target, addr: SocketAddr) -> Result<Publisher, String> {
        if target == Target::Rt {
            let sender = http_sender(addr).await?;
            return Ok(Publisher::Http { sender, addr });
        }
        let path = match target {
            Target::Socketio => target.ws_path(),
            _ => "/pub".to_string(),
        };
        let mut conn = WsConn::connect(addr, None, &path)
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        if target == Target::Socketio {
            // Events sent before the namespace connect is acknowledged close the session.
            crate::fleet::socketio_join(&mut conn)
                .await
                .map_err(|e| format!("publisher: {e}"))?;
        }
        Ok(Publisher::Ws { target, conn })
    }

    /// Publishes one marker on `channel` (payload of `size` bytes).
    pub(crate) async fn publish(
        &mut self,
        channel: &str,
        marker: Marker,
        size: usize,
    ) -> Result<(), String> {
        let marker = Marker {
            time_us: now_us(),
            ..marker
        };
        let data = payload(marker, size);
        let (target, conn) = match self {
            Publisher::Http { sender, addr } => {
                // A client message id makes the retry below exactly-once.
                let id = format!("p{}-{}-{}", marker.phase, marker.seq, marker.time_us);
                let first = post(sender, *addr, channel, &data, &id).await;
                if first.is_ok() || first.as_ref().is_err_and(|e| e.starts_with(ANSWERED)) {
                    return first;
                }
                // The connection failed under overload (hyper: "operation was canceled"):
                // reconnect and retry once, as a backend publisher would.
                *sender = http_sender(*addr).await?;
                return post(sender, *addr, channel, &data, &id).await;
            }
            Publisher::Ws { target, conn } => (*target, conn),
        };
        let message = match target {
            Target::Socketio => format!(r#"42["pub","{data}"]"#),
            _ => data,
        };
        conn.send_text(message.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        for frame in conn.poll_pending().await.map_err(|e| e.to_string())? {
            if matches!(&frame, Frame::Data(p) if target == Target::Socketio && &p[..] == b"2") {
                conn.send_text(b"3").await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

async fn http_sender(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tcp(addr, None).await.map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    channel: &str,
    data: &str,
    id: &str,
) -> Result<(), String> {
    let body = format!(r#"{{"channel":"{channel}","data":"{data}","id":"{id}"}}"#);
    let req = Request::post("/api/publish")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-api-key", API_KEY)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
    if status != http::StatusCode::OK {
        return Err(format!(
            "{ANSWERED} {status}: {}",
            String::from_utf8_lossy(&body.to_bytes())
        ));
    }
    Ok(())
}
