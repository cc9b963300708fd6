//! Subscribers: connecting them over each transport, and checking every delivery.
//!
//! Each subscriber keeps its own [`Tracker`]: the next sequence number it expects on its
//! channel and a latency histogram for the current phase. Counts go to shared atomics once
//! per read (so the orchestrator can see progress); histograms are merged once per phase.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{watch, Semaphore};

use crate::hist::Hist;
use crate::marker::{now_us, scan, Marker};
use crate::servers::Target;
use crate::wsclient::{tcp, Frame, WsConn};

/// Phases a run may have (phase 0 is the warm-up).
pub(crate) const MAX_PHASES: usize = 16;

/// Totals shared by every subscriber of one run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicUsize,
    pub(crate) ready: AtomicUsize,
    pub(crate) finished: AtomicUsize,
    pub(crate) errors: AtomicU64,
    /// Every marker received, warm-up included (progress while a backlog drains).
    pub(crate) seen: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    pub(crate) delivered: [AtomicU64; MAX_PHASES],
    pub(crate) last_recv_us: [AtomicU64; MAX_PHASES],
    hists: Mutex<Vec<Hist>>,
    pub(crate) missing: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    /// Final sequence number published on each channel (set before stopping).
    pub(crate) published: Vec<AtomicU64>,
    /// Subscribers that ended before the run did (e.g. closed by the server), with their
    /// channel and the next sequence number they expected: what was published after that is
    /// lost too, counted once the final numbers are known.
    ended_early: Mutex<Vec<(usize, u64)>>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn new(channels: usize, stop: watch::Receiver<bool>) -> Arc<Shared> {
        Arc::new(Shared {
            connected: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            first_errors: Mutex::new(vec![]),
            delivered: std::array::from_fn(|_| AtomicU64::new(0)),
            last_recv_us: std::array::from_fn(|_| AtomicU64::new(0)),
            hists: Mutex::new((0..MAX_PHASES).map(|_| Hist::new()).collect()),
            missing: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            published: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            ended_early: Mutex::new(vec![]),
            stop,
        })
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_errors.lock() {
            if first.len() < 10 {
                first.push(e.to_string());
            }
        }
    }

    pub(crate) fn first_errors(&self) -> Vec<String> {
        self.first_errors
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    pub(crate) fn hist(&self, phase: usize) -> Hist {
        self.hists
            .lock()
            .ok()
            .and_then(|h| h.get(phase).cloned())
            .unwrap_or_else(Hist::new)
    }

    /// Counts as lost what was published after the subscribers that ended early stopped
    /// receiving; returns how many ended early. Called once `published` holds the final
    /// numbers and the run is stopped.
    pub(crate) fn count_early_losses(&self) -> usize {
        let ended = self
            .ended_early
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        for &(channel, next) in &ended {
            self.add_losses_after(channel, next);
        }
        ended.len()
    }

    /// Counts the publishes of `channel` from sequence `next` on as lost.
    fn add_losses_after(&self, channel: usize, next: u64) {
        let published = self.published[channel].load(Ordering::Relaxed);
        if published >= next {
            self.missing
                .fetch_add(published + 1 - next, Ordering::Relaxed);
        }
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// One subscriber's view of its channel.
#[derive(Debug)]
pub(crate) struct Tracker {
    shared: Arc<Shared>,
    channel: usize,
    next: u64,
    phase: u32,
    hist: Hist,
    pending: u64,
    warm_pending: u64,
    last_us: u64,
    /// The receive time of what is being fed: read once per batch of frames that arrived
    /// together (until the next flush), not once per message, so the generator spends its
    /// share of the CPUs on reading, not on the clock.
    now_us: Option<u64>,
    ready: bool,
}

impl Tracker {
    pub(crate) fn new(shared: Arc<Shared>, channel: usize) -> Tracker {
        Tracker {
            shared,
            channel,
            next: 1,
            phase: 1,
            hist: Hist::new(),
            pending: 0,
            warm_pending: 0,
            last_us: 0,
            now_us: None,
            ready: false,
        }
    }

    fn on(&mut self, m: Marker) {
        if m.phase == 0 {
            self.warm_pending += 1;
            if !self.ready {
                self.ready = true;
                self.shared.ready.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let now = *self.now_us.get_or_insert_with(now_us);
        if m.seq < self.next {
            self.shared.out_of_order.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if m.seq > self.next {
            self.shared
                .missing
                .fetch_add(m.seq - self.next, Ordering::Relaxed);
        }
        self.next = m.seq + 1;
        if m.phase != self.phase {
            self.flush();
            self.merge_hist();
            self.phase = m.phase.min(MAX_PHASES as u32 - 1);
        }
        self.hist.record(now.saturating_sub(m.time_us));
        self.pending += 1;
        self.last_us = now;
    }

    /// Feeds a chunk of received bytes; returns where an incomplete marker starts.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> usize {
        scan(bytes, |m| self.on(m))
    }

    /// Publishes the counts gathered since the last flush.
    pub(crate) fn flush(&mut self) {
        self.now_us = None;
        if self.pending + self.warm_pending > 0 {
            self.shared
                .seen
                .fetch_add(self.pending + self.warm_pending, Ordering::Relaxed);
            self.warm_pending = 0;
        }
        if self.pending > 0 {
            let p = self.phase as usize;
            self.shared.delivered[p].fetch_add(self.pending, Ordering::Relaxed);
            self.shared.last_recv_us[p].fetch_max(self.last_us, Ordering::Relaxed);
            self.pending = 0;
        }
    }

    fn merge_hist(&mut self) {
        if !self.hist.is_empty() {
            if let Ok(mut hists) = self.shared.hists.lock() {
                hists[self.phase as usize].merge(&self.hist);
            }
            self.hist.clear();
        }
    }

    /// Final accounting: whatever was published after the last delivery seen is lost.
    pub(crate) fn finish(mut self) {
        self.flush();
        self.merge_hist();
        if *self.shared.stop.borrow() {
            self.shared.add_losses_after(self.channel, self.next);
        } else if let Ok(mut ended) = self.shared.ended_early.lock() {
            ended.push((self.channel, self.next));
        }
        self.shared.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// How subscribers connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// WebSocket (path and handshake per target).
    Ws,
    /// Server-Sent Events, one HTTP/1.1 connection per subscriber.
    SseH1,
    /// Server-Sent Events, `streams` HTTP/2 streams per connection.
    SseH2 { streams: usize },
    /// Long polling: a held `GET /poll` re-issued with the returned cursor.
    LongPoll,
}

/// Source address number `i`: connections are spread over 127.0.0.1-127.0.0.8 so that
/// tens of thousands of them never run out of ephemeral ports.
pub(crate) fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8))
}

/// Starts `n` subscribers of `target` over `transport`; subscriber `i` listens to channel
/// `i % channels` (named `c0`, `c1`...). Returns once every connection attempt has finished
/// (connected or failed); they then run until `stop`.
pub(crate) async fn spawn(
    target: Target,
    transport: Transport,
    addr: SocketAddr,
    n: usize,
    first: usize,
    channels: usize,
    shared: &Arc<Shared>,
) {
    // Bounded connection rate: a burst of thousands of SYNs overflows the listen backlog
    // and turns into 1 s retransmits that say nothing about the server.
    let gate = Arc::new(Semaphore::new(128));
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    match transport {
        Transport::SseH2 { streams } => {
            let streams = streams.max(1);
            let mut i = first;
            while i < first + n {
                let count = streams.min(first + n - i);
                tasks.push(tokio::spawn(sse_h2(
                    addr,
                    i,
                    count,
                    channels,
                    shared.clone(),
                    gate.clone(),
                    attempts.clone(),
                )));
                i += count;
            }
        }
        _ => {
            for i in first..first + n {
                let (shared, gate, attempts) = (shared.clone(), gate.clone(), attempts.clone());
                tasks.push(tokio::spawn(async move {
                    let tracker = Tracker::new(shared.clone(), i % channels);
                    let channel = format!("c{}", i % channels);
                    let attempt = Attempt {
                        addr,
                        i,
                        channel: &channel,
                        tracker,
                        gate,
                        attempts: &attempts,
                    };
                    let result = match transport {
                        Transport::Ws => ws(target, attempt).await,
                        Transport::SseH1 => sse_h1(target, attempt).await,
                        _ => poll(target, attempt).await,
                    };
                    if let Err(e) = result {
                        shared.error(format!("subscriber {i}: {e}"));
                    }
                }));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while attempts.load(Ordering::Relaxed) < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One subscriber's connection (WebSocket, SSE over HTTP/1.1 or long-polling): where it
/// connects from and to, and what it is counted in.
struct Attempt<'a> {
    addr: SocketAddr,
    /// The subscriber's number (it picks the source address).
    i: usize,
    channel: &'a str,
    tracker: Tracker,
    /// Bounds how many connections are being opened at once.
    gate: Arc<Semaphore>,
    /// Connection attempts done, connected or not.
    attempts: &'a AtomicUsize,
}

impl Attempt<'_> {
    /// Runs `open` (connecting, and whatever must succeed before events flow) under the gate,
    /// then counts the attempt: connected, or failed with its tracker closed.
    async fn open<T>(
        self,
        open: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<(T, Tracker), String> {
        let opened = async {
            let _permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            open.await
        }
        .await;
        match opened {
            Ok(conn) => {
                connected(&self.tracker.shared, self.attempts);
                Ok((conn, self.tracker))
            }
            Err(e) => {
                failed(self.tracker, self.attempts);
                Err(e)
            }
        }
    }
}

/// Marks one connection attempt done (and connected).
fn connected(shared: &Shared, attempts: &AtomicUsize) {
    shared.connected.fetch_add(1, Ordering::Relaxed);
    attempts.fetch_add(1, Ordering::Relaxed);
}

/// Marks one connection attempt done without a connection, and closes its subscriber's
/// tracker (what it should have received counts as lost).
fn failed(tracker: Tracker, attempts: &AtomicUsize) {
    attempts.fetch_add(1, Ordering::Relaxed);
    tracker.finish();
}

/// An HTTP/1.1 connection from subscriber `i`'s source address, driven on its own task.
async fn http1(
    addr: SocketAddr,
    i: usize,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let stream = tcp(addr, Some(source(i)))
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn ws(target: Target, attempt: Attempt<'_>) -> Result<(), String> {
    let (addr, i, channel) = (attempt.addr, attempt.i, attempt.channel);
    let (mut conn, mut tracker) = attempt
        .open(async {
            match WsConn::connect(addr, Some(source(i)), &target.ws_path(channel)).await {
                Ok(mut conn) => join(target, &mut conn, channel).await.map(|()| conn),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
    let mut stop = tracker.shared.stopped();
    let result = 'conn: loop {
        tokio::select! {
            frame = conn.next() => {
                // Every frame already read is handled before the next select: one poll of
                // the stop signal (a registration on a lock all subscribers share) per socket
                // read, not per frame.
                let mut frame = frame;
                loop {
                    match frame {
                        Ok(Some(Frame::Data(payload))) => {
                            if target == Target::Socketio && &payload[..] == b"2" {
                                if let Err(e) = conn.send_text(b"3").await {
                                    break 'conn Err(e.to_string());
                                }
                            } else {
                                tracker.feed(&payload);
                            }
                        }
                        Ok(Some(Frame::Close(code, reason))) => break 'conn Err(format!("closed by server: {code} {reason}")),
                        Ok(None) => break 'conn Err("connection reset by server".into()),
                        Err(e) => break 'conn Err(e.to_string()),
                    }
                    frame = match conn.try_next().await {
                        Ok(None) => break,
                        other => other,
                    };
                }
                tracker.flush();
            }
            _ = stop.changed() => break Ok(()),
        }
    };
    tracker.finish();
    result
}

/// What a target needs after the upgrade before events flow to a subscriber.
async fn join(target: Target, conn: &mut WsConn, channel: &str) -> Result<(), String> {
    match target {
        Target::Rt => {
            let subscribe = format!(r#"{{"type":"subscribe","channels":["{channel}"]}}"#);
            conn.send_text(subscribe.as_bytes())
                .await
                .map_err(|e| e.to_string())
        }
        Target::Socketio => socketio_join(conn).await,
        Target::Baseline | Target::Ws | Target::Nchan => Ok(()),
    }
}

/// Engine.IO v4 open (`0{...}`), then Socket.IO connect to the main namespace (`40`).
pub(crate) async fn socketio_join(conn: &mut WsConn) -> Result<(), String> {
    let timeout = Duration::from_secs(10);
    let open = tokio::time::timeout(timeout, conn.next()).await;
    match open {
        Ok(Ok(Some(Frame::Data(p)))) if p.starts_with(b"0") => {}
        other => return Err(format!("no Engine.IO open packet: {other:?}")),
    }
    conn.send_text(b"40").await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, conn.next()).await {
        Ok(Ok(Some(Frame::Data(p)))) if p.starts_with(b"40") => Ok(()),
        other => Err(format!("no Socket.IO connect ack: {other:?}")),
    }
}

async fn sse_h1(target: Target, attempt: Attempt<'_>) -> Result<(), String> {
    let (addr, i, channel) = (attempt.addr, attempt.i, attempt.channel);
    let opened = async {
        let mut sender = http1(addr, i).await?;
        let req = Request::get(target.sse_path(channel))
            .header(http::header::HOST, addr.to_string())
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if res.status() != http::StatusCode::OK {
            return Err(format!(
                "GET {} answered {}",
                target.sse_path(channel),
                res.status()
            ));
        }
        Ok::<_, String>(res.into_body())
    };
    let (body, mut tracker) = attempt.open(opened).await?;
    let result = read_stream(body, &mut tracker).await;
    tracker.finish();
    result
}

/// Reads an SSE body until stop, keeping a marker cut between two chunks.
async fn read_stream(mut body: hyper::body::Incoming, tracker: &mut Tracker) -> Result<(), String> {
    let mut stop = tracker.shared.stopped();
    let mut carry: Vec<u8> = vec![];
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if carry.is_empty() {
                        let keep = tracker.feed(&data);
                        carry.extend_from_slice(&data[keep..]);
                    } else {
                        carry.extend_from_slice(&data);
                        let keep = tracker.feed(&carry);
                        carry.drain(..keep);
                    }
                    tracker.flush();
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("stream ended by server".into()),
            },
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// One HTTP/2 connection carrying `count` SSE streams (subscribers `first..first+count`).
async fn sse_h2(
    addr: SocketAddr,
    first: usize,
    count: usize,
    channels: usize,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    attempts: Arc<AtomicUsize>,
) {
    let sender = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let stream = tcp(addr, Some(source(first)))
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        // The connection's own error names the cause (e.g. a GOAWAY) that its streams only
        // see as a reset; counted once for the connection, beside its streams' errors.
        let (shared, stop) = (shared.clone(), shared.stopped());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if !*stop.borrow() {
                    shared.error(format!(
                        "h2 connection of subscribers {first}..: {}",
                        causes(&e)
                    ));
                }
            }
        });
        Ok::<_, String>(sender)
    }
    .await;
    let sender = match sender {
        Ok(s) => s,
        Err(e) => {
            for i in first..first + count {
                failed(Tracker::new(shared.clone(), i % channels), &attempts);
                shared.error(format!("h2 connection for subscriber {i}: {e}"));
            }
            return;
        }
    };
    for i in first..first + count {
        let mut sender = sender.clone();
        let (shared, attempts) = (shared.clone(), attempts.clone());
        tokio::spawn(async move {
            let mut tracker = Tracker::new(shared.clone(), i % channels);
            let req = Request::get(format!("http://{addr}/sse?channel=c{}", i % channels))
                .header(http::header::ACCEPT, "text/event-stream")
                .body(Empty::<Bytes>::new());
            let res = match req {
                Ok(req) => sender.send_request(req).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let body = match res {
                Ok(res) if res.status() == http::StatusCode::OK => res.into_body(),
                Ok(res) => {
                    failed(tracker, &attempts);
                    return shared
                        .error(format!("h2 stream {i}: GET /sse answered {}", res.status()));
                }
                Err(e) => {
                    failed(tracker, &attempts);
                    return shared.error(format!("h2 stream {i}: {e}"));
                }
            };
            connected(&shared, &attempts);
            let result = read_stream(body, &mut tracker).await;
            tracker.finish();
            if let Err(e) = result {
                shared.error(format!("h2 stream {i}: {e}"));
            }
        });
    }
}

/// An error with its sources (hyper's own message alone says only "http2 error").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// A long-polling subscriber. rt: `GET /poll?channel=..&cursor=..`, the next cursor in the
/// JSON answer. nchan: `GET /sub?channel=..` with the previous answer's `Last-Modified` and
/// `Etag` as `If-Modified-Since` and `If-None-Match` (its long-polling protocol).
async fn poll(target: Target, attempt: Attempt<'_>) -> Result<(), String> {
    let (addr, i, channel) = (attempt.addr, attempt.i, attempt.channel);
    let (mut sender, mut tracker) = attempt.open(http1(addr, i)).await?;
    let mut stop = tracker.shared.stopped();
    let mut cursor = String::new();
    let (mut since, mut etag) = (None, None);
    let result = loop {
        let uri = match target {
            Target::Nchan => target.sse_path(channel),
            _ if cursor.is_empty() => format!("/poll?channel={channel}"),
            _ => format!("/poll?channel={channel}&cursor={cursor}"),
        };
        let mut req = Request::get(uri).header(http::header::HOST, addr.to_string());
        if let (Some(since), Some(etag)) = (&since, &etag) {
            req = req
                .header(http::header::IF_MODIFIED_SINCE, since)
                .header(http::header::IF_NONE_MATCH, etag);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let answer = async {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((parts, body.to_bytes()))
        };
        let (parts, body) = tokio::select! {
            r = answer => match r {
                Ok(r) => r,
                Err(e) => break Err(e),
            },
            _ = stop.changed() => break Ok(()),
        };
        if parts.status != http::StatusCode::OK {
            break Err(format!(
                "GET {} answered {}: {}",
                target.sse_path(channel),
                parts.status,
                String::from_utf8_lossy(&body)
            ));
        }
        tracker.feed(&body);
        tracker.flush();
        if target == Target::Nchan {
            since = parts.headers.get(http::header::LAST_MODIFIED).cloned();
            etag = parts.headers.get(http::header::ETAG).cloned();
            if since.is_none() || etag.is_none() {
                break Err("nchan poll answer without Last-Modified or Etag".into());
            }
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("cursor").and_then(|c| c.as_str()).map(str::to_owned))
        {
            Some(c) => cursor = c,
            None => break Err("poll answer without a cursor".into()),
        }
    };
    tracker.finish();
    result
}
