//! A minimal WebSocket client for load generation.
//!
//! The generator must receive millions of frames per second on one core, so it reads raw
//! frames from its own buffer (no per-message allocation, no UTF-8 validation) and only
//! answers pings. Outgoing frames are masked as RFC 6455 requires.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What [`WsConn::next`] found.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A text or binary payload (fragments are delivered as they come).
    Data(BytesMut),
    /// The server closed: code and reason.
    Close(u16, String),
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct WsConn {
    stream: TcpStream,
    buf: BytesMut,
}

/// Opens a TCP connection from `src` (a 127.0.0.x address spreads connections over more
/// source ports than one address has).
pub(crate) async fn tcp(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = src {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl WsConn {
    /// Connects and upgrades `GET path`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        src: Option<IpAddr>,
        path: &str,
    ) -> io::Result<WsConn> {
        let mut stream = tcp(addr, src).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(4096);
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > 16 * 1024 || stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the WebSocket handshake",
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("upgrade refused: {status}")));
        }
        buf.advance(end);
        Ok(WsConn { stream, buf })
    }

    /// Sends one masked text frame.
    pub(crate) async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = fastrand::u32(..).to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }

    async fn send_control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![
            0x80 | opcode,
            0x80 | payload.len().min(125) as u8,
            0,
            0,
            0,
            0,
        ];
        frame.extend_from_slice(&payload[..payload.len().min(125)]);
        self.stream.write_all(&frame).await
    }

    /// A complete frame at the start of the buffer: (header length, payload length, opcode).
    fn parse_header(&self) -> Option<(usize, usize, u8)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return None,
            n => (u64::from(n), 2),
        };
        if masked {
            header += 4;
        }
        let len = usize::try_from(len).ok()?;
        (b.len() >= header + len).then_some((header, len, opcode))
    }

    /// The next frame that is not a ping or pong (answering pings on the way). `Ok(None)`
    /// when the connection ended without a close frame.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.try_next().await? {
                return Ok(Some(frame));
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next frame already buffered, if any (pings answered on the way).
    pub(crate) async fn try_next(&mut self) -> io::Result<Option<Frame>> {
        while let Some((header, len, opcode)) = self.parse_header() {
            let masked = self.buf[1] & 0x80 != 0;
            let mask = [
                self.buf[header.saturating_sub(4)],
                self.buf[header.saturating_sub(3)],
                self.buf[header.saturating_sub(2)],
                self.buf[header.saturating_sub(1)],
            ];
            self.buf.advance(header);
            let mut payload = self.buf.split_to(len);
            if masked {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            match opcode {
                0x9 => self.send_control(0xA, &payload).await?,
                0xA => {}
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    let _ = self
                        .send_control(0x8, &payload[..payload.len().min(2)])
                        .await;
                    return Ok(Some(Frame::Close(code, reason.into_owned())));
                }
                _ => return Ok(Some(Frame::Data(payload))),
            }
        }
        // Keep the buffer from growing forever when frames are consumed in place.
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = BytesMut::with_capacity(4096);
        }
        Ok(None)
    }

    /// Reads whatever the socket has without waiting (for publishers, which must answer
    /// pings but never block on reading).
    pub(crate) async fn poll_pending(&mut self) -> io::Result<Vec<Frame>> {
        let mut eof = false;
        loop {
            self.buf.reserve(4096);
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut frames = vec![];
        while let Some(frame) = self.try_next().await? {
            if let Frame::Close(code, reason) = &frame {
                return Err(io::Error::other(format!(
                    "closed by server: {code} {reason}"
                )));
            }
            frames.push(frame);
        }
        if eof {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            ));
        }
        Ok(frames)
    }
}
