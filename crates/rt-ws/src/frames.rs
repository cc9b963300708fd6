//! Event frames written past tungstenite. A batch of deliveries is encoded straight from the
//! events' cached payloads into one buffer and written with one call: no `Message`, no
//! shared-count clone of the payload and no second copy into tungstenite's write buffer per
//! delivery. A server's frames are unmasked, so a frame's bytes are its header (FIN, opcode,
//! length) and the payload as cached on the event.

use std::io;

use rt_core::Event;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::protocol;

/// Complete data frames waiting for the socket, and how much of them is written.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    buf: Vec<u8>,
    sent: usize,
    /// Bytes of the last batch: the next one reserves that much at once.
    last: usize,
}

impl Frames {
    /// Appends `event`'s frame (see [`protocol::event_payload`]).
    pub(crate) fn push_event(&mut self, event: &Event) {
        let (data, payload) = protocol::event_payload(event);
        self.push(data, payload);
    }

    /// Appends one unfragmented data frame carrying `payload`.
    pub(crate) fn push(&mut self, data: Data, payload: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.last);
        }
        self.buf.reserve(payload.len() + 10);
        self.buf.push(0x80 | u8::from(OpCode::Data(data)));
        match payload.len() {
            n if n < 126 => self.buf.push(n as u8),
            n if n <= 0xffff => {
                self.buf.push(126);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.buf.push(127);
                self.buf.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.buf.extend_from_slice(payload);
    }

    /// Whether everything appended is written.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Writes what is left and flushes. Cancel-safe: a write cut short (a stalled client)
    /// resumes where it stopped, so the frames stay whole on the wire. Once all is out the
    /// buffer is released: an idle connection keeps none.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        while self.sent < self.buf.len() {
            let n = io.write(&self.buf[self.sent..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.sent += n;
        }
        io.flush().await?;
        *self = Frames {
            last: self.buf.len(),
            ..Frames::default()
        };
        Ok(())
    }
}
