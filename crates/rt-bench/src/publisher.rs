//! Publishers: how each target is told to publish.
//!
//! rt: `POST /api/publish` on a keep-alive HTTP/1.1 connection, one at a time (each
//! publish is acknowledged once stored, so the achieved rate shows when rt pushes back).
//! baseline and Node `ws`: a WebSocket client on `/pub` whose text frames are broadcast.
//! Socket.IO: a Socket.IO client emitting `pub`, which the server broadcasts as `m`.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::marker::{now_us, payload, Marker};
use crate::servers::{Target, API_KEY};
use crate::wsclient::{tcp, Frame, WsConn};

/// A connected publisher.
#[derive(Debug)]
pub(crate) enum Publisher {
    Http {
        sender: SendRequest<Full<Bytes>>,
        addr: SocketAddr,
    },
    Ws(WsConn),
    SocketIo(WsConn),
}

impl Publisher {
    pub(crate) async fn connect(target: Target, addr: SocketAddr) -> Result<Publisher, String> {
        match target {
            Target::Rt => {
                let stream = tcp(addr, None).await.map_err(|e| e.to_string())?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Publisher::Http { sender, addr })
            }
            Target::Baseline | Target::Ws => WsConn::connect(addr, None, "/pub")
                .await
                .map(Publisher::Ws)
                .map_err(|e| format!("publisher: {e}")),
            Target::Socketio => {
                let mut conn = WsConn::connect(addr, None, &target.ws_path(""))
                    .await
                    .map_err(|e| format!("publisher: {e}"))?;
                // Events sent before the namespace connect is acknowledged close the session.
                crate::fleet::socketio_join(&mut conn)
                    .await
                    .map_err(|e| format!("publisher: {e}"))?;
                Ok(Publisher::SocketIo(conn))
            }
        }
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
        match self {
            Publisher::Http { sender, addr } => {
                let body = format!(r#"{{"channel":"{channel}","data":"{data}"}}"#);
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
                        "publish answered {status}: {}",
                        String::from_utf8_lossy(&body.to_bytes())
                    ));
                }
                Ok(())
            }
            Publisher::Ws(conn) => {
                conn.send_text(data.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                conn.poll_pending().await.map_err(|e| e.to_string())?;
                Ok(())
            }
            Publisher::SocketIo(conn) => {
                let packet = format!(r#"42["pub","{data}"]"#);
                conn.send_text(packet.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                for frame in conn.poll_pending().await.map_err(|e| e.to_string())? {
                    if matches!(&frame, Frame::Data(p) if &p[..] == b"2") {
                        conn.send_text(b"3").await.map_err(|e| e.to_string())?;
                    }
                }
                Ok(())
            }
        }
    }
}
