//! JSON bodies for the answers hyper writes by itself.
//!
//! When an HTTP/1.1 request head cannot be parsed, hyper answers before any service sees the
//! request: `400`, `414` or `431` with an empty body, then closes the connection. Every other
//! rt error carries the JSON error body (`{"error":{"code","message"}}`); [`JsonParseErrors`]
//! gives these answers one too, by recognising them on the connection's way out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The status lines hyper writes for a request head it could not parse, with the JSON error
/// each becomes.
const ANSWERS: [(&[u8], &str, &str); 3] = [
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "header_too_large",
        "the request head (request line and headers) is larger than this server accepts; send fewer or smaller headers (cookies, tokens)",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "uri_too_long",
        "the request URI is longer than this server accepts; send fewer or shorter query parameters",
    ),
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request",
        "the request head is not valid HTTP/1.1",
    ),
];

/// A connection on which hyper's own parse-error answers (`400`, `414`, `431` with an empty
/// body) go out with the JSON error body instead. Everything else passes through untouched.
///
/// ```no_run
/// use rt_http::{JsonParseErrors, StallGuard, DEFAULT_WRITE_STALL};
///
/// # async fn accept(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let (tcp, _) = listener.accept().await?;
/// let io = JsonParseErrors::new(StallGuard::new(tcp, DEFAULT_WRITE_STALL));
/// // serve `hyper_util::rt::TokioIo::new(io)` with hyper as usual
/// # drop(io); Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonParseErrors<T> {
    io: T,
    /// An answer being written in place of hyper's: its bytes, how many went out, and how
    /// many bytes of hyper's it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonParseErrors<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> Self {
        JsonParseErrors {
            io,
            replacing: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

/// The JSON answer to write instead of `head`, if `head` is a whole empty-bodied parse-error
/// answer of hyper's (rt's own errors always have a body).
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (status, code, message) = ANSWERS.iter().find(|(s, _, _)| head.starts_with(s))?;
    let lower = head.to_ascii_lowercase();
    let empty = lower
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w == b"\r\ncontent-length: 0\r\n");
    if !empty || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    crate::error::count_error(code);
    let mut out = status.to_vec();
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(out)
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Goes on writing the replacement; `Ready(n)` once all of it is out, `n` being the bytes
    /// of hyper's answer it stood for.
    fn poll_replacing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, stands_for)) = &mut self.replacing {
            if *written == bytes.len() {
                let n = *stands_for;
                self.replacing = None;
                return Poll::Ready(Ok(n));
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            // Only the first bytes are looked at: a status line is never a continuation.
            match replacement(buf) {
                Some(bytes) => this.replacing = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        this.poll_replacing(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper's parse-error answer is one head with no body: one slice.
        if let [head] = bufs {
            if this.replacing.is_some() || replacement(head).is_some() {
                return Pin::new(this).poll_write(cx, head);
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn hypers_empty_431_gets_the_json_body_and_the_rest_passes() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut io = JsonParseErrors::new(near);
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        io.write_all(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
        )
        .await
        .unwrap();
        drop(io);
        let mut out = String::new();
        far.read_to_string(&mut out).await.unwrap();
        let (ok, refused) = out.split_at("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".len());
        assert_eq!(ok, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(refused.starts_with("HTTP/1.1 431 "), "{refused}");
        let body = refused.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "header_too_large");
        assert!(refused.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn only_empty_bodied_answers_are_replaced() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").is_some());
    }
}
