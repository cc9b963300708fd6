//! The lean HTTP/1.1 path: long-lived event streams served on the connection itself.
//!
//! hyper keeps a read buffer (its `max_buf_size`, at least 8 KiB) and an 8 KiB write buffer
//! for as long as an HTTP/1.1 connection lives, also while a response streams and nothing
//! moves: an idle SSE subscriber cost about 25 KB, nearly all of it these two buffers, and
//! hyper has no setting that releases them while a response streams. [`LeanHttp1`] reads a
//! connection's request heads itself while they are ones its `pick` chooses (an SSE `GET`),
//! answers them, and writes the response body as HTTP/1.1 chunks straight to the connection,
//! with no buffer kept between writes. At the first request it does not choose, or cannot
//! judge (HTTP/1.0, a request body, an upgrade, `Expect`, the HTTP/2 preface, a malformed or
//! oversized head), it hands the connection to hyper with the bytes read so far, and hyper
//! serves the rest of it as usual: its answers to bad heads (`400`, `431`) included.

use std::future::Future;
use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, request, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::Body;

/// Most headers in a request head the lean path reads; a head with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// Serves the event-stream requests of HTTP/1.1 connections without hyper's buffers: it reads
/// request heads itself while `pick` chooses them and writes their bodies as chunks straight to
/// the connection, and hands the connection (with the bytes read so far) to hyper at the first
/// request it does not choose or cannot judge.
///
/// ```no_run
/// use std::time::Duration;
/// use rt_http::LeanHttp1;
///
/// # async fn accept(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let (tcp, _) = listener.accept().await?;
/// let lean = LeanHttp1::new(16 * 1024, Duration::from_secs(10));
/// let pick = |head: &http::request::Parts| head.uri.path() == "/events";
/// // An SSE endpoint's `handle` in a real server (rt_sse::Sse::handle).
/// let answer = |_req: http::Request<()>| async {
///     rt_http::json(http::StatusCode::OK, &serde_json::json!({"hello": "world"}))
/// };
/// if let Some(rest) = lean.serve(tcp, pick, answer).await {
///     // serve `hyper_util::rt::TokioIo::new(rest)` with hyper as usual
/// #   drop(rest);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LeanHttp1 {
    max_head: usize,
    head_timeout: Duration,
}

/// What reading a request head found.
enum Head {
    /// A complete head the lean path can judge, and its length in bytes.
    Lean(Box<request::Parts>, usize),
    /// Something for hyper.
    Hyper,
    /// Not yet known: more bytes needed.
    Partial,
}

/// What the connection does after a request head was looked for.
enum Next {
    Serve(Box<request::Parts>, usize),
    Hyper,
    Close,
}

impl LeanHttp1 {
    /// The lean path for heads of at most `max_head` bytes that arrive within `head_timeout`
    /// (also how long an idle connection waits for its next request): the same limits as
    /// the hyper server it stands in front of.
    pub fn new(max_head: usize, head_timeout: Duration) -> Self {
        LeanHttp1 {
            max_head,
            head_timeout,
        }
    }

    /// Serves the requests of `io` that `pick` chooses, for as long as they come first, with
    /// `answer`. Returns the connection, with what was already read of its next request, for
    /// hyper to serve at the first request that is not chosen; `None` once the connection is
    /// over (closed by the client, idle past the timeout, or a write failed).
    ///
    /// Only bodiless HTTP/1.1 `GET` requests reach `pick`. A streamed answer (no exact
    /// length) goes out with `transfer-encoding: chunked`, one chunk per body frame, each
    /// flushed; it ends when the body does, or at once when the client closes.
    pub async fn serve<I, P, A, F>(&self, mut io: I, pick: P, answer: A) -> Option<Rewind<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
        P: Fn(&request::Parts) -> bool,
        A: Fn(Request<()>) -> F,
        F: Future<Output = Response<Body>>,
    {
        // Bytes read and not yet consumed: the head being read, then pipelined requests.
        let mut read = Vec::new();
        loop {
            let (parts, len) = match self.next_head(&mut io, &mut read).await {
                Next::Serve(parts, len) if pick(&parts) => (parts, len),
                Next::Serve(..) | Next::Hyper => return Some(Rewind::new(io, read)),
                Next::Close => return None,
            };
            read.drain(..len);
            if read.is_empty() {
                // An idle stream keeps no buffer.
                read = Vec::new();
            }
            let close = wants_close(&parts.headers);
            // Boxed: the answer's state lives only until the response head, and inline it
            // would size the future of every stream for its whole life.
            let res = Box::pin(answer(Request::from_parts(*parts, ()))).await;
            let (parts, body) = res.into_parts();
            let (head, framing) = head(parts, body.size_hint().exact(), close);
            let sent = respond(&mut io, head, framing, body, &mut read, self.max_head).await;
            if sent.is_err() || close {
                let _ = io.shutdown().await;
                return None;
            }
        }
    }

    /// Reads until `read` holds a request head, or it is clear that hyper must have it.
    async fn next_head<I: AsyncRead + Unpin>(&self, io: &mut I, read: &mut Vec<u8>) -> Next {
        let deadline = tokio::time::Instant::now() + self.head_timeout;
        loop {
            if !read.is_empty() {
                match parse(read) {
                    Head::Lean(parts, len) => return Next::Serve(parts, len),
                    Head::Hyper => return Next::Hyper,
                    // Too large for the lean path: hyper answers it (431).
                    Head::Partial if read.len() >= self.max_head => return Next::Hyper,
                    Head::Partial => {}
                }
            }
            let room = self
                .max_head
                .saturating_sub(read.len())
                .min(read.len().max(1024));
            read.reserve(room);
            match tokio::time::timeout_at(deadline, io.read_buf(read)).await {
                Ok(Ok(n)) if n > 0 => {}
                // The client closed, or the connection failed.
                Ok(_) => return Next::Close,
                Err(_) => {
                    if !read.is_empty() {
                        metrics::counter!(crate::CUT_OFF, "reason" => "header_timeout")
                            .increment(1);
                    }
                    return Next::Close;
                }
            }
        }
    }
}

/// Parses the head at the start of `read`.
fn parse(read: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(read) {
        Ok(httparse::Status::Complete(len)) => len,
        // Known before the head is complete: not a GET, not HTTP/1.1.
        Ok(httparse::Status::Partial)
            if req.method.is_some_and(|m| m != "GET") || req.version.is_some_and(|v| v != 1) =>
        {
            return Head::Hyper
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Hyper,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Head::Hyper;
    }
    let Ok(request) = Request::get(req.path.unwrap_or("/")).body(()) else {
        return Head::Hyper;
    };
    let (mut parts, ()) = request.into_parts();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Hyper;
        };
        // A body, an upgrade or an expectation: hyper's to handle.
        let bodiless = match name {
            header::CONTENT_LENGTH => value == "0",
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => false,
            _ => true,
        };
        if !bodiless {
            return Head::Hyper;
        }
        parts.headers.append(name, value);
    }
    Head::Lean(Box::new(parts), len)
}

/// Whether the client asked for the connection to be closed after this answer.
fn wants_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// Writes a response: its `head`, then `body` as `framing` says. `Ok(true)` when the
/// connection can serve another request.
async fn respond<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    mut head: Vec<u8>,
    framing: Framing,
    mut body: Body,
    pending: &mut Vec<u8>,
    max_pending: usize,
) -> io::Result<()> {
    if framing == Framing::Length {
        // A whole answer (an error, a refusal) goes out in one write.
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame.map(http_body::Frame::into_data) {
                Ok(Ok(data)) => head.extend_from_slice(&data),
                Ok(Err(_trailers)) => {}
                Err(never) => match never {},
            }
        }
    }
    io.write_all(&head).await?;
    io.flush().await?;
    drop(head);
    if framing != Framing::Chunked {
        return Ok(());
    }
    let mut reading = true;
    loop {
        let step = std::future::poll_fn(|cx| -> Poll<io::Result<Option<Bytes>>> {
            if reading {
                reading = watch_input(io, cx, pending, max_pending)?;
            }
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Poll::Ready(Ok(Some(data))),
                        // Trailers and empty frames: nothing to send.
                        _ => continue,
                    },
                    Poll::Ready(Some(Err(never))) => match never {},
                    Poll::Ready(None) => return Poll::Ready(Ok(None)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await?;
        match step {
            Some(data) => write_chunk(io, data).await?,
            None => break,
        }
    }
    io.write_all(b"0\r\n\r\n").await?;
    io.flush().await?;
    // Dropped only now: an endpoint that tracks its stream's end (a graceful shutdown waits
    // for it) sees it end once its last bytes are out.
    drop(body);
    Ok(())
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`204`, `304`).
    None,
    /// `content-length`: the body is known whole.
    Length,
    /// `transfer-encoding: chunked`: a stream.
    Chunked,
}

/// The response head for `parts` (consumed here, so that a stream holds none of it) and how
/// the body follows it.
fn head(parts: http::response::Parts, exact: Option<u64>, close: bool) -> (Vec<u8>, Framing) {
    let mut head = Vec::with_capacity(256);
    let status = parts.status;
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(head, "HTTP/1.1 {} {reason}\r\n", status.as_str());
    let hop = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ];
    for (name, value) in parts.headers.iter().filter(|(n, _)| !hop.contains(n)) {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let _ = write!(head, "date: {date}\r\n");
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    let bodiless = status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let framing = match exact {
        _ if bodiless => Framing::None,
        Some(len) => {
            let _ = write!(head, "content-length: {len}\r\n");
            Framing::Length
        }
        None => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
    };
    head.extend_from_slice(b"\r\n");
    (head, framing)
}

/// Reads what the client sends while a stream is out: to see it close (which ends the stream
/// at once, dropping its subscription), and to keep its next, pipelined, requests. `Ok(false)`
/// once `max_pending` bytes are kept: reading stops until the stream ends. `Err` when the
/// client closed or the connection failed. Registers for the client's next bytes.
fn watch_input<I: AsyncRead + Unpin>(
    io: &mut I,
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
    max_pending: usize,
) -> io::Result<bool> {
    loop {
        // On the stack of this poll only: an idle stream keeps no read buffer.
        let mut scratch = [0u8; 512];
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            Poll::Ready(Ok(())) => {
                pending.extend_from_slice(buf.filled());
                if pending.len() >= max_pending {
                    return Ok(false);
                }
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(true),
        }
    }
}

/// Writes `data` as one chunk and flushes it.
async fn write_chunk<I: AsyncWrite + Unpin>(io: &mut I, data: Bytes) -> io::Result<()> {
    let mut size = [0u8; 18];
    let mut line = &mut size[..];
    let _ = write!(line, "{:x}\r\n", data.len());
    let len = 18 - line.len();
    let mut parts = [
        IoSlice::new(&size[..len]),
        IoSlice::new(&data),
        IoSlice::new(b"\r\n"),
    ];
    let mut rest = &mut parts[..];
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    io.flush().await
}

/// A connection handed on to hyper: the bytes already read from it come first.
#[derive(Debug)]
pub struct Rewind<I> {
    read: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    /// `io`, with `read` (already read from it) to be read first.
    pub(crate) fn new(io: I, read: Vec<u8>) -> Self {
        Rewind {
            read: Bytes::from(read),
            io,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            if !self.read.has_remaining() {
                // The buffer is freed as soon as hyper has it all.
                self.read = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connection served by the lean path, picking `/s`; its answer is `body()`.
    async fn served(
        body: impl Fn() -> Body + Send + Sync + 'static,
    ) -> (
        TcpStream,
        tokio::task::JoinHandle<Option<Rewind<TcpStream>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let lean = LeanHttp1::new(8192, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            let pick = |head: &request::Parts| head.uri.path() == "/s";
            lean.serve(server, pick, |_req| {
                let body = body();
                async move { Response::new(body) }
            })
            .await
        });
        (client, task)
    }

    async fn read_to_end(mut tcp: TcpStream) -> String {
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(all).unwrap()
    }

    #[tokio::test]
    async fn connection_close_ends_the_connection_after_the_answer() {
        let (mut client, task) = served(|| crate::full("hello")).await;
        client
            .write_all(b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let text = read_to_end(client).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("content-length: 5\r\n\r\nhello"), "{text}");
        assert!(task.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn what_it_does_not_pick_goes_on_with_every_byte_read() {
        for head in [
            &b"GET /s HTTP/1.0\r\n\r\n"[..],
            b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /s HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /s HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let (mut client, task) = served(|| crate::full("unused")).await;
            client.write_all(head).await.unwrap();
            let mut rest = task.await.unwrap().expect("handed on");
            let mut got = vec![0u8; head.len()];
            rest.read_exact(&mut got).await.unwrap();
            assert_eq!(got, head, "{}", String::from_utf8_lossy(head));
        }
    }

    /// A stream: one frame, then nothing until dropped, which it reports on `dropped`.
    struct Stream {
        sent: bool,
        dropped: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl http_body::Body for Stream {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.sent {
                return Poll::Pending;
            }
            self.sent = true;
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"first",
            )))))
        }
    }

    impl Drop for Stream {
        fn drop(&mut self) {
            if let Some(tx) = self.dropped.take() {
                let _ = tx.send(());
            }
        }
    }

    #[tokio::test]
    async fn a_stream_is_chunked_and_ends_when_the_client_closes() {
        let (tx, dropped) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let (mut client, task) = served(move || {
            let dropped = tx.lock().unwrap().take();
            Stream {
                sent: false,
                dropped,
            }
            .boxed_unsync()
        })
        .await;
        client
            .write_all(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"5\r\nfirst\r\n") {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        drop(client);
        let done = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(done.unwrap().unwrap().is_none());
        tokio::time::timeout(Duration::from_secs(1), dropped)
            .await
            .unwrap()
            .unwrap();
    }
}
