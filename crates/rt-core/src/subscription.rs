//! Subscriptions: history replay joined to live delivery with nothing lost or repeated.
//!
//! The decisions are the [`Seam`]'s, a state machine without I/O; a [`Subscription`] drives
//! it: it owns the live receivers, reads the backplane and waits.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::auth::Permissions;
use crate::backplane::{Read, ReadFrom};
use crate::changes::Changes;
use crate::cursor::{Cursor, Start};
use crate::error::Error;
use crate::event::Event;
use crate::hub::{Inner, Listening, Live};
use crate::name::Channel;
use crate::presence::Member;
use crate::seam::{Action, Arrival, Seam};
use crate::signal::Signal;
use crate::telemetry::names;

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next event of one of the channels.
    Event(Arc<Event>),
    /// Continuity was lost on these channels (history no longer covers what was missed, or
    /// history itself was lost): events were skipped. The subscription goes on from the
    /// channels' current heads; clients should reload their state.
    ///
    /// A subscriber that falls more than the queue capacity behind the live stream is not
    /// told anything else: it catches up from history, and gets this only when history no
    /// longer holds its position.
    Resync {
        /// The channels whose stream has a hole.
        channels: Vec<Channel>,
    },
    /// The application took `channel` out of this subscription (a
    /// [`Signal::Unsubscribe`], e.g. from the server API): it is no longer held, and nothing
    /// more of it is delivered. The client may subscribe to it again if its permissions allow.
    Unsubscribed {
        /// The channel no longer held.
        channel: Channel,
    },
    /// The application ended the connections of this subscription's subject (a
    /// [`Signal::Disconnect`]). The transport ends the connection in its documented way;
    /// `reconnect: false` asks the client not to come back.
    Disconnected {
        /// Whether the client may connect again.
        reconnect: bool,
        /// Why, as the application said.
        reason: String,
    },
    /// Connections joined or left a channel of this subscription that keeps presence (see
    /// [`Hub::enable_presence`](crate::Hub::enable_presence)); only for subscriptions whose
    /// permissions allow reading that channel's presence. Gathered per node over a short
    /// window, so a reconnect storm is a few of these, not one per connection.
    Presence(Arc<Changes>),
}

/// Outcome of joining channels.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Joined {
    /// Channels whose requested position could not be honoured (they start live).
    pub resynced: Vec<Channel>,
}

impl Joined {
    /// True when every requested position was honoured.
    pub fn recovered(&self) -> bool {
        self.resynced.is_empty()
    }
}

/// A live, resumable view of some channels. Created by [`Hub::subscribe`](crate::Hub::subscribe).
///
/// [`Subscription::next`] is cancel-safe, so transports can `select!` on it together with
/// their socket.
pub struct Subscription {
    hub: Arc<Inner>,
    seam: Seam,
    /// The live receiver of each of the seam's lanes, in the same order. Read directly, not
    /// through a stream adapter: taking what is queued is a plain `try_recv`, and only an
    /// empty queue registers a waker.
    live: Vec<broadcast::Receiver<Live>>,
    rotate: usize,
    retry: Duration,
    /// Deliveries not yet added to the metric: counted locally and reported when the
    /// subscription waits, so the per-event path touches no shared counter.
    unreported: u64,
    permissions: Option<Permissions>,
    /// Signals about the subject of `permissions`, if they name one.
    listening: Option<Listening>,
    /// This connection's entry in presence, made when it first joins a channel that keeps it.
    member: Option<Member>,
    /// Presence and channel counts are kept by the caller (see [`Self::without_presence`]).
    detached: bool,
}

/// How far [`Subscription::advance`] may go for the next delivery.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// History reads too, but no wait for a live event.
    History,
    /// Wait for a live event when nothing else is ready.
    Wait,
}

impl From<Result<Live, RecvError>> for Arrival {
    fn from(r: Result<Live, RecvError>) -> Self {
        match r {
            Ok(Live::Event(event)) => Arrival::Event(event),
            Ok(Live::CatchUp) => Arrival::CatchUp,
            Ok(Live::Presence(changes)) => Arrival::Presence(changes),
            Err(RecvError::Lagged(_)) => {
                metrics::counter!(names::LAGGED).increment(1);
                Arrival::Lagged
            }
            Err(RecvError::Closed) => Arrival::Closed,
        }
    }
}

impl Subscription {
    pub(crate) fn new(hub: Arc<Inner>) -> Self {
        hub.subscriptions.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(names::SUBSCRIPTIONS).increment(1.0);
        Subscription {
            hub,
            seam: Seam::default(),
            live: Vec::new(),
            rotate: 0,
            retry: Duration::ZERO,
            unreported: 0,
            permissions: None,
            listening: None,
            member: None,
            detached: false,
        }
    }

    /// Leaves presence to the caller: this subscription neither joins presence nor counts in
    /// the channel registry; a [`Membership`](crate::Membership) of the caller does both, for
    /// a client that outlives this subscription (polling: one subscription per request, one
    /// member across requests). Join/leave events are still delivered. Call it before the
    /// first [`add`](Self::add).
    pub fn without_presence(mut self) -> Self {
        self.detached = true;
        self
    }

    /// Restricts later [`add`](Self::add)s to the channels `permissions` allow (by default a
    /// subscription may add any channel). Channels already held are kept: a transport that
    /// re-authenticates a connection decides itself what to do with them.
    ///
    /// Permissions that name a subject also make the subscription receive the signals about
    /// it (see [`Hub::signal`](crate::Hub::signal)).
    pub fn set_permissions(&mut self, permissions: Permissions) {
        let subject = permissions.subject();
        let listening = self.listening.as_ref().map(|l| l.subject());
        if subject != listening {
            self.listening = subject.map(|s| self.hub.dispatch.listen(s));
        }
        self.permissions = Some(permissions);
    }

    /// Whether signals about a subject can reach this subscription: then
    /// [`next`](Self::next) waits for them even while no channel is held.
    pub fn has_subject(&self) -> bool {
        self.listening.is_some()
    }

    /// [`set_permissions`](Self::set_permissions) in builder form.
    pub fn with_permissions(mut self, permissions: Permissions) -> Self {
        self.set_permissions(permissions);
        self
    }

    /// The channels subscribed to, in the order they were added.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.seam.channels()
    }

    /// The position after everything delivered so far: give it back as `Start::Cursor` (on any
    /// transport, on any node) to continue exactly here.
    pub fn cursor(&self) -> Cursor {
        self.seam.cursor()
    }

    /// Adds channels, starting each from `start`. Channels already held are left as they are.
    /// Replayed events are queued before any later live event; channels whose position could
    /// not be honoured are reported in [`Joined`] and also queued as a [`Delivery::Resync`].
    ///
    /// With [`set_permissions`](Self::set_permissions), a channel outside them fails the whole
    /// call with [`Error::Unauthorized`], [`Error::Forbidden`] or [`Error::TokenExpired`]
    /// before anything is joined. A call that fails leaves the subscription as it was.
    pub async fn add(
        &mut self,
        channels: impl IntoIterator<Item = Channel>,
        start: Start,
    ) -> Result<Joined, Error> {
        let mut new: Vec<Channel> = channels
            .into_iter()
            .filter(|c| !self.seam.channels().any(|held| held == c))
            .collect();
        new.sort();
        new.dedup();
        if let Some(permissions) = &self.permissions {
            for channel in &new {
                permissions.check_subscribe(channel)?;
            }
        }
        let held = self.live.len();
        let max = self.hub.config.max_channels;
        if held + new.len() > max {
            return Err(Error::TooManyChannels {
                given: held + new.len(),
                max,
            });
        }
        // Every cursor this subscription hands out must parse back when it is sent again.
        Cursor::check_fits(self.seam.channels().chain(&new))?;
        let asked = self.seam.begin_add(new, start);
        // Undoes the add unless it completes: on an error, and when the caller drops it.
        let mut adding = Adding {
            sub: self,
            asked,
            done: false,
        };
        adding.sub.join(&adding.asked).await?;
        adding.done = true;
        let asked = std::mem::take(&mut adding.asked);
        drop(adding);
        for (channel, _) in &asked {
            self.present(channel, 1);
        }
        Ok(self.seam.end_add())
    }

    /// Tells the backplane's presence that this subscription gained (`delta` 1) or lost
    /// (`-1`) `channel`: its subscriber count, and its members where presence is enabled.
    fn present(&mut self, channel: &Channel, delta: i64) {
        if self.detached {
            return;
        }
        if self.member.is_none() && self.hub.presence_enabled(channel) {
            self.member = Some(Member::new(self.permissions.as_ref()));
        }
        self.hub.present(channel, delta > 0, self.member.as_ref());
    }

    /// Joins the channels the seam is adding: each is watched before any head or history is
    /// read (see the seam's docs), then their first pages are read.
    async fn join(&mut self, asked: &[(Channel, ReadFrom)]) -> Result<(), Error> {
        self.live.reserve_exact(asked.len());
        let mut watches = Vec::with_capacity(asked.len());
        for (channel, _) in asked {
            let (rx, watched) = self.hub.dispatch.join(channel);
            self.live.push(rx);
            watches.push(watched);
        }
        let backplane = &*self.hub.backplane;
        // Awaited together so that a backplane can send them as one batch.
        try_join_all(
            watches
                .iter()
                .zip(asked)
                .map(|(watched, (channel, _))| watched.ensure(backplane, channel)),
        )
        .await?;
        let answers = backplane.join(asked, self.hub.config.page_size).await?;
        self.seam.on_join(answers)?;
        while let Some((i, channel, after)) = self.seam.join_read() {
            let read = self.read(&channel, after).await?;
            self.seam.on_page(i, read);
        }
        Ok(())
    }

    /// Drops `channel` from the subscription.
    pub fn remove(&mut self, channel: &Channel) {
        if let Some(i) = self.seam.remove(channel) {
            drop(self.live.remove(i));
            self.hub.dispatch.release(channel, &*self.hub.backplane);
            self.present(channel, -1);
        }
    }

    /// The next delivery, or `None` once the subscription has ended (it holds no channel and
    /// has no subject: with a subject it waits for a [`Delivery::Disconnected`]).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.advance(Reach::Wait).await
    }

    /// The next delivery that needs no new publish: what is queued, what history holds for a
    /// channel that is catching up (read from the backplane), or what the live queues hold.
    /// `None` when the next delivery would have to wait for a publish, when a history read
    /// failed (the next call tries again), or when the subscription ended. Cancel-safe.
    pub async fn next_ready(&mut self) -> Option<Delivery> {
        self.advance(Reach::History).await
    }

    /// The next delivery if one is ready in memory: no wait, no read of history. `None` also
    /// when a channel is catching up from history: [`next`](Self::next) or
    /// [`next_ready`](Self::next_ready) read it.
    pub fn try_next(&mut self) -> Option<Delivery> {
        if let Some(d) = self.take_signal() {
            return Some(d);
        }
        loop {
            match self.seam.poll() {
                Action::Deliver(d) => return Some(self.count(d)),
                Action::End | Action::Read { .. } => return None,
                Action::Live => match self.take_live() {
                    Some((i, arrival)) => {
                        if let Some(d) = self.seam.on_live(i, arrival).filter(|d| self.may_see(d)) {
                            return Some(self.count(d));
                        }
                    }
                    None => return None,
                },
            }
        }
    }

    /// Drives the seam until it hands something out, or until going further would need more
    /// than `reach` allows.
    async fn advance(&mut self, reach: Reach) -> Option<Delivery> {
        loop {
            if let Some(d) = self.take_signal() {
                return Some(d);
            }
            match self.seam.poll() {
                Action::Deliver(d) => return Some(self.count(d)),
                Action::End => {
                    let listening = self.listening.as_mut().filter(|_| reach == Reach::Wait);
                    match listening {
                        Some(l) => match l.signals.recv().await {
                            Some(signal) => {
                                if let Some(d) = self.on_signal(signal) {
                                    return Some(d);
                                }
                            }
                            None => return None,
                        },
                        None => return None,
                    }
                }
                Action::Read {
                    lane,
                    channel,
                    after,
                    rejoin,
                } => {
                    if rejoin {
                        // Renewed before reading: whatever the old receiver drops is in what is
                        // read next.
                        self.live[lane] = self.hub.dispatch.join(&channel).0;
                    }
                    match self.read(&channel, after).await {
                        Ok(read) => {
                            self.retry = Duration::ZERO;
                            self.seam.on_page(lane, read);
                        }
                        Err(_) if reach == Reach::History => return None,
                        Err(e) => {
                            // The backplane is down: keep the subscriber, retry with capped
                            // backoff.
                            self.retry = (self.retry * 2)
                                .clamp(Duration::from_millis(50), Duration::from_secs(5));
                            tracing::debug!(error = %e, "history read failed, retrying");
                            tokio::time::sleep(self.retry).await;
                        }
                    }
                }
                Action::Live => {
                    let (i, arrival) = match self.take_live() {
                        Some(taken) => taken,
                        None if reach == Reach::Wait => match self.wait().await {
                            Woken::Live(i, arrival) => (i, arrival),
                            Woken::Signal(signal) => match self.on_signal(signal) {
                                Some(d) => return Some(d),
                                None => continue,
                            },
                        },
                        None => return None,
                    };
                    if let Some(d) = self.seam.on_live(i, arrival).filter(|d| self.may_see(d)) {
                        return Some(self.count(d));
                    }
                }
            }
        }
    }

    /// One page of `channel`'s history after `after`.
    async fn read(&self, channel: &Channel, after: u64) -> Result<Read, Error> {
        self.hub
            .backplane
            .read(channel, after, self.hub.config.page_size)
            .await
    }

    /// Takes what a live queue holds, if any.
    fn take_live(&mut self) -> Option<(usize, Arrival)> {
        let n = self.live.len();
        // Rotating the starting lane keeps a busy channel from starving the others.
        let start = self.rotate % n.max(1);
        self.rotate = self.rotate.wrapping_add(1);
        (0..n).map(|k| (start + k) % n).find_map(|i| {
            let arrival = match self.live[i].try_recv() {
                Err(TryRecvError::Empty) => return None,
                Ok(live) => Ok(live),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            Some((i, arrival.into()))
        })
    }

    /// A signal already queued for this subscription, acted on.
    fn take_signal(&mut self) -> Option<Delivery> {
        loop {
            let signal = self.listening.as_mut()?.signals.try_recv().ok()?;
            if let Some(d) = self.on_signal(signal) {
                return Some(d);
            }
        }
    }

    /// Acts on a signal about this subscription's subject; `None` when it changes nothing here.
    fn on_signal(&mut self, signal: Signal) -> Option<Delivery> {
        match signal {
            Signal::Disconnect {
                reconnect, reason, ..
            } => Some(Delivery::Disconnected { reconnect, reason }),
            Signal::Unsubscribe { channel, .. } => {
                if !self.seam.channels().any(|held| *held == channel) {
                    return None;
                }
                self.remove(&channel);
                Some(Delivery::Unsubscribed { channel })
            }
            // Sent to a channel's broadcast, never to a subject's listeners.
            Signal::Presence(_) => None,
        }
    }

    /// Waits until a live queue holds something, and takes it, or until a signal arrives.
    async fn wait(&mut self) -> Woken {
        // About to wait: a burst taken with `try_next` is counted once.
        report(&mut self.unreported);
        let mut signals = self.listening.as_mut().map(|l| &mut l.signals);
        if let ([rx], None) = (&mut self.live[..], &signals) {
            return Woken::Live(0, rx.recv().await.into());
        }
        // A receive future borrows its receiver, so one per lane is built for each wait.
        let mut waits: Vec<_> = self.live.iter_mut().map(|rx| Box::pin(rx.recv())).collect();
        std::future::poll_fn(|cx| {
            if let Some(signals) = &mut signals {
                // A closed queue (the subscription is being dropped) is never ready.
                if let Poll::Ready(Some(signal)) = signals.poll_recv(cx) {
                    return Poll::Ready(Woken::Signal(signal));
                }
            }
            for (i, w) in waits.iter_mut().enumerate() {
                if let Poll::Ready(r) = w.as_mut().poll(cx) {
                    return Poll::Ready(Woken::Live(i, r.into()));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the caller may see `d`: join and leave events need the permission to read the
    /// channel's presence.
    fn may_see(&self, d: &Delivery) -> bool {
        match (d, &self.permissions) {
            (Delivery::Presence(c), Some(p)) => p.check_presence(&c.channel).is_ok(),
            _ => true,
        }
    }

    /// Counts a delivery on its way to the caller.
    fn count(&mut self, d: Delivery) -> Delivery {
        match &d {
            Delivery::Event(_) => self.unreported += 1,
            Delivery::Resync { .. } => metrics::counter!(names::RESYNCS).increment(1),
            Delivery::Unsubscribed { .. }
            | Delivery::Disconnected { .. }
            | Delivery::Presence(_) => {}
        }
        d
    }
}

/// What ended a wait.
enum Woken {
    /// Lane `.0` had something.
    Live(usize, Arrival),
    /// A signal about the subject.
    Signal(Signal),
}

/// An add in progress; dropped before it is done, it takes back the lanes it added.
struct Adding<'a> {
    sub: &'a mut Subscription,
    asked: Vec<(Channel, ReadFrom)>,
    done: bool,
}

impl Drop for Adding<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let gone = self.sub.seam.abort_add();
        self.sub.live.truncate(gone.start.min(self.sub.live.len()));
        for (channel, _) in &self.asked {
            self.sub
                .hub
                .dispatch
                .release(channel, &*self.sub.hub.backplane);
        }
    }
}

/// Adds deliveries counted locally to the shared metric.
fn report(unreported: &mut u64) {
    if *unreported > 0 {
        metrics::counter!(names::DELIVERIES).increment(std::mem::take(unreported));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.subscriptions.fetch_sub(1, Ordering::Relaxed);
        report(&mut self.unreported);
        metrics::gauge!(names::SUBSCRIPTIONS).decrement(1.0);
        let channels: Vec<Channel> = self.seam.channels().cloned().collect();
        // Each receiver goes before its channel is released, so the release sees it gone.
        drop(std::mem::take(&mut self.live));
        for channel in channels {
            self.hub.dispatch.release(&channel, &*self.hub.backplane);
            self.present(&channel, -1);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor())
            .field("pending", &self.seam.pending())
            .field("ended", &self.seam.ended())
            .finish()
    }
}
