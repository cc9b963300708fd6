//! An SSE reader for tests: opens `GET /sse...` and reads the event stream block by block,
//! parsed as the WHATWG spec says, while keeping the raw text for substring checks.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

/// How long a read waits for data unless the caller says otherwise.
pub const WAIT: Duration = Duration::from_secs(15);

/// One block of an event stream (an empty line ends it): fields with one leading space
/// stripped, `data` lines joined with `\n`, comment lines (`: ping`) kept.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Block {
    /// `id:`
    pub id: Option<String>,
    /// `event:`
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: Option<String>,
    /// `retry:`
    pub retry: Option<u64>,
    /// Comment lines, without the leading `:` and space.
    pub comments: Vec<String>,
}

impl Block {
    /// `data` parsed as JSON.
    pub fn data_json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.as_deref().expect("a block without data"))
            .expect("data is not JSON")
    }

    /// Whether this block is only comments (a heartbeat).
    pub fn is_comment(&self) -> bool {
        self.id.is_none() && self.event.is_none() && self.data.is_none() && self.retry.is_none()
    }
}

/// The reading side of one SSE response.
#[derive(Debug)]
pub struct SseStream {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The HTTP version of the response.
    pub version: Version,
    /// Everything received so far, as text (lossy UTF-8).
    pub seen: String,
    body: Incoming,
    buf: Vec<u8>,
    block: Block,
}

impl SseStream {
    /// `GET url` with extra headers over a fresh HTTP/1.1 connection (never pooled, so
    /// dropping the stream closes the connection), whatever the status.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> SseStream {
        let uri: http::Uri = url.parse().expect("a valid URL");
        let authority = uri.authority().expect("a URL with a host").to_string();
        let mut sender = crate::http::http1(&authority)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = Request::get(path).header("host", authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).expect("a valid request");
        let res = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .expect("no SSE answer in time")
            .expect("SSE request failed");
        SseStream::from_response(res)
    }

    /// Like [`SseStream::open`], and asserts a `200` event stream.
    pub async fn open_ok(url: &str, headers: &[(&str, &str)]) -> SseStream {
        let s = SseStream::open(url, headers).await;
        assert_eq!(s.status, StatusCode::OK, "{url}");
        let ctype = s.headers.get("content-type").map(|v| v.to_str().unwrap());
        assert!(
            ctype.is_some_and(|c| c.starts_with("text/event-stream")),
            "{url}: content-type {ctype:?}"
        );
        s
    }

    /// Reads the stream of a response obtained some other way (HTTP/2, TLS).
    pub fn from_response(res: http::Response<Incoming>) -> SseStream {
        let (parts, body) = res.into_parts();
        SseStream {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            seen: String::new(),
            body,
            buf: Vec::new(),
            block: Block::default(),
        }
    }

    /// Reads one more frame of the body into the buffers: `Some(false)` when the body ended
    /// (or failed: a cut connection ends the stream for the reader too), `None` at `deadline`.
    async fn read_frame(&mut self, deadline: tokio::time::Instant) -> Option<bool> {
        match tokio::time::timeout_at(deadline, self.body.frame())
            .await
            .ok()?
        {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.seen.push_str(&String::from_utf8_lossy(data));
                    self.buf.extend_from_slice(data);
                }
                Some(true)
            }
            None | Some(Err(_)) => Some(false),
        }
    }

    /// [`SseStream::read_frame`] that panics at `deadline`.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        self.read_frame(deadline)
            .await
            .expect("no data from the SSE stream in time")
    }

    /// The next complete block, comments included, or `None` when the stream ends.
    pub async fn block(&mut self) -> Option<Block> {
        self.block_within(WAIT).await
    }

    /// [`SseStream::block`], waiting at most `within` (then panics).
    pub async fn block_within(&mut self, within: Duration) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some((line, used)) = split_line(&self.buf) {
                let line = String::from_utf8(line.to_vec()).expect("SSE lines are UTF-8");
                self.buf.drain(..used);
                if line.is_empty() {
                    return Some(std::mem::take(&mut self.block));
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                    None => (line.clone(), String::new()),
                };
                let b = &mut self.block;
                match field.as_str() {
                    "" => b.comments.push(value),
                    "id" => b.id = Some(value),
                    "event" => b.event = Some(value),
                    "retry" => b.retry = Some(value.parse().expect("retry is a number")),
                    "data" => {
                        b.data = Some(match b.data.take() {
                            None => value,
                            Some(d) => format!("{d}\n{value}"),
                        })
                    }
                    other => panic!("unknown field {other:?} in {line:?}"),
                }
            }
            if !self.fill(deadline).await {
                return None;
            }
        }
    }

    /// The next block that carries data (skips heartbeats); panics if the stream ends.
    pub async fn event(&mut self) -> Block {
        self.event_within(WAIT).await
    }

    /// [`SseStream::event`], waiting at most `within` for each block.
    pub async fn event_within(&mut self, within: Duration) -> Block {
        loop {
            let b = self
                .block_within(within)
                .await
                .expect("the SSE stream ended");
            if b.data.is_some() {
                return b;
            }
        }
    }

    /// The next published event: skips heartbeats and rt's control events (`rt.*`).
    pub async fn published_within(&mut self, within: Duration) -> Block {
        loop {
            let b = self.event_within(within).await;
            if !b.event.as_deref().is_some_and(|e| e.starts_with("rt.")) {
                return b;
            }
        }
    }

    /// Reads until `needle` has been seen in the raw text (true) or the stream ends (false).
    pub async fn until(&mut self, needle: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.seen.contains(needle) {
                return true;
            }
            if !self.fill(deadline).await {
                return false;
            }
        }
    }

    /// Reads to the end of the body; true if it ended within `within`.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.read_frame(deadline).await {
                None => return false,
                Some(false) => return true,
                Some(true) => {}
            }
        }
    }
}

/// Splits off one line (ended by `\r\n`, `\r` or `\n`): the line and how many bytes it used.
fn split_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let i = buf.iter().position(|b| *b == b'\n' || *b == b'\r')?;
    if buf[i] == b'\r' {
        match buf.get(i + 1) {
            None => return None, // maybe the start of \r\n
            Some(b'\n') => return Some((&buf[..i], i + 2)),
            _ => {}
        }
    }
    Some((&buf[..i], i + 1))
}
