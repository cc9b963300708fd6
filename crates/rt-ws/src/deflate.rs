//! permessage-deflate (RFC 7692): the offer and answer of the handshake, the compression of
//! the messages the server sends, and the decompression of those it receives.
//!
//! tungstenite knows no extension: it fails every frame with a reserved bit set. So a
//! compressed message is inflated *below* it, by [`Inflate`], an I/O adapter that rewrites
//! each compressed message of the byte stream into plain frames before tungstenite parses
//! them; and a message the server sends is deflated *above* it ([`Deflater`]) and handed to
//! tungstenite as a ready frame with RSV1 set, which it writes as it is.
//!
//! The server always answers `client_no_context_takeover`: a client's messages (subscribes,
//! publishes) are few and small, and an inflater is then only alive while a message is being
//! read, so an idle socket holds none.

use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use rt_core::{Event, Wire};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

/// The end of a sync flush, taken off each compressed message and put back before inflating
/// it (RFC 7692, section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most decompressed bytes handed to tungstenite in one frame: a compressed frame is
/// inflated in pieces this size, so that a zip bomb costs at most `max_message` bytes before
/// tungstenite refuses the message (close 1009), never the whole bomb.
const PIECE: usize = 16 * 1024;

/// permessage-deflate (RFC 7692) settings of [`Config::compression`](crate::Config).
///
/// Off by default. [`Compression::shared`] compresses each event once per publish and sends
/// the same bytes to every connection (no per-connection compressor, idle sockets hold no
/// compression state); [`Compression::context_takeover`] keeps a compressor per connection
/// whose window spans messages, which shrinks small, similar events further at the cost of
/// about 200–320 KiB per connection that negotiated it (zlib's state at 9–15 window bits).
///
/// ```
/// let c: rt_ws::Compression = "shared".parse().unwrap();
/// assert_eq!(c, rt_ws::Compression::shared());
/// let config = rt_ws::Config::default().compression(c.level(1));
/// assert!(config.compression.enabled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// Accept the extension when a client offers it.
    pub enabled: bool,
    /// Keep the server's compressor and its LZ77 window from one message to the next, per
    /// connection (unless the client asks for `server_no_context_takeover`). Off: events are
    /// compressed once per publish and the bytes are shared.
    pub context_takeover: bool,
    /// Base-2 logarithm of the server's LZ77 window, 9 to 15; a client's smaller
    /// `server_max_window_bits` wins.
    pub window_bits: u8,
    /// zlib compression level, 0 (none) to 9 (smallest, slowest).
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed: deflate cannot shrink
    /// them much, and each still costs a compression.
    pub min_size: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::off()
    }
}

impl Compression {
    /// The extension is declined: every message goes uncompressed.
    pub fn off() -> Self {
        Compression {
            enabled: false,
            context_takeover: false,
            window_bits: 15,
            level: 1,
            min_size: 128,
        }
    }

    /// Compression without context takeover: each event is compressed once per publish and
    /// shared by every connection. The compressed bytes are cached on the event, so endpoints
    /// that share a hub should agree on `level` and `window_bits`.
    pub fn shared() -> Self {
        Compression {
            enabled: true,
            ..Compression::off()
        }
    }

    /// Compression with a compressor per connection that keeps its window across messages.
    pub fn context_takeover() -> Self {
        Compression {
            context_takeover: true,
            ..Compression::shared()
        }
    }

    /// The window size actually used by the compressor. zlib cannot deflate with an 8-bit
    /// window, but its 9-bit window never reaches back more than 250 bytes (the window less
    /// its 262-byte lookahead), so its output inflates within 8 bits too.
    fn bits(&self) -> u8 {
        self.window_bits.clamp(9, 15)
    }
}

rt_http::setters!(Compression {
    window_bits: u8,
    level: u32,
    min_size: usize,
});

/// `off`, `shared` (or `on`) and `context-takeover` (or `context`), as the command line says it.
impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Compression::off()),
            "on" | "shared" => Ok(Compression::shared()),
            "context" | "context-takeover" => Ok(Compression::context_takeover()),
            other => Err(format!(
                "unknown WebSocket compression {other:?}: use off, shared or context-takeover"
            )),
        }
    }
}

/// What the handshake agreed on for the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server keeps its compressor between messages.
    pub(crate) context_takeover: bool,
    /// The compressor's window (9..=15).
    pub(crate) window_bits: u8,
    /// The connection can take the events compressed once per publish.
    pub(crate) shared: bool,
    pub(crate) level: u32,
    pub(crate) min_size: usize,
}

/// Takes the first permessage-deflate offer of `headers` that is valid (RFC 7692, section
/// 7.1: known parameters, each once, with valid values; an invalid offer is declined and the
/// next one considered), and returns what was agreed with the `Sec-WebSocket-Extensions`
/// answer.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    config: &Compression,
) -> Option<(Agreed, HeaderValue)> {
    if !config.enabled {
        return None;
    }
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|offer| accept(offer, config))
}

fn accept(offer: &str, config: &Compression) -> Option<(Agreed, HeaderValue)> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let (mut server_no_takeover, mut client_no_takeover) = (false, false);
    let (mut server_bits, mut client_bits): (Option<u8>, Option<Option<u8>>) = (None, None);
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(unquote(v.trim_start())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) if !server_no_takeover => {
                server_no_takeover = true
            }
            ("client_no_context_takeover", None) if !client_no_takeover => {
                client_no_takeover = true
            }
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", v) if client_bits.is_none() => {
                client_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            // Unknown, repeated, or with a value where none belongs (or none where one must).
            _ => return None,
        }
    }
    let context_takeover = config.context_takeover && !server_no_takeover;
    let window_bits = server_bits.map_or(config.bits(), |b| b.min(config.bits()).max(9));
    let mut answer = String::from("permessage-deflate");
    if !context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    // Always: an inflater then lives only while a client's message is read.
    answer.push_str("; client_no_context_takeover");
    if let Some(b) = server_bits {
        answer.push_str(&format!(
            "; server_max_window_bits={}",
            b.min(config.bits())
        ));
    }
    let agreed = Agreed {
        context_takeover,
        window_bits,
        shared: !context_takeover && window_bits == config.bits(),
        level: config.level.min(9),
        min_size: config.min_size,
    };
    Some((agreed, HeaderValue::from_str(&answer).ok()?))
}

/// A parameter value, as a token or a quoted string (RFC 7692 section 7.1: the value must be
/// a token once unquoted; window sizes have no escapes).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// A window size: 8 to 15, digits only, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// Deflates `input` as one message: raw deflate ended by a sync flush, whose last four bytes
/// are left off (RFC 7692, section 7.2.1). `None` if zlib fails, which it does not on memory.
fn deflate(c: &mut Compress, input: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut pos = 0;
    loop {
        let before = c.total_in();
        c.compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
            .ok()?;
        pos += usize::try_from(c.total_in() - before).ok()?;
        // Room left in `out` means the flush completed.
        if pos == input.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    Some(Bytes::from(out))
}

fn compressor(level: u32, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(flate2::Compression::new(level), false, window_bits)
}

/// A compressed data frame, final, with RSV1 set.
fn compressed_frame(data: Data, payload: Bytes) -> Message {
    let header = FrameHeader {
        is_final: true,
        rsv1: true,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(data),
        mask: None,
    };
    Message::Frame(Frame::from_payload(header, payload))
}

/// The frame of an event compressed once per publish (cached on the event), for the
/// connections that agreed on [`Agreed::shared`]; `None` when the event is too small to
/// compress or deflate does not shrink it.
pub(crate) fn shared_event(event: &Event, config: &Compression) -> Option<Message> {
    let (data, plain) = crate::protocol::event_payload(event);
    if plain.len() < config.min_size {
        return None;
    }
    let packed = event.encoded(Wire::WsDeflate, |_| {
        deflate(&mut compressor(config.level.min(9), config.bits()), plain).unwrap_or_default()
    });
    // An empty result is zlib's failure; compressed is never empty for a non-empty input.
    (!packed.is_empty() && packed.len() < plain.len())
        .then(|| compressed_frame(data, packed.clone()))
}

/// Compresses the messages a connection sends.
#[derive(Debug)]
pub(crate) struct Deflater {
    agreed: Agreed,
    /// With context takeover only: the compressor whose window spans messages.
    kept: Option<Box<Compress>>,
}

impl Deflater {
    pub(crate) fn new(agreed: Agreed) -> Self {
        Deflater { agreed, kept: None }
    }

    pub(crate) fn agreed(&self) -> &Agreed {
        &self.agreed
    }

    /// `msg` as it goes on the wire: a data message compressed, anything else (control frames,
    /// a frame already compressed once per publish, a small message) as it is.
    pub(crate) fn outgoing(&mut self, msg: Message) -> Message {
        let (data, payload) = match msg {
            Message::Text(t) => (Data::Text, Bytes::from(t)),
            Message::Binary(b) => (Data::Binary, b),
            Message::Frame(f) => {
                let h = f.header();
                match h.opcode {
                    OpCode::Data(d @ (Data::Text | Data::Binary)) if h.is_final && !h.rsv1 => {
                        (d, f.into_payload())
                    }
                    _ => return Message::Frame(f),
                }
            }
            other => return other,
        };
        if payload.len() < self.agreed.min_size {
            return Message::Frame(Frame::message(payload, OpCode::Data(data), true));
        }
        let a = self.agreed;
        let packed = if a.context_takeover {
            let c = self
                .kept
                .get_or_insert_with(|| Box::new(compressor(a.level, a.window_bits)));
            let packed = deflate(c, &payload);
            if packed.is_none() {
                // The client's window now differs from ours: stop compressing for good.
                self.agreed.min_size = usize::MAX;
                self.kept = None;
            }
            packed
        } else {
            // Without context takeover a message may go uncompressed when that is shorter.
            deflate(&mut compressor(a.level, a.window_bits), &payload)
                .filter(|p| p.len() < payload.len())
        };
        match packed {
            Some(p) => compressed_frame(data, p),
            None => Message::Frame(Frame::message(payload, OpCode::Data(data), true)),
        }
    }
}

/// The connection's byte stream as tungstenite reads it: without the extension, as it is;
/// with it, each compressed message inflated into plain frames (see the module docs).
#[derive(Debug)]
pub(crate) struct Inflate<S> {
    io: S,
    reader: Option<Box<Reader>>,
}

impl<S> Inflate<S> {
    /// `io` read through, inflating compressed messages when `deflate` was agreed.
    /// `max_frame`: tungstenite's frame limit, which the plain frames handed to it respect.
    pub(crate) fn new(io: S, deflate: bool, max_frame: usize) -> Self {
        let reader = deflate.then(|| {
            Box::new(Reader {
                piece: max_frame.clamp(1, PIECE),
                max_frame,
                input: BytesMut::new(),
                output: BytesMut::new(),
                part: Part::Header,
                message: None,
                failed: false,
            })
        });
        Inflate { io, reader }
    }
}

/// Turns the client's frames into frames tungstenite takes.
#[derive(Debug)]
struct Reader {
    /// Largest plain frame made from a compressed one.
    piece: usize,
    max_frame: usize,
    /// Bytes read from the socket and not yet handled.
    input: BytesMut,
    /// Bytes for tungstenite, not yet handed over.
    output: BytesMut,
    part: Part,
    /// Set while a compressed message is being read.
    message: Option<Box<Inflating>>,
    /// The compressed data was invalid: tungstenite was handed a frame it fails the connection
    /// on, and nothing else is read.
    failed: bool,
}

/// Where the reader is in the byte stream.
#[derive(Debug)]
enum Part {
    Header,
    /// Inside a frame passed on as it is.
    Plain {
        left: u64,
    },
    /// Inside a frame of a compressed message.
    Compressed {
        left: u64,
        mask: [u8; 4],
        /// Payload bytes already read, for the mask's phase.
        read: u64,
        fin: bool,
    },
}

/// A compressed message being read.
struct Inflating {
    inflater: Decompress,
    data: Data,
    /// A plain frame of the message went to tungstenite: the next ones are continuations.
    started: bool,
    /// Inflated bytes waiting to become a frame.
    piece: Vec<u8>,
    /// Bytes of [`TAIL`] fed after the last frame.
    tail: usize,
}

impl std::fmt::Debug for Inflating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflating")
            .field("data", &self.data)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Handles buffered input; `false` when more input is needed.
    fn step(&mut self) -> bool {
        match self.part {
            Part::Header => self.header(),
            Part::Plain { left } => {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.input.len());
                self.output.extend_from_slice(&self.input.split_to(n));
                self.part = match left - n as u64 {
                    0 => Part::Header,
                    left => Part::Plain { left },
                };
                n > 0 || left == 0
            }
            Part::Compressed { .. } => self.inflate(),
        }
    }

    fn header(&mut self) -> bool {
        let mut cursor = io::Cursor::new(&self.input[..]);
        let (h, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            // A header tungstenite cannot parse either: let it say so.
            Err(_) => {
                self.pass_rest();
                return true;
            }
        };
        let size = cursor.position() as usize;
        let (data, continuation) = match h.opcode {
            OpCode::Data(d @ (Data::Text | Data::Binary)) => (Some(d), false),
            OpCode::Data(Data::Continue) => (None, true),
            _ => (None, false),
        };
        // Anything else (RSV1 on a control frame or a continuation, an unmasked or oversized
        // frame, a new message inside a fragmented one) goes to tungstenite as it is, which
        // fails the connection with the right close code.
        let fits = usize::try_from(len).is_ok_and(|l| l <= self.max_frame);
        let starts = data.is_some() && h.rsv1 && self.message.is_none();
        let continues = continuation && !h.rsv1 && self.message.is_some();
        match h.mask {
            Some(mask) if fits && !h.rsv2 && !h.rsv3 && (starts || continues) => {
                self.input.advance(size);
                if let Some(data) = data {
                    self.message = Some(Box::new(Inflating {
                        inflater: Decompress::new(false),
                        data,
                        started: false,
                        piece: Vec::with_capacity(self.piece),
                        tail: 0,
                    }));
                }
                self.part = Part::Compressed {
                    left: len,
                    mask,
                    read: 0,
                    fin: h.is_final,
                };
            }
            _ => {
                self.output.extend_from_slice(&self.input.split_to(size));
                self.part = Part::Plain { left: len };
            }
        }
        true
    }

    /// Inflates the compressed frame being read, until a piece is full, the frame ends, or
    /// the input runs out; `false` when more input is needed.
    fn inflate(&mut self) -> bool {
        let (
            Part::Compressed {
                left,
                mask,
                read,
                fin,
            },
            Some(m),
        ) = (&mut self.part, self.message.as_mut())
        else {
            return false;
        };
        let mut frame = CompressedFrame {
            left,
            mask: *mask,
            read,
            fin: *fin,
        };
        match frame.inflate(m, &mut self.input, &mut self.output) {
            Inflated::NeedInput => return false,
            Inflated::Piece => {}
            Inflated::FrameEnd => self.part = Part::Header,
            Inflated::MessageEnd => {
                // client_no_context_takeover: nothing of the message is kept.
                self.message = None;
                self.part = Part::Header;
            }
            Inflated::Invalid => self.fail(),
        }
        true
    }

    /// Hands tungstenite an empty frame with RSV2 set, which it fails the connection on (close
    /// 1002), and stops reading: the compressed data could not be inflated.
    fn fail(&mut self) {
        let header = FrameHeader {
            is_final: true,
            rsv1: false,
            rsv2: true,
            rsv3: false,
            opcode: OpCode::Data(Data::Binary),
            mask: Some([0; 4]),
        };
        let mut head = Vec::with_capacity(6);
        // Writing into a Vec cannot fail.
        let _ = header.format(0, &mut head);
        self.output.extend_from_slice(&head);
        self.message = None;
        self.failed = true;
    }

    /// Everything from here on goes to tungstenite as it is.
    fn pass_rest(&mut self) {
        self.part = Part::Plain { left: u64::MAX };
    }
}

/// What one round of inflating did.
enum Inflated {
    NeedInput,
    /// A full piece went out as a plain frame; the frame goes on.
    Piece,
    FrameEnd,
    MessageEnd,
    /// The data does not inflate.
    Invalid,
}

/// The state of the compressed frame being read, borrowed from [`Part::Compressed`].
struct CompressedFrame<'a> {
    left: &'a mut u64,
    mask: [u8; 4],
    read: &'a mut u64,
    fin: bool,
}

impl CompressedFrame<'_> {
    fn inflate(
        &mut self,
        m: &mut Inflating,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> Inflated {
        loop {
            let room = m.piece.capacity() - m.piece.len();
            let (before_in, before_out) = (m.inflater.total_in(), m.inflater.total_out());
            let last = *self.left == 0 && self.fin;
            let result = if *self.left > 0 {
                if input.is_empty() {
                    return Inflated::NeedInput;
                }
                let mut buf = [0u8; 1024];
                let n = usize::try_from(*self.left)
                    .unwrap_or(usize::MAX)
                    .min(input.len())
                    .min(buf.len());
                let phase = (*self.read % 4) as usize;
                for (i, (b, masked)) in buf.iter_mut().zip(&input[..n]).enumerate() {
                    *b = masked ^ self.mask[(phase + i) % 4];
                }
                let r = m
                    .inflater
                    .decompress_vec(&buf[..n], &mut m.piece, FlushDecompress::None);
                let used = m.inflater.total_in() - before_in;
                input.advance(used as usize);
                *self.left -= used;
                *self.read += used;
                r
            } else if last {
                let r =
                    m.inflater
                        .decompress_vec(&TAIL[m.tail..], &mut m.piece, FlushDecompress::Sync);
                m.tail += (m.inflater.total_in() - before_in) as usize;
                r
            } else {
                // The end of a frame that is not the last: a (possibly empty) plain frame
                // tells tungstenite a fragmented message is under way.
                emit(output, m, false);
                return Inflated::FrameEnd;
            };
            let produced = (m.inflater.total_out() - before_out) as usize;
            let consumed = m.inflater.total_in() != before_in;
            match result {
                Err(_) => return Inflated::Invalid,
                // A full piece goes out; zlib keeps what it could not write yet.
                Ok(_) if produced == room => {
                    emit(output, m, false);
                    return Inflated::Piece;
                }
                // The tail is in and nothing more came out; or the sender ended the stream
                // with a final block, after which the tail means nothing.
                Ok(status) if last && (m.tail == TAIL.len() || status == Status::StreamEnd) => {
                    emit(output, m, true);
                    return Inflated::MessageEnd;
                }
                // No progress with room to write: data after the end of the stream.
                Ok(_) if !consumed && produced == 0 => return Inflated::Invalid,
                Ok(_) => {}
            }
        }
    }
}

/// Appends `m`'s inflated piece to `output` as one plain frame, masked with a zero key as a
/// client's frame must be.
fn emit(output: &mut BytesMut, m: &mut Inflating, fin: bool) {
    let header = FrameHeader {
        is_final: fin,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(if m.started { Data::Continue } else { m.data }),
        mask: Some([0; 4]),
    };
    m.started = true;
    let mut head = Vec::with_capacity(14);
    // Writing into a Vec cannot fail.
    let _ = header.format(m.piece.len() as u64, &mut head);
    output.extend_from_slice(&head);
    output.extend_from_slice(&m.piece);
    m.piece.clear();
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(r) = this.reader.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            if !r.output.is_empty() {
                let n = r.output.len().min(buf.remaining());
                buf.put_slice(&r.output.split_to(n));
                if r.output.is_empty() {
                    // An idle connection keeps no buffer.
                    r.output = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if r.failed {
                return Poll::Ready(Ok(()));
            }
            if r.step() {
                continue;
            }
            if r.input.is_empty() {
                // An idle connection keeps no buffer.
                r.input = BytesMut::new();
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if r.input.is_empty() {
                r.input = BytesMut::from(read.filled());
            } else {
                r.input.extend_from_slice(read.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::WebSocketStream;

    /// A client's frame, masked.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode: OpCode::from(opcode),
            mask: Some([1, 2, 3, 4]),
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    /// What a server reading `bytes` through [`Inflate`] gets, up to the first error.
    async fn read(bytes: Vec<u8>, max_message: usize) -> Vec<Result<Message, String>> {
        read_chopped(bytes, max_message, 1 << 16).await
    }

    /// [`read`] with the bytes arriving at most `chop` at a time.
    async fn read_chopped(
        bytes: Vec<u8>,
        max_message: usize,
        chop: usize,
    ) -> Vec<Result<Message, String>> {
        let (mut client, server) = tokio::io::duplex(chop);
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(64 << 10));
        let io = Inflate::new(server, true, 64 << 10);
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            // Held open until the server is done reading.
            std::future::pending::<()>().await;
        });
        let mut got = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), ws.next()).await
        {
            let end = m.is_err();
            got.push(m.map_err(|e| e.to_string()));
            if end {
                break;
            }
        }
        got
    }

    fn packed(text: &[u8]) -> Bytes {
        deflate(&mut compressor(6, 15), text).unwrap()
    }

    #[tokio::test]
    async fn compressed_messages_are_inflated_in_pieces_between_plain_frames() {
        // 100 KB: several pieces, in two frames with a ping between.
        let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        let p = packed(&big);
        let (one, two) = p.split_at(p.len() / 2);
        let mut bytes = frame(false, true, 2, one);
        bytes.extend(frame(true, false, 9, b"ping"));
        bytes.extend(frame(true, false, 0, two));
        bytes.extend(frame(true, false, 1, b"plain"));
        bytes.extend(frame(true, true, 1, &packed(b"")));
        bytes.extend(frame(true, true, 1, &packed(b"small")));
        // Whole, and in reads of 7 bytes: headers and masks split anywhere.
        for chop in [1 << 16, 7] {
            let got = read_chopped(bytes.clone(), 1 << 20, chop).await;
            let got: Vec<Message> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                got,
                [
                    Message::Ping(Bytes::from_static(b"ping")),
                    Message::Binary(big.clone().into()),
                    Message::text("plain"),
                    Message::text(""),
                    Message::text("small"),
                ]
            );
        }
    }

    #[tokio::test]
    async fn the_decompressed_size_is_limited() {
        let bytes = frame(true, true, 2, &packed(&vec![0; 1 << 20]));
        let got = read(bytes, 64 << 10).await;
        assert!(
            matches!(got.as_slice(), [Err(e)] if e.contains("Message too long")),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn misplaced_rsv1_is_left_to_tungstenite() {
        // RSV1 on a continuation of a compressed message.
        let p = packed(b"hello hello hello");
        let mut bytes = frame(false, true, 1, &p[..3]);
        bytes.extend(frame(true, true, 0, &p[3..]));
        let got = read(bytes, 1 << 20).await;
        assert!(
            matches!(got.as_slice(), [Err(e)] if e.contains("Reserved bits")),
            "{got:?}"
        );
    }

    #[test]
    fn an_8_bit_window_is_served_by_zlibs_9_bit_one() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=8"),
        );
        let (agreed, answer) = negotiate(&headers, &Compression::context_takeover()).unwrap();
        assert_eq!(agreed.window_bits, 9);
        assert!(answer
            .to_str()
            .unwrap()
            .ends_with("server_max_window_bits=8"));
        // tests/python/ws_deflate.py inflates such a connection's events with an 8-bit window.
    }

    #[test]
    fn context_takeover_keeps_the_window() {
        let agreed = Agreed {
            context_takeover: true,
            window_bits: 15,
            shared: false,
            level: 6,
            min_size: 0,
        };
        let mut d = Deflater::new(agreed);
        let text = "the same sentence, again and again, and again";
        let mut inflater = Decompress::new(false);
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let Message::Frame(f) = d.outgoing(Message::text(text)) else {
                panic!()
            };
            assert!(f.header().rsv1);
            sizes.push(f.payload().len());
            let mut input = f.payload().to_vec();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(1024);
            inflater
                .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, text.as_bytes());
        }
        assert!(sizes[1] < sizes[0] / 2, "{sizes:?}");
        // Control frames and small messages go as they are.
        assert_eq!(
            d.outgoing(Message::Ping(Bytes::new())),
            Message::Ping(Bytes::new())
        );
    }
}
