//! Connection-level limits: how many connections (in total and per client IP), how long a
//! client may take to start and to send its request headers, and how large those may be.
//! Limits on what flows inside a connection (channels, payloads, message rates) belong to
//! rt-core and the transports.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;

/// Counter of connections refused at accept time, by `reason` (`total`, `per_ip`) .
const REFUSED: &str = "rt_connections_refused_total";
/// Counter of connections closed because the client sent nothing in time.
const HANDSHAKE_TIMEOUTS: &str = "rt_handshake_timeouts_total";

/// Counter of connections cut off, by `reason`: by hyper for HTTP/1.1 request heads
/// (`header_timeout`, `header_too_large`), or because their writes stalled (`write_stall`,
/// counted by rt-http's stall guard).
use rt_http::CUT_OFF;

/// Connection limits.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most open connections in total; more are answered `503` and closed.
    #[arg(long, env = "RT_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Most open connections from one client IP address (0: no limit); more are answered `429`
    /// and closed. Off by default because behind a proxy every client has the proxy's address.
    #[arg(long, env = "RT_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// How long a new connection may stay silent before it is closed.
    #[arg(long, env = "RT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a client may take to send a request's headers (HTTP/1.1); also how long an idle
    /// keep-alive connection is kept. Cuts off slowloris clients.
    #[arg(long, env = "RT_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a publish body (`POST /api/publish`, `/poll/publish`) may take to arrive;
    /// slower is answered `408` and counted in rt_connections_cut_off_total{reason="body_timeout"}.
    #[arg(long, env = "RT_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger is answered `431`
    /// (HTTP/1.1) or refused (HTTP/2). At least 8192. It is also the read buffer each HTTP/1.1
    /// connection keeps while it streams: 8192 saves about 7.5 KB per SSE connection.
    #[arg(long, env = "RT_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most concurrent HTTP/2 streams (SSE streams, polls) on one connection.
    #[arg(long, env = "RT_H2_MAX_STREAMS", default_value_t = 256)]
    pub h2_max_streams: u32,

    /// How long a connection's writes may make no progress before it is closed (`0s`: never):
    /// a client that stopped reading, or vanished without closing (half-open), otherwise holds
    /// its SSE streams and their subscriptions for as long as TCP keeps the connection.
    #[arg(long, env = "RT_WRITE_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_stall_timeout: Duration,
}

impl LimitArgs {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let message = if self.max_header_bytes < 8192 {
            "--max-header-bytes must be at least 8192"
        } else if self.max_connections == 0 || self.h2_max_streams == 0 {
            "--max-connections and --h2-max-streams must be at least 1"
        } else if [
            self.handshake_timeout,
            self.header_read_timeout,
            self.body_read_timeout,
        ]
        .contains(&Duration::ZERO)
        {
            "--handshake-timeout, --header-read-timeout and --body-read-timeout must be more than 0s"
        } else {
            return Ok(());
        };
        Err(Error::Config(message.into()))
    }
}

/// Applies the protocol-level limits to the connection builder.
pub(crate) fn configure(builder: &mut auto::Builder<TokioExecutor>, args: &LimitArgs) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(args.header_read_timeout)
        .max_buf_size(args.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(args.h2_max_streams)
        .max_header_list_size(u32::try_from(args.max_header_bytes).unwrap_or(u32::MAX))
        // Dead peers of long-lived streams are found by pings, not left open forever.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total(usize),
    PerIp(usize),
}

/// Counts open connections and admits new ones within the limits.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
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
pub(crate) struct Permit {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Gate {
    pub(crate) fn new(args: &LimitArgs) -> Self {
        metrics::describe_counter!(REFUSED, "Connections refused at accept time, by reason");
        metrics::describe_counter!(
            CUT_OFF,
            "Connections cut off for slow or oversized HTTP/1.1 request heads or stalled writes, by reason"
        );
        metrics::describe_counter!(
            HANDSHAKE_TIMEOUTS,
            "Connections closed because the client sent nothing in time"
        );
        Gate {
            max_total: args.max_connections,
            max_per_ip: args.max_connections_per_ip,
            open: Arc::default(),
        }
    }

    /// A permit for a connection from `ip`, or why it is refused.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
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
pub(crate) fn count_cut_off(error: &(dyn std::error::Error + 'static)) {
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
pub(crate) async fn refuse(mut stream: TcpStream, refusal: Refusal) {
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
pub(crate) async fn first_byte(stream: &TcpStream, timeout: Duration) -> bool {
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
    use clap::Parser;

    fn args(extra: &[&str]) -> LimitArgs {
        let mut argv = vec!["rt-server"];
        argv.extend_from_slice(extra);
        crate::config::Config::try_parse_from(argv).unwrap().limits
    }

    #[test]
    fn gate_counts_per_ip_and_total() {
        let gate = Gate::new(&args(&[
            "--max-connections",
            "3",
            "--max-connections-per-ip",
            "2",
        ]));
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
