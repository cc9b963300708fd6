//! The write-stall guard: a connection whose writes make no progress for a while is cut.
//!
//! A stream whose client stopped reading (or vanished without FIN or RST: a half-open
//! connection) fills the socket buffers, and then the HTTP server stops polling the response
//! body: an SSE stream cannot notice anything itself. The connection's writes can. Wrap each
//! accepted connection in a [`StallGuard`] (plain hyper), or the listener in a
//! [`StallListener`] (`axum::serve`, feature `axum`): a write that stays pending for the
//! timeout fails with `TimedOut`, which ends the connection and with it its streams and
//! subscriptions, over HTTP/1.1, HTTP/2 or an upgraded WebSocket alike.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The counter of connections cut off, labelled `reason` (`write_stall` here).
pub const CUT_OFF: &str = "rt_connections_cut_off_total";

/// How long a connection's writes may make no progress before it is cut: 30 s, rt-server's
/// `--write-stall-timeout` default.
pub const DEFAULT_WRITE_STALL: Duration = Duration::from_secs(30);

/// Fails writes once they have been pending for the timeout. See the [module](self) docs.
#[derive(Debug)]
struct WriteStall {
    timeout: Duration,
    /// Armed at the first pending write after progress; reused between stalls.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    tripped: bool,
}

impl WriteStall {
    fn new(timeout: Duration) -> Self {
        WriteStall {
            timeout,
            deadline: None,
            armed: false,
            tripped: false,
        }
    }

    /// Passes the outcome of a write (or flush, or shutdown) through, unless writes have been
    /// pending for the timeout: then the write fails, once counted.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.tripped {
            return Poll::Ready(Err(stalled()));
        }
        if outcome.is_ready() || self.timeout.is_zero() {
            self.armed = false;
            return outcome;
        }
        let at = tokio::time::Instant::now() + self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.armed {
            deadline.as_mut().reset(at);
            self.armed = true;
        }
        // Polling the timer registers the waker, so the connection is woken to fail.
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.tripped = true;
        metrics::counter!(CUT_OFF, "reason" => "write_stall").increment(1);
        tracing::debug!(timeout = ?self.timeout, "closing a connection whose writes stalled");
        Poll::Ready(Err(stalled()))
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no write progress within the write-stall timeout",
    )
}

/// A connection whose writes fail once they make no progress for the timeout (zero: never).
///
/// ```no_run
/// use std::time::Duration;
/// use rt_http::StallGuard;
///
/// # async fn accept(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let (tcp, _) = listener.accept().await?;
/// let io = hyper_util::rt::TokioIo::new(StallGuard::new(tcp, Duration::from_secs(30)));
/// // serve `io` with hyper as usual
/// # drop(io); Ok(()) }
/// ```
#[derive(Debug)]
pub struct StallGuard<T> {
    io: T,
    stall: WriteStall,
}

impl<T> StallGuard<T> {
    /// Guards `io` with `timeout`.
    pub fn new(io: T, timeout: Duration) -> Self {
        StallGuard {
            io,
            stall: WriteStall::new(timeout),
        }
    }

    /// The guarded connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall.check(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall.check(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_flush(cx);
        this.stall.check(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_shutdown(cx);
        this.stall.check(cx, outcome)
    }
}

/// A listener whose connections are [`StallGuard`]ed, for `axum::serve` (feature `axum`).
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let listener = rt_http::StallListener::new(tcp, rt_http::DEFAULT_WRITE_STALL);
/// axum::serve(listener, app).await
/// # }
/// ```
#[cfg(feature = "axum")]
#[derive(Debug)]
pub struct StallListener<L> {
    inner: L,
    timeout: Duration,
}

#[cfg(feature = "axum")]
impl<L> StallListener<L> {
    /// Guards every connection `inner` accepts with `timeout`.
    pub fn new(inner: L, timeout: Duration) -> Self {
        StallListener { inner, timeout }
    }
}

#[cfg(feature = "axum")]
impl<L: axum::serve::Listener> axum::serve::Listener for StallListener<L> {
    type Io = StallGuard<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (StallGuard::new(io, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writes_pending_past_the_timeout_fail() {
        let timeout = Duration::from_millis(100);
        // A pipe nobody reads: the first write fills it, then writes stay pending.
        let (pipe, _unread) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(pipe, timeout);
        let started = tokio::time::Instant::now();
        let failed = async {
            loop {
                guarded.write_all(&[0; 64]).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        }
        .await;
        assert_eq!(failed.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout);
        // Once tripped, every later write fails at once.
        assert!(guarded.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn zero_never_trips() {
        let (pipe, _unread) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(pipe, Duration::ZERO);
        let write = tokio::time::timeout(Duration::from_millis(200), guarded.write_all(&[0; 64]));
        assert!(write.await.is_err(), "still pending, not failed");
    }
}
