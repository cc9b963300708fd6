//! Long and short polling (docs/protocol.md, "Long and short polling"): each request
//! carries the cursor, so any server node can answer it.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use rt_core::{Channel, Cursor};
use serde::Deserialize;

use crate::driver::Conn;
use crate::error::Error;
use crate::event::{Incoming, Transport, WireEvent};
use crate::http::query_url;

/// The largest poll answer read: `--poll-batch` events of up to the largest payload.
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    events: Vec<WireEvent>,
    cursor: String,
    #[serde(default = "yes")]
    recovered: bool,
    #[serde(default)]
    resynced: Vec<String>,
    /// Channels the application took out (`POST /api/unsubscribe`).
    #[serde(default)]
    unsubscribed: Vec<String>,
    /// The application ended the connection (`POST /api/disconnect`).
    #[serde(default)]
    disconnect: Option<Disconnect>,
    /// The connect hook's data, in every answer.
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Disconnect {
    reconnect: bool,
    #[serde(default)]
    reason: String,
}

fn yes() -> bool {
    true
}

/// Polls until a poll fails; returns why. A long poll is held by the server until an event
/// exists; a short poll is answered at once and repeated every `poll_interval` while empty.
pub(crate) async fn run(conn: &mut Conn<'_>, long: bool) -> Error {
    match session(conn, long).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session(conn: &mut Conn<'_>, long: bool) -> Result<Infallible, Error> {
    loop {
        let config = conn.config();
        let http = config.http.clone();
        // The first poll answers at once: it proves the route works (a fallback must not wait
        // a whole hold time to learn that) and returns the live cursor to wait on.
        let (hold, limit, what) = if conn.is_open() && long {
            let hold = config.poll_timeout.as_secs();
            (hold, config.poll_timeout + config.heartbeat, "long poll")
        } else {
            (0, config.connect_timeout, "poll")
        };
        let resume = conn.resume();
        let hold = hold.to_string();
        let mut extra = vec![("timeout", hold.as_str())];
        if !resume.is_empty() {
            extra.push(("cursor", &resume));
        }
        let url = query_url(
            &config.endpoints.poll,
            conn.channels().iter().map(Channel::as_str),
            &extra,
        );
        let req = crate::http::request(http::Method::GET, &url, conn.token())
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Protocol(format!("cannot build the poll: {e}")))?;
        let answer = tokio::time::timeout(limit, async {
            let res = crate::http::send(&http, req, "poll", Some(Transport::Poll)).await?;
            crate::http::json::<Answer>(res, &url, ANSWER_LIMIT).await
        })
        .await
        .map_err(|_| Error::Timeout { what, after: limit })??;
        let cursor: Cursor = answer
            .cursor
            .parse()
            .map_err(|e| Error::Protocol(format!("the poll answered a bad cursor: {e}")))?;
        // Channels of the answer's cursor beyond the client's own: the connect hook joined
        // them.
        let named: Vec<String> = cursor.iter().map(|(c, _)| c.as_str().to_owned()).collect();
        conn.joined(&named);
        // Every answer carries the connect hook's data: news once per connection.
        if let Some(data) = answer.data.filter(|_| !conn.is_open()) {
            conn.connected(data).await?;
        }
        conn.open(answer.recovered).await?;
        if !answer.recovered {
            conn.resync(answer.resynced).await?;
        }
        let empty = answer.events.is_empty();
        for wire in answer.events {
            conn.deliver(Incoming::from_wire(wire, None)?).await?;
        }
        conn.position(&cursor, !answer.recovered).await?;
        if !answer.unsubscribed.is_empty() {
            conn.unsubscribed(answer.unsubscribed).await?;
        }
        if let Some(d) = answer.disconnect {
            return Err(Error::ServerDisconnect {
                transport: Transport::Poll,
                reconnect: d.reconnect,
                reason: d.reason,
            });
        }
        // A short poll that got events asks again at once: more may be waiting (batching).
        if !long && empty {
            tokio::time::sleep(conn.config().poll_interval).await;
        }
    }
}
