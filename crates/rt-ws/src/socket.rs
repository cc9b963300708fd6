//! The socket of an upgraded connection: tungstenite's stream, with permessage-deflate when
//! the handshake agreed on it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, SinkExt, Stream};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::deflate::{Deflater, Inflate};
use crate::frames::Frames;

/// An open WebSocket: a `Stream` of the client's messages and a `Sink` of the server's.
///
/// With permessage-deflate agreed, the messages read are already inflated and the data
/// messages sent are compressed (those shorter than
/// [`Compression::min_size`](crate::Compression::min_size) go as they are).
#[derive(Debug)]
pub struct Socket {
    ws: WebSocketStream<Inflate<TokioIo<hyper::upgrade::Upgraded>>>,
    /// Boxed: most connections have none, and it is part of every connection's state.
    deflate: Option<Box<Deflater>>,
}

impl Socket {
    pub(crate) fn new(
        ws: WebSocketStream<Inflate<TokioIo<hyper::upgrade::Upgraded>>>,
        deflate: Option<Deflater>,
    ) -> Self {
        Socket {
            ws,
            deflate: deflate.map(Box::new),
        }
    }

    /// Whether permessage-deflate was agreed on.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether [`Socket::write_frames`] may be used: frames written past tungstenite cannot
    /// be compressed per connection.
    pub(crate) fn takes_frames(&self) -> bool {
        self.deflate.is_none()
    }

    /// Writes `frames` after everything tungstenite holds (flushed first, so that its frames
    /// and these never interleave), and flushes. Cancel-safe, like [`Frames::write_to`].
    pub(crate) async fn write_frames(&mut self, frames: &mut Frames) -> Result<(), WsError> {
        self.flush().await?;
        frames
            .write_to(self.ws.get_mut())
            .await
            .map_err(WsError::Io)
    }

    /// Whether the connection takes events compressed once per publish (permessage-deflate
    /// without context takeover, at the endpoint's window size).
    pub(crate) fn shares_compression(&self) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.agreed().shared)
    }
}

impl Stream for Socket {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().ws).poll_next(cx)
    }
}

impl Sink<Message> for Socket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().ws).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        let item = match &mut this.deflate {
            Some(d) => d.outgoing(item),
            None => item,
        };
        Pin::new(&mut this.ws).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().ws).poll_close(cx)
    }
}
