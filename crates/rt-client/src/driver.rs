//! The connection task of a subscription: picks a transport, falls back, reconnects with
//! backoff, refreshes tokens, and feeds every transport's events through one cursor and one
//! exactly-once filter (the JavaScript client's `client.js`, as one tokio task).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rt_core::{Channel, Cursor, Start};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Attempts;
use crate::client::{Config, TokenRequest};
use crate::cursor::Tracker;
use crate::error::Error;
use crate::event::{Incoming, Transport, Update};
use crate::publish::Link;
use crate::subscription::Item;
use crate::{poll, sse, ws};

pub(crate) struct Driver {
    config: Config,
    link: Arc<Link>,
    channels: Vec<Channel>,
    /// Channels the server's connect hook joined the subscription to, beyond its own: their
    /// events are handed out and their positions kept, so reconnects resume them exactly.
    /// Shared with the [`Subscription`](crate::Subscription), which tells them and keeps
    /// them in its cursor.
    joined: Arc<Mutex<Vec<Channel>>>,
    start: Start,
    tracker: Tracker,
    updates: mpsc::Sender<Item>,
    /// Until the first connection opens: who waits in `Client::subscribe`, and the attempts
    /// that failed meanwhile (reported as [`Update::Retrying`] once open, or as
    /// [`Error::Unreachable`]).
    ready: Option<oneshot::Sender<Result<(), Error>>>,
    failures: Vec<(Transport, Error, Duration)>,
    /// Why the next token must be a fresh one (a token refusal's code).
    refresh: Option<String>,
    /// Immediate retries after token refusals since the last open connection.
    refreshes: u32,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        link: Arc<Link>,
        channels: Vec<Channel>,
        joined: Arc<Mutex<Vec<Channel>>>,
        start: Start,
        updates: mpsc::Sender<Item>,
    ) -> Self {
        let tracker = match &start {
            Start::Cursor(c) => Tracker::new(Some(c.clone())),
            Start::Live | Start::Earliest => Tracker::default(),
        };
        Driver {
            config,
            link,
            channels,
            joined,
            start,
            tracker,
            updates,
            ready: None,
            failures: Vec::new(),
            refresh: None,
            refreshes: 0,
        }
    }

    /// Runs until the subscription is dropped (or, before it opened once, every transport
    /// failed): `ready` is answered when the first connection opens.
    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<(), Error>>) {
        self.ready = Some(ready);
        let updates = self.updates.clone();
        tokio::select! {
            () = self.connections() => {}
            () = updates.closed() => {}
        }
        self.link.detach();
    }

    /// The transports to try, the one that worked last first.
    fn round(&self) -> Vec<Transport> {
        let preferred = *self
            .config
            .preferred
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut round = self.config.transports.clone();
        if let Some(p) = preferred.filter(|p| round.contains(p)) {
            round.retain(|t| *t != p);
            round.insert(0, p);
        }
        round
    }

    async fn connections(&mut self) {
        let mut attempts = Attempts::new(self.config.backoff);
        let mut round = self.round();
        let mut index = 0;
        loop {
            let transport = round[index];
            let (reason, opened_at) = self.connect(transport).await;
            if self.updates.is_closed() {
                return;
            }
            if let Error::ServerDisconnect {
                reconnect: false,
                reason: why,
                ..
            } = reason
            {
                // The server asked this client not to come back: the stream ends here.
                match self.ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Err(Error::ServerDisconnect {
                            transport,
                            reconnect: false,
                            reason: why,
                        }));
                    }
                    None => {
                        let last = Update::Disconnected {
                            transport,
                            reason: why,
                        };
                        self.send(Item::Update(last)).await;
                    }
                }
                return;
            }
            let mut delay = Duration::ZERO;
            let refused = reason
                .token_refusal()
                .filter(|_| self.config.token.as_ref().is_some_and(|t| t.refreshes()));
            if let Some(code) = refused {
                self.refresh = Some(code.to_owned());
            }
            self.refreshes += u32::from(refused.is_some());
            // The first token refusal retries the same transport at once with a fresh token;
            // a fresh token refused again backs off like any failure.
            if refused.is_none() || self.refreshes > 1 {
                if let Some(at) = opened_at {
                    // Only a connection that stayed up a while proves the server healthy
                    // again; one that opens and drops at once keeps the backoff growing.
                    if at.elapsed() >= self.config.stable_after {
                        attempts.reset();
                    }
                    round = self.round();
                    index = 0;
                    delay = attempts.next_delay();
                } else {
                    index += 1;
                    if index >= round.len() {
                        if let Some(ready) = self.ready.take() {
                            let mut all: Vec<_> =
                                self.failures.drain(..).map(|(t, e, _)| (t, e)).collect();
                            all.push((transport, reason));
                            let _ = ready.send(Err(Error::Unreachable(all)));
                            return;
                        }
                        // Every transport failed: wait, then start again with the preferred.
                        round = self.round();
                        index = 0;
                        delay = attempts.next_delay();
                    }
                }
            }
            if self.ready.is_some() {
                self.failures.push((transport, reason, delay));
            } else if !self
                .send(Item::Update(Update::Retrying {
                    transport,
                    error: reason,
                    retry_in: delay,
                }))
                .await
            {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection over `transport`: why it ended, and when it had opened.
    async fn connect(&mut self, transport: Transport) -> (Error, Option<Instant>) {
        let request = TokenRequest {
            refresh: self.refresh.is_some(),
            reason: self.refresh.take(),
        };
        let token = match self.config.token(request).await {
            Ok(t) => t,
            Err(e) => return (e, None),
        };
        let mut conn = Conn {
            driver: self,
            transport,
            token,
            opened_at: None,
            lost: HashSet::new(),
            data: None,
        };
        let reason = match transport {
            Transport::Ws => ws::run(&mut conn).await,
            Transport::Sse => sse::run(&mut conn).await,
            Transport::Poll => poll::run(&mut conn, true).await,
            Transport::ShortPoll => poll::run(&mut conn, false).await,
        };
        (reason, conn.opened_at)
    }

    /// Hands `item` to the subscription; `false` once it is dropped.
    async fn send(&self, item: Item) -> bool {
        self.updates.send(item).await.is_ok()
    }
}

/// One connection attempt's view of the subscription: what a transport reads (channels,
/// resume point, token, settings) and reports (open, events, positions, resyncs).
pub(crate) struct Conn<'a> {
    driver: &'a mut Driver,
    transport: Transport,
    token: Option<String>,
    opened_at: Option<Instant>,
    /// Channels whose loss was reported on this connection and that had no event since: the
    /// server may signal one loss twice (`recovered: false`, then a `resync` message).
    lost: HashSet<Channel>,
    /// The connect hook's data, told once the connection is open.
    data: Option<serde_json::Value>,
}

impl Conn<'_> {
    pub(crate) fn config(&self) -> &Config {
        &self.driver.config
    }

    pub(crate) fn channels(&self) -> &[Channel] {
        &self.driver.channels
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn link(&self) -> Arc<Link> {
        self.driver.link.clone()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }

    /// The client's cursor, for placing SSE events.
    pub(crate) fn known(&self) -> Option<&Cursor> {
        self.driver.tracker.cursor()
    }

    /// The subscription's own channels and those the server joined it to.
    fn held(&self) -> Vec<Channel> {
        let joined = self.driver.joined.lock().unwrap_or_else(|e| e.into_inner());
        self.driver
            .channels
            .iter()
            .chain(joined.iter())
            .cloned()
            .collect()
    }

    /// Where the next connection resumes: the cursor when it names a held channel (joined
    /// ones included, so the server resumes those too), else the starting point (`earliest`,
    /// or empty for live).
    pub(crate) fn resume(&self) -> String {
        match self.driver.tracker.resume(&self.held()) {
            Some(c) => c.to_string(),
            None if self.driver.start == Start::Earliest => Start::EARLIEST.to_owned(),
            None => String::new(),
        }
    }

    async fn send(&self, item: Item) -> Result<(), Error> {
        if self.driver.send(item).await {
            Ok(())
        } else {
            Err(Error::SubscriptionClosed)
        }
    }

    /// The connection is open: the first one answers `Client::subscribe`.
    pub(crate) async fn open(&mut self, recovered: bool) -> Result<(), Error> {
        if self.opened_at.is_some() {
            return Ok(());
        }
        self.opened_at = Some(Instant::now());
        self.driver.refreshes = 0;
        *self
            .driver
            .config
            .preferred
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(self.transport);
        // `Client::subscribe` returns first: the queue may be too small for what follows
        // until the application reads it.
        if let Some(ready) = self.driver.ready.take() {
            let _ = ready.send(Ok(()));
        }
        for (transport, error, retry_in) in std::mem::take(&mut self.driver.failures) {
            self.send(Item::Update(Update::Retrying {
                transport,
                error,
                retry_in,
            }))
            .await?;
        }
        self.send(Item::Update(Update::Open {
            transport: self.transport,
            recovered,
        }))
        .await?;
        if let Some(data) = self.data.take() {
            self.connected(data).await?;
        }
        Ok(())
    }

    /// The connect hook's `data`: told as [`Update::Connected`], after the connection's
    /// [`Update::Open`] (a WebSocket's comes before the answer that opens it).
    pub(crate) async fn connected(&mut self, data: serde_json::Value) -> Result<(), Error> {
        if !self.is_open() {
            self.data = Some(data);
            return Ok(());
        }
        self.send(Item::Update(Update::Connected {
            data,
            transport: self.transport,
        }))
        .await
    }

    /// Channels the server says this connection holds: those beyond the subscription's own
    /// were joined by the connect hook, and are kept from now on (the next connection's
    /// hook joins them again, from the cursor this client sends).
    pub(crate) fn joined(&mut self, channels: &[String]) {
        let mut joined = self.driver.joined.lock().unwrap_or_else(|e| e.into_inner());
        for channel in channels.iter().filter_map(|c| Channel::new(c).ok()) {
            if !self.driver.channels.contains(&channel) && !joined.contains(&channel) {
                joined.push(channel);
            }
        }
    }

    /// Whether `channel` was joined by the server's connect hook.
    pub(crate) fn is_joined(&self, channel: &str) -> bool {
        let joined = self.driver.joined.lock().unwrap_or_else(|e| e.into_inner());
        joined.iter().any(|c| c.as_str() == channel)
    }

    /// An event off the wire: handed out unless already seen. Returns whether it was new.
    pub(crate) async fn deliver(&mut self, e: Incoming) -> Result<bool, Error> {
        if !self.driver.channels.contains(&e.channel) && !self.is_joined(e.channel.as_str()) {
            return Ok(false);
        }
        self.lost.remove(&e.channel);
        if !self.driver.tracker.accept(&e.channel, e.epoch, e.offset) {
            return Ok(false);
        }
        self.send(Item::Update(Update::Event(e.into_event(self.transport))))
            .await?;
        Ok(true)
    }

    /// A position the server reported; see [`Tracker::adopt`].
    pub(crate) async fn position(&mut self, cursor: &Cursor, replace: bool) -> Result<(), Error> {
        self.driver.tracker.adopt(cursor, replace);
        self.send(Item::Position(cursor.clone(), replace)).await
    }

    /// A position that only places the next events (an SSE event's `id:`, which moves one
    /// channel: the event itself moves the subscription's cursor).
    pub(crate) fn adopt(&mut self, cursor: &Cursor) {
        self.driver.tracker.adopt(cursor, false);
    }

    /// The server took `channels` out (`POST /api/unsubscribe`): later connections leave
    /// them out, and the application is told.
    pub(crate) async fn unsubscribed(&mut self, channels: Vec<String>) -> Result<(), Error> {
        let gone: Vec<Channel> = {
            let mut joined = self.driver.joined.lock().unwrap_or_else(|e| e.into_inner());
            let held = &mut self.driver.channels;
            let gone: Vec<Channel> = channels
                .iter()
                .filter_map(|c| Channel::new(c).ok())
                .filter(|c| held.contains(c) || joined.contains(c))
                .collect();
            held.retain(|c| !gone.contains(c));
            joined.retain(|c| !gone.contains(c));
            gone
        };
        if gone.is_empty() {
            return Ok(());
        }
        self.send(Item::Update(Update::Unsubscribed {
            channels: gone,
            transport: self.transport,
        }))
        .await
    }

    /// The server lost continuity on `channels` (all subscribed ones when empty).
    pub(crate) async fn resync(&mut self, channels: Vec<String>) -> Result<(), Error> {
        let named: Vec<Channel> = if channels.is_empty() {
            self.driver.channels.clone()
        } else {
            channels
                .iter()
                .filter_map(|c| Channel::new(c).ok())
                .filter(|c| self.driver.channels.contains(c) || self.is_joined(c.as_str()))
                .collect()
        };
        let fresh: Vec<Channel> = named
            .into_iter()
            .filter(|c| self.lost.insert(c.clone()))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        self.send(Item::Update(Update::Resync {
            channels: fresh,
            transport: self.transport,
        }))
        .await
    }
}
