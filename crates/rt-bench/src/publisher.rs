//! Publishers: one WebSocket client per publisher, for every target, sending without waiting
//! for answers (whatever the server sends back is read and dropped as it comes, so a
//! publisher that outruns the server is slowed down by TCP flow control, not disconnected).
//!
//! rt: `{"type":"publish",...}` messages on `/ws` (the acknowledgements, `{"type":"published"`,
//! are counted as they come, with the time of the last; a refusal fails the run).
//! baseline and Node `ws`: text frames on `/pub`, broadcast as they are.
//! Socket.IO: a Socket.IO client emitting `pub`, which the server broadcasts as `m`.
//! nchan: text frames on `/pub?channel=<channel>` (`nchan_publisher websocket`): one
//! publisher connection per channel, so nchan runs have one channel.

use std::net::SocketAddr;

use crate::marker::{now_us, payload, Marker};
use crate::servers::Target;
use crate::wsclient::{Frame, WsConn};

/// A connected publisher.
#[derive(Debug)]
pub(crate) struct Publisher {
    target: Target,
    conn: WsConn,
    /// Publishes sent.
    pub(crate) sent: u64,
    /// Acknowledgements received (rt only: the others send none).
    pub(crate) acked: u64,
    /// When the last acknowledgement was read ([`now_us`]).
    pub(crate) last_ack_us: u64,
}

impl Publisher {
    /// Connects a publisher of `channel` (the first of its channels, for nchan the only one).
    pub(crate) async fn connect(
        target: Target,
        addr: SocketAddr,
        channel: &str,
    ) -> Result<Publisher, String> {
        let path = match target {
            Target::Baseline | Target::Ws => "/pub".to_string(),
            Target::Nchan => format!("/pub?channel={channel}"),
            Target::Rt | Target::Socketio => target.ws_path(channel),
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
        Ok(Publisher {
            target,
            conn,
            sent: 0,
            acked: 0,
            last_ack_us: 0,
        })
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
        let message = match self.target {
            Target::Rt => format!(r#"{{"type":"publish","channel":"{channel}","data":"{data}"}}"#),
            Target::Baseline | Target::Ws | Target::Nchan => data,
            Target::Socketio => format!(r#"42["pub","{data}"]"#),
        };
        self.conn
            .send_text(message.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.sent += 1;
        let frames = self.conn.poll_pending().await.map_err(|e| e.to_string())?;
        self.read(frames).await
    }

    /// Reads acknowledgements until every publish sent has one, or none came for `quiet`
    /// (rt only; the other targets send none).
    pub(crate) async fn settle_acks(&mut self, quiet: std::time::Duration) -> Result<(), String> {
        while self.target == Target::Rt && self.acked < self.sent {
            match tokio::time::timeout(quiet, self.conn.next()).await {
                Err(_) => break,
                Ok(Ok(Some(frame))) => self.read(vec![frame]).await?,
                Ok(Ok(None)) => return Err("publisher: connection closed by server".into()),
                Ok(Err(e)) => return Err(format!("publisher: {e}")),
            }
        }
        Ok(())
    }

    /// Handles what the server sent: acknowledgements counted, Socket.IO pings answered,
    /// refusals returned as errors.
    async fn read(&mut self, frames: Vec<Frame>) -> Result<(), String> {
        for frame in frames {
            match frame {
                Frame::Data(p)
                    if self.target == Target::Rt && p.starts_with(br#"{"type":"published""#) =>
                {
                    self.acked += 1;
                    self.last_ack_us = now_us();
                }
                Frame::Data(p) if self.target == Target::Socketio && &p[..] == b"2" => {
                    self.conn.send_text(b"3").await.map_err(|e| e.to_string())?;
                }
                Frame::Data(p)
                    if self.target == Target::Rt && p.starts_with(br#"{"type":"error""#) =>
                {
                    return Err(format!("publish refused: {}", String::from_utf8_lossy(&p)));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
