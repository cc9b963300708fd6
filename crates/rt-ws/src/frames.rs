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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rt_core::{Channel, Epoch, EventName, Payload, Position};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    use super::*;

    /// What tungstenite writes for the same unfragmented server frame.
    fn tungstenite(data: Data, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::message(payload.to_vec(), OpCode::Data(data), true)
            .format(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn frames_are_byte_for_byte_tungstenites() {
        // Every length encoding: 7 bits, 16 bits, 64 bits, and their edges.
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            for data in [Data::Text, Data::Binary] {
                let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                let mut frames = Frames::default();
                frames.push(data, &payload);
                assert_eq!(frames.buf, tungstenite(data, &payload), "{data:?} × {len}");
            }
        }
    }

    #[test]
    fn an_event_is_framed_from_its_cached_payload() {
        let event = Event::new(
            Channel::new("c").unwrap(),
            Position {
                epoch: Epoch(0xab),
                offset: 3,
            },
            EventName::message(),
            Payload::text("hi"),
            9,
        );
        let mut frames = Frames::default();
        frames.push_event(&event);
        frames.push_event(&event);
        let one = tungstenite(Data::Text, event.json());
        assert_eq!(frames.buf, [one.clone(), one].concat());
    }

    #[tokio::test]
    async fn a_write_cut_short_resumes_where_it_stopped() {
        let mut frames = Frames::default();
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        for p in &payloads {
            frames.push(Data::Binary, p);
        }
        let expected = frames.buf.clone();
        // A peer that takes 64 bytes and then stops reading: the write stalls and is dropped.
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        let cut = tokio::time::timeout(Duration::from_millis(50), frames.write_to(&mut ours)).await;
        assert!(cut.is_err(), "the write must stall");
        assert!(!frames.is_empty());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap();
            got
        });
        frames.write_to(&mut ours).await.unwrap();
        assert!(frames.is_empty());
        assert_eq!(frames.buf.capacity(), 0, "no buffer kept once written");
        drop(ours);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
