//! A listener that serves an app with connection-level limits, for programs that run hyper
//! themselves (rt-server is one).
//!
//! A transport endpoint bounds what flows inside a connection; the connection itself needs
//! bounds too, or a few clients can exhaust the process: how many connections (in total and
//! per client IP), how long a client may stay silent or take to send its request head, how
//! large that head may be, how many HTTP/2 streams it may open, and how long its writes may
//! stall. [`Listener`] applies them all, answers hyper's own `400`/`431` with the JSON error
//! body, and hands the connections to a graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::{JsonParseErrors, StallGuard, CUT_OFF, DEFAULT_WRITE_STALL};

/// Counter of connections refused at accept time, by `reason` (`total`, `per_ip`).
pub const REFUSED: &str = "rt_connections_refused_total";
/// Counter of connections closed because the client sent nothing in time.
pub const HANDSHAKE_TIMEOUTS: &str = "rt_handshake_timeouts_total";

/// Connections the kernel may hold, handshake done, until the server accepts them
/// ([`bind`]). Linux caps it at `net.core.somaxconn` (4096 by default since 5.4).
///
/// Tokio's `TcpListener::bind` asks for 128, as the standard library does. When thousands of
/// clients connect at once (a node's clients coming back after it died), a queue of 128
/// overflows within a millisecond; the kernel then drops the connections it cannot queue, and
/// their clients only retry after the SYN retransmission timeout, one second and then more.
/// Measured with 3,000 connects at once on a debug rt-server on a busy 2-core machine: with 128
/// the slowest took 1.2 to 2.2 s to connect, and up to 12 s to get its WebSocket upgrade; with
/// 4096, 0.54 s and 2.2 s (see docs/scaling.md).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` for a [`Listener`], with `SO_REUSEADDR` (as tokio's own bind) and
/// a connection queue of [`LISTEN_BACKLOG`], so that a burst of connects is not dropped. Must
/// be called within a Tokio runtime, as `tokio::net::TcpListener::bind`.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use rt_http::{ConnectionLimits, Listener};
///
/// let tcp = rt_http::bind("127.0.0.1:8080".parse().unwrap())?;
/// let listener = Listener::new(tcp, ConnectionLimits::default());
/// # Ok(())
/// # }
/// ```
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Not on Windows, where it would let another process take over the port (as tokio does).
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The limits a [`Listener`] applies to each connection. The defaults are rt-server's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most open connections in total; more are answered `503` and closed. Default 16,384.
    pub max_connections: usize,
    /// Most open connections from one client IP (0: no limit); more are answered `429` and
    /// closed. Default 0: behind a proxy every client has the proxy's address.
    pub max_connections_per_ip: usize,
    /// How long a new connection may stay silent before it is closed. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a request head; also how long an idle
    /// keep-alive connection is kept. Default 10 s.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (`431` over HTTP/1.1, refused over HTTP/2); also the read
    /// buffer hyper keeps for each HTTP/1.1 connection it serves (not those on the lean path,
    /// [`Listener::lean`]). Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most concurrent streams on one HTTP/2 connection. Default 256.
    pub h2_max_streams: u32,
    /// How long a connection's writes may make no progress before it is cut
    /// ([`StallGuard`]; zero: never). Default [`DEFAULT_WRITE_STALL`].
    pub write_stall_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 16_384,
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            h2_max_streams: 256,
            write_stall_timeout: DEFAULT_WRITE_STALL,
        }
    }
}

crate::setters!(ConnectionLimits {
    max_connections: usize,
    max_connections_per_ip: usize,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    h2_max_streams: u32,
    write_stall_timeout: Duration,
});

/// A bound TCP listener that serves HTTP/1.1 (with upgrades) and HTTP/2 (prior knowledge, or
/// ALPN through a TLS handshake) within [`ConnectionLimits`].
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    limits: ConnectionLimits,
    lean: Option<Lean>,
    #[cfg(feature = "tls")]
    tls: Option<crate::Tls>,
}

/// The requests served on the lean HTTP/1.1 path ([`Listener::lean`]), and how.
#[derive(Clone)]
struct Lean {
    pick: Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>,
    answer: Arc<dyn Fn(Request<()>) -> BoxedAnswer + Send + Sync>,
}

type BoxedAnswer = std::pin::Pin<Box<dyn Future<Output = Response<crate::Body>> + Send>>;

impl std::fmt::Debug for Lean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lean")
    }
}

impl Listener {
    /// Serves connections accepted from `tcp` within `limits`.
    pub fn new(tcp: TcpListener, limits: ConnectionLimits) -> Self {
        metrics::describe_counter!(REFUSED, "Connections refused at accept time, by reason");
        metrics::describe_counter!(
            CUT_OFF,
            "Connections cut off for slow or oversized HTTP/1.1 request heads, slow bodies or stalled writes, by reason"
        );
        metrics::describe_counter!(
            HANDSHAKE_TIMEOUTS,
            "Connections closed because the client sent nothing in time"
        );
        Listener {
            tcp,
            limits,
            lean: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Serves HTTPS (feature `tls`): [`serve`](Self::serve) runs the TLS handshake on each
    /// admitted connection, and HTTP/2 is chosen through ALPN.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves the bodiless HTTP/1.1 `GET` requests that `pick` chooses (SSE streams) with
    /// `answer` on the lean path ([`LeanHttp1`](crate::LeanHttp1)): no hyper buffers while
    /// they stream. A connection goes on with hyper at its first request `pick` does not
    /// choose.
    pub fn lean<P, A, F>(mut self, pick: P, answer: A) -> Self
    where
        P: Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
        A: Fn(Request<()>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<crate::Body>> + Send + 'static,
    {
        self.lean = Some(Lean {
            pick: Arc::new(pick),
            answer: Arc::new(move |req| Box::pin(answer(req)) as BoxedAnswer),
        });
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves every connection with `service` (over TLS when [`tls`](Self::tls) was called)
    /// until `shutdown` resolves. Returns the connections still open: `shutdown()` on it tells
    /// them to finish and waits for them.
    pub async fn serve<S, B>(
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))] mut self,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> GracefulShutdown
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.take() {
            let handshake = move |stream| {
                let tls = tls.clone();
                async move { tls.accept(stream).await }
            };
            return self.serve_with(service, handshake, shutdown).await;
        }
        self.serve_with(service, |stream| async { Ok(stream) }, shutdown)
            .await
    }

    /// [`serve`](Self::serve), with `handshake` run on each admitted connection before HTTP
    /// (instead of the TLS handshake of [`tls`](Self::tls)). Its failures end that connection
    /// only.
    pub async fn serve_with<S, B, H, F, Io>(
        self,
        service: S,
        handshake: H,
        shutdown: impl Future<Output = ()>,
    ) -> GracefulShutdown
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        H: Fn(StallGuard<TcpStream>) -> F + Clone + Send + 'static,
        F: Future<Output = io::Result<Io>> + Send,
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Listener {
            tcp, limits, lean, ..
        } = self;
        // Shared: each connection's task holds it, a copy would be 240 bytes per connection.
        let builder = Arc::new(builder(&limits));
        let lean_http1 = crate::LeanHttp1::new(limits.max_header_bytes, limits.header_read_timeout);
        let gate = Gate::new(&limits);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return graceful,
            };
            let _ = stream.set_nodelay(true);
            let permit = match gate.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    tokio::spawn(refuse(stream, refusal));
                    continue;
                }
            };
            let (builder, service, handshake, lean) = (
                builder.clone(),
                service.clone(),
                handshake.clone(),
                lean.clone(),
            );
            let (watcher, silence) = (graceful.watcher(), limits.handshake_timeout);
            let stream = StallGuard::new(stream, limits.write_stall_timeout);
            tokio::spawn(async move {
                let _permit = permit;
                if !first_byte(stream.get_ref(), silence).await {
                    return;
                }
                let stream = match handshake(stream).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection handshake failed");
                        return;
                    }
                };
                // The lean path's streams hold no hyper buffers; hyper gets the connection at
                // its first other request.
                let stream = match lean {
                    Some(Lean { pick, answer }) => {
                        let served = lean_http1.serve(stream, |h| pick(h), |r| answer(r));
                        let Some(stream) = served.await else { return };
                        stream
                    }
                    None => crate::Rewind::new(stream, Vec::new()),
                };
                // Boxed: inline, hyper's connection state would size the task of every lean
                // connection too.
                let served = Box::pin(async move {
                    // Above TLS: it reads hyper's own answers in the clear.
                    let stream = TokioIo::new(JsonParseErrors::new(stream));
                    let conn = builder.serve_connection_with_upgrades(stream, service);
                    watcher.watch(conn.into_owned()).await
                });
                if let Err(e) = served.await {
                    count_cut_off(&*e);
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}

/// HTTP/1.1 and HTTP/2 (auto-detected on one port) with the protocol-level limits, and
/// WebSockets over either (HTTP/1.1 upgrades, HTTP/2 extended CONNECT).
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Dead peers of long-lived streams are found by pings, not left open forever.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        // RFC 8441: WebSockets as extended CONNECT streams of an h2 connection.
        .enable_connect_protocol();
    builder
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total(usize),
    PerIp(usize),
}

/// Counts open connections and admits new ones within the limits.
#[derive(Debug, Clone)]
struct Gate {
    max_total: usize,
    max_per_ip: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
struct Permit {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Gate {
    fn new(limits: &ConnectionLimits) -> Self {
        Gate {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Arc::default(),
        }
    }

    /// A permit for a connection from `ip`, or why it is refused.
    fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            metrics::counter!(REFUSED, "reason" => "total").increment(1);
            return Err(Refusal::Total(self.max_total));
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if self.max_per_ip > 0 && *from_ip >= self.max_per_ip {
            metrics::counter!(REFUSED, "reason" => "per_ip").increment(1);
            return Err(Refusal::PerIp(self.max_per_ip));
        }
        *from_ip += 1;
        open.total += 1;
        let open = self.open.clone();
        Ok(Permit { open, ip })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts a connection that hyper ended because of a limit (its error says which).
fn count_cut_off(error: &(dyn std::error::Error + 'static)) {
    let Some(e) = error.downcast_ref::<hyper::Error>() else {
        return;
    };
    let reason = if e.is_timeout() {
        "header_timeout"
    } else if e.is_parse_too_large() {
        "header_too_large"
    } else {
        return;
    };
    metrics::counter!(CUT_OFF, "reason" => reason).increment(1);
}

/// Answers a refused connection with a JSON error (readable by HTTP/1.1 clients) and closes
/// it. Bounded in time so that refusing never ties the server up.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (status, code, message) = match refusal {
        Refusal::Total(max) => (
            "503 Service Unavailable",
            "too_many_connections",
            format!("the server holds its maximum of {max} connections; retry later"),
        ),
        Refusal::PerIp(max) => (
            "429 Too Many Requests",
            "too_many_connections_from_ip",
            format!("your address holds its maximum of {max} connections; close some first"),
        ),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        // Read what the client already sent, so that closing does not reset the connection
        // before it reads the answer.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut sink)).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Waits until the client sends its first byte; `false` (the connection should be dropped)
/// when it stays silent past `timeout` or closes.
async fn first_byte(stream: &TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        Err(_) => {
            metrics::counter!(HANDSHAKE_TIMEOUTS).increment(1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_counts_per_ip_and_total() {
        let limits = ConnectionLimits::default()
            .max_connections(3)
            .max_connections_per_ip(2);
        let gate = Gate::new(&limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refusal::PerIp(2));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::Total(3));
        drop(a1);
        let _a3 = gate.admit(a).unwrap();
    }
}
