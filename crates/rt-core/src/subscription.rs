//! Subscriptions: history replay joined to live delivery with nothing lost or repeated.
//!
//! Each channel of a subscription is a *lane* that remembers the last offset it delivered.
//! A lane joins the channel's live broadcast *before* reading history, so an event published
//! while history is read is either in what was read or in the broadcast (or both): events at
//! or below the lane's offset are dropped as duplicates, and an event that skips ahead means
//! something was missed, which the lane re-reads from history. The same rule covers a
//! backplane that reconnected and a history that was lost (a new epoch).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::auth::Permissions;
use crate::backplane::{Read, ReadFrom};
use crate::cursor::{Cursor, Start};
use crate::error::Error;
use crate::event::{Epoch, Event};
use crate::history::Since;
use crate::hub::{Inner, Live};
use crate::name::Channel;
use crate::telemetry::names;

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next event of one of the channels.
    Event(Arc<Event>),
    /// Continuity was lost on these channels (history no longer covers what was missed, or
    /// history itself was lost): events were skipped. The subscription goes on from the
    /// channels' current heads; clients should reload their state.
    Resync {
        /// The channels whose stream has a hole.
        channels: Vec<Channel>,
    },
    /// The subscriber fell more than the queue capacity behind the live stream. This is the
    /// last item: the transport should close with this reason, and the client resume from its
    /// cursor.
    Lagged,
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

/// A delivery waiting in the subscription, with what it moves the cursor to.
enum Queued {
    Event(Arc<Event>),
    /// Channels that lost continuity, each with the offset it continues after.
    Resync(Vec<(Channel, u64)>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CatchUp {
    /// Live.
    Done,
    /// Must re-read history after `last`; the live receiver is renewed first.
    Needed,
    /// Reading history page by page.
    Paging,
}

/// What a read of a lane's live queue gave.
enum Taken {
    Live(Live),
    Lagged,
    Closed,
}

impl From<Result<Live, RecvError>> for Taken {
    fn from(r: Result<Live, RecvError>) -> Self {
        match r {
            Ok(live) => Taken::Live(live),
            Err(RecvError::Lagged(_)) => Taken::Lagged,
            Err(RecvError::Closed) => Taken::Closed,
        }
    }
}

/// Where [`Subscription::step`] got to without waiting.
enum Step {
    Deliver(Delivery),
    End,
    /// Lane `i` must read history first.
    CatchUp(usize),
    /// Every live queue is empty.
    Wait,
}

struct Lane {
    channel: Channel,
    /// Read directly, not through a stream adapter: taking what is queued is a plain
    /// `try_recv`, and only an empty queue registers a waker.
    live: broadcast::Receiver<Live>,
    /// Last offset queued for delivery.
    last: u64,
    /// Last offset handed to the caller: what the cursor reports.
    delivered: u64,
    catch_up: CatchUp,
    /// Replaying from the oldest retained event: a gap at the start is not a loss.
    from_earliest: bool,
    /// Just finished catching up: a lag seen now was caused by the replay, not the reader.
    fresh: bool,
}

/// A live, resumable view of some channels. Created by [`Hub::subscribe`](crate::Hub::subscribe).
///
/// [`Subscription::next`] is cancel-safe, so transports can `select!` on it together with
/// their socket.
pub struct Subscription {
    hub: Arc<Inner>,
    lanes: Vec<Lane>,
    epoch: Option<Epoch>,
    pending: VecDeque<Queued>,
    rotate: usize,
    ended: bool,
    retry: Duration,
    /// Deliveries not yet added to the metric: counted locally and reported when the
    /// subscription waits, so the per-event path touches no shared counter.
    unreported: u64,
    permissions: Option<Permissions>,
}

impl Subscription {
    pub(crate) fn new(hub: Arc<Inner>) -> Self {
        hub.subscriptions.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(names::SUBSCRIPTIONS).increment(1.0);
        Subscription {
            hub,
            lanes: Vec::new(),
            epoch: None,
            pending: VecDeque::new(),
            rotate: 0,
            ended: false,
            retry: Duration::ZERO,
            unreported: 0,
            permissions: None,
        }
    }

    /// Restricts later [`add`](Self::add)s to the channels `permissions` allow (by default a
    /// subscription may add any channel). Channels already held are kept: a transport that
    /// re-authenticates a connection decides itself what to do with them.
    pub fn set_permissions(&mut self, permissions: Permissions) {
        self.permissions = Some(permissions);
    }

    /// [`set_permissions`](Self::set_permissions) in builder form.
    pub fn with_permissions(mut self, permissions: Permissions) -> Self {
        self.set_permissions(permissions);
        self
    }

    /// The channels subscribed to, in the order they were added.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.lanes.iter().map(|l| &l.channel)
    }

    /// The position after everything delivered so far: give it back as `Start::Cursor` (on any
    /// transport, on any node) to continue exactly here.
    pub fn cursor(&self) -> Cursor {
        let mut c = Cursor::new(self.epoch.unwrap_or(Epoch(0)));
        for lane in &self.lanes {
            c.set(lane.channel.clone(), lane.delivered);
        }
        c
    }

    /// Adds channels, starting each from `start`. Channels already held are left as they are.
    /// Replayed events are queued before any later live event; channels whose position could
    /// not be honoured are reported in [`Joined`] and also queued as a [`Delivery::Resync`].
    ///
    /// With [`set_permissions`](Self::set_permissions), a channel outside them fails the whole
    /// call with [`Error::Unauthorized`], [`Error::Forbidden`] or [`Error::TokenExpired`]
    /// before anything is joined.
    pub async fn add(
        &mut self,
        channels: impl IntoIterator<Item = Channel>,
        start: Start,
    ) -> Result<Joined, Error> {
        let mut new: Vec<Channel> = channels
            .into_iter()
            .filter(|c| !self.lanes.iter().any(|l| &l.channel == c))
            .collect();
        new.sort();
        new.dedup();
        if let Some(permissions) = &self.permissions {
            for channel in &new {
                permissions.check_subscribe(channel)?;
            }
        }
        let max = self.hub.config.max_channels;
        if self.lanes.len() + new.len() > max {
            return Err(Error::TooManyChannels {
                given: self.lanes.len() + new.len(),
                max,
            });
        }
        // Every cursor this subscription hands out must parse back when it is sent again.
        Cursor::check_fits(self.lanes.iter().map(|l| &l.channel).chain(&new))?;
        let first = self.lanes.len();
        // Exactly as many as needed: most subscriptions hold one channel for hours.
        self.lanes.reserve_exact(new.len());
        let mut watches = Vec::with_capacity(new.len());
        for channel in new {
            let (rx, watched) = self.hub.dispatch.join(&channel);
            // Registered before waiting so that a failure below releases it on drop.
            self.lanes.push(Lane {
                channel: channel.clone(),
                live: rx,
                last: 0,
                delivered: 0,
                catch_up: CatchUp::Done,
                from_earliest: false,
                fresh: false,
            });
            watches.push((channel, watched));
        }
        let backplane = &*self.hub.backplane;
        // Every lane is watched before any head or history is read (see the module docs). The
        // watches are awaited together so that a backplane can send them as one batch.
        try_join_all(
            watches
                .iter()
                .map(|(channel, watched)| watched.ensure(backplane, channel)),
        )
        .await?;
        let asked: Vec<(Channel, ReadFrom)> = watches
            .into_iter()
            .map(|(channel, _)| {
                let from = match &start {
                    Start::Live => ReadFrom::Nothing,
                    Start::Earliest => ReadFrom::Earliest,
                    // A channel new to this cursor starts live.
                    Start::Cursor(c) => c
                        .offset(&channel)
                        .map_or(ReadFrom::Nothing, ReadFrom::After),
                };
                (channel, from)
            })
            .collect();
        let answers = backplane.join(&asked, self.hub.config.page_size).await?;
        if answers.len() != asked.len() {
            return Err(Error::Unavailable(format!(
                "the backplane answered {} of {} channels joined",
                answers.len(),
                asked.len()
            )));
        }
        let cursor_epoch = match &start {
            Start::Cursor(c) => Some(c.epoch()),
            Start::Live | Start::Earliest => None,
        };
        let mut joined = Joined::default();
        let mut pages = Vec::with_capacity(answers.len());
        for (k, ((channel, from), answer)) in asked.into_iter().zip(answers).enumerate() {
            self.observe_epoch(answer.epoch);
            let lane = &mut self.lanes[first + k];
            match from {
                ReadFrom::Nothing => lane.last = answer.head,
                ReadFrom::Earliest => {
                    lane.last = answer.after;
                    lane.catch_up = CatchUp::Paging;
                    lane.from_earliest = true;
                }
                ReadFrom::After(offset)
                    if cursor_epoch == Some(answer.epoch) && offset <= answer.head =>
                {
                    lane.last = offset;
                    lane.catch_up = CatchUp::Paging;
                }
                ReadFrom::After(_) => {
                    lane.last = answer.head;
                    joined.resynced.push(channel);
                }
            }
            pages.push((answer.epoch, answer.page));
        }
        for lane in &mut self.lanes[first..] {
            lane.delivered = lane.last;
        }
        // The first page decides whether history still covers each cursor.
        for (k, (epoch, page)) in pages.into_iter().enumerate() {
            let i = first + k;
            if self.lanes[i].catch_up != CatchUp::Paging {
                continue;
            }
            let lost = match page {
                Some(since) if Some(epoch) == self.epoch => match self.apply_page(i, since) {
                    Paged::Done => None,
                    Paged::Lost(channel) => Some(channel),
                    // History was trimmed under an `earliest` join: rare, read on here.
                    Paged::Again => self.read_page(i).await?,
                },
                // Not read with the head, or the epoch changed since: read it now.
                _ => self.read_page(i).await?,
            };
            joined.resynced.extend(lost);
        }
        if !joined.resynced.is_empty() {
            let moved = self.lanes[first..]
                .iter()
                .filter(|l| joined.resynced.contains(&l.channel))
                .map(|l| (l.channel.clone(), l.last))
                .collect();
            self.pending.push_back(Queued::Resync(moved));
        }
        Ok(joined)
    }

    /// Drops `channel` from the subscription.
    pub fn remove(&mut self, channel: &Channel) {
        if let Some(i) = self.lanes.iter().position(|l| &l.channel == channel) {
            let lane = self.lanes.remove(i);
            self.pending
                .retain(|q| !matches!(q, Queued::Event(e) if e.channel() == channel));
            drop(lane);
            self.hub.dispatch.release(channel, &*self.hub.backplane);
        }
    }

    /// The next delivery, or `None` once the subscription has ended (after [`Delivery::Lagged`]
    /// or when it holds no channel). Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.step() {
                Step::Deliver(d) => return Some(d),
                Step::End => return None,
                Step::CatchUp(i) => {
                    if let Err(e) = self.catch_up(i).await {
                        // The backplane is down: keep the subscriber, retry with capped backoff.
                        self.retry = (self.retry * 2)
                            .clamp(Duration::from_millis(50), Duration::from_secs(5));
                        tracing::debug!(error = %e, channel = %self.lanes[i].channel, "history read failed, retrying");
                        tokio::time::sleep(self.retry).await;
                    }
                }
                Step::Wait => {
                    let (i, taken) = self.wait().await;
                    match self.on_taken(i, taken) {
                        Some(Step::Deliver(d)) => return Some(d),
                        Some(_) => return None,
                        None => {}
                    }
                }
            }
        }
    }

    /// The next delivery if one is ready without waiting for the network.
    pub fn try_next(&mut self) -> Option<Delivery> {
        match self.step() {
            Step::Deliver(d) => Some(d),
            Step::End | Step::Wait => None,
            // Rare (after a lag or a backplane gap): a history read that is ready at once, as
            // on the memory backplane, still counts as ready.
            Step::CatchUp(_) => {
                use futures_util::FutureExt;
                self.next().now_or_never().flatten()
            }
        }
    }

    /// Goes as far as possible without waiting: what is pending, then what the live queues
    /// already hold.
    fn step(&mut self) -> Step {
        loop {
            if let Some(q) = self.pending.pop_front() {
                return Step::Deliver(self.hand_out(q));
            }
            if self.ended || self.lanes.is_empty() {
                return Step::End;
            }
            if let Some(i) = self.lanes.iter().position(|l| l.catch_up != CatchUp::Done) {
                return Step::CatchUp(i);
            }
            let n = self.lanes.len();
            // Rotating the starting lane keeps a busy channel from starving the others.
            let start = self.rotate % n;
            self.rotate = self.rotate.wrapping_add(1);
            let mut taken = None;
            for k in 0..n {
                let i = (start + k) % n;
                taken = match self.lanes[i].live.try_recv() {
                    Err(TryRecvError::Empty) => continue,
                    Ok(live) => Some((i, Taken::Live(live))),
                    Err(TryRecvError::Lagged(_)) => Some((i, Taken::Lagged)),
                    Err(TryRecvError::Closed) => Some((i, Taken::Closed)),
                };
                break;
            }
            let Some((i, taken)) = taken else {
                return Step::Wait;
            };
            if let Some(step) = self.on_taken(i, taken) {
                return step;
            }
        }
    }

    /// Waits until a live queue holds something, and takes it.
    async fn wait(&mut self) -> (usize, Taken) {
        // About to wait: a burst taken with `try_next` is counted once.
        report(&mut self.unreported);
        if let [lane] = &mut self.lanes[..] {
            return (0, lane.live.recv().await.into());
        }
        // A receive future borrows its receiver, so one per lane is built for each wait.
        let mut waits: Vec<_> = self
            .lanes
            .iter_mut()
            .map(|l| Box::pin(l.live.recv()))
            .collect();
        std::future::poll_fn(|cx| {
            for (i, w) in waits.iter_mut().enumerate() {
                if let Poll::Ready(r) = w.as_mut().poll(cx) {
                    return Poll::Ready((i, r.into()));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Applies what lane `i`'s live queue gave; `Some` when it ends the step.
    fn on_taken(&mut self, i: usize, taken: Taken) -> Option<Step> {
        match taken {
            Taken::Live(Live::Event(event)) => {
                self.lanes[i].fresh = false;
                self.on_live(i, event)
                    .map(|e| Step::Deliver(Delivery::Event(e)))
            }
            Taken::Live(Live::CatchUp) => {
                self.lanes[i].catch_up = CatchUp::Needed;
                None
            }
            Taken::Lagged if self.lanes[i].fresh => {
                // The replay itself let the live queue overflow; history has it all.
                self.lanes[i].catch_up = CatchUp::Needed;
                None
            }
            Taken::Lagged => {
                self.ended = true;
                metrics::counter!(names::LAGGED).increment(1);
                Some(Step::Deliver(Delivery::Lagged))
            }
            Taken::Closed => {
                self.ended = true;
                Some(Step::End)
            }
        }
    }

    fn hand_out(&mut self, queued: Queued) -> Delivery {
        match queued {
            Queued::Event(event) => {
                if let Some(lane) = self
                    .lanes
                    .iter_mut()
                    .find(|l| l.channel == *event.channel())
                {
                    lane.delivered = event.offset();
                }
                self.unreported += 1;
                Delivery::Event(event)
            }
            Queued::Resync(moved) => {
                let mut channels = Vec::with_capacity(moved.len());
                for (channel, offset) in moved {
                    if let Some(lane) = self.lanes.iter_mut().find(|l| l.channel == channel) {
                        lane.delivered = offset;
                    }
                    channels.push(channel);
                }
                metrics::counter!(names::RESYNCS).increment(1);
                Delivery::Resync { channels }
            }
        }
    }

    /// Returns a live event that is lane `i`'s next, to be handed out at once: nothing is
    /// pending while the live queue is read, so it needs neither the queue nor a lane lookup.
    fn on_live(&mut self, i: usize, event: Arc<Event>) -> Option<Arc<Event>> {
        if Some(event.epoch()) != self.epoch {
            self.observe_epoch(event.epoch());
            return None;
        }
        let lane = &mut self.lanes[i];
        if event.offset() <= lane.last {
            return None;
        }
        if event.offset() != lane.last + 1 {
            lane.catch_up = CatchUp::Needed;
            return None;
        }
        lane.last = event.offset();
        lane.delivered = event.offset();
        self.unreported += 1;
        Some(event)
    }

    /// History was lost and restarted as `epoch`: every lane replays the new incarnation from
    /// its start, after telling the client about the hole.
    fn observe_epoch(&mut self, epoch: Epoch) {
        match self.epoch {
            None => self.epoch = Some(epoch),
            Some(current) if current == epoch => {}
            Some(_) => {
                self.epoch = Some(epoch);
                let mut channels = Vec::new();
                for lane in &mut self.lanes {
                    lane.last = 0;
                    lane.catch_up = CatchUp::Needed;
                    channels.push((lane.channel.clone(), 0));
                }
                self.pending.push_back(Queued::Resync(channels));
            }
        }
    }

    async fn catch_up(&mut self, i: usize) -> Result<(), Error> {
        if self.lanes[i].catch_up == CatchUp::Needed {
            // Renew the receiver *before* reading: whatever it drops is in what we read next.
            let (rx, _) = self.hub.dispatch.join(&self.lanes[i].channel);
            self.lanes[i].live = rx;
            self.lanes[i].catch_up = CatchUp::Paging;
        }
        if let Some(lost) = self.read_page(i).await? {
            let head = self.lanes[i].last;
            self.pending.push_back(Queued::Resync(vec![(lost, head)]));
        }
        self.retry = Duration::ZERO;
        Ok(())
    }

    /// Reads one page of history for lane `i` and queues it. Returns the channel if history no
    /// longer covers the lane's position.
    async fn read_page(&mut self, i: usize) -> Result<Option<Channel>, Error> {
        let channel = self.lanes[i].channel.clone();
        // An `earliest` lane that finds the start of history trimmed moves to the oldest
        // retained event and reads again at once, so that this page (the one `add` awaits)
        // already holds the retained events: a poll that takes only what is ready (a short
        // poll on a Redis backplane) must not answer empty. Bounded, in case publishes keep
        // trimming history under the reads; the next `next()` continues paging.
        for _ in 0..3 {
            let Read { epoch, since } = self
                .hub
                .backplane
                .read(&channel, self.lanes[i].last, self.hub.config.page_size)
                .await?;
            if Some(epoch) != self.epoch {
                self.observe_epoch(epoch);
                return Ok(None);
            }
            match self.apply_page(i, since) {
                Paged::Done => return Ok(None),
                Paged::Lost(channel) => return Ok(Some(channel)),
                Paged::Again => {}
            }
        }
        Ok(None)
    }

    /// Queues a page of lane `i`'s history, read after the lane's `last`.
    fn apply_page(&mut self, i: usize, since: Since) -> Paged {
        let lane = &mut self.lanes[i];
        match since {
            Since::Events { events, more } => {
                for event in events {
                    if event.offset() == lane.last + 1 {
                        lane.last = event.offset();
                        self.pending.push_back(Queued::Event(event));
                    }
                }
                if !more {
                    lane.catch_up = CatchUp::Done;
                    lane.from_earliest = false;
                    lane.fresh = true;
                }
                Paged::Done
            }
            Since::Gap { oldest, .. } if lane.from_earliest && oldest > lane.last + 1 => {
                // Earliest means "whatever is retained": start at the oldest retained
                // event. With nothing of this lane waiting to be handed out, the cursor
                // moves too, so that it does not point at what was never retained.
                if lane.delivered == lane.last {
                    lane.delivered = oldest - 1;
                }
                lane.last = oldest - 1;
                Paged::Again
            }
            Since::Gap { head, .. } => {
                lane.last = head;
                lane.catch_up = CatchUp::Done;
                lane.from_earliest = false;
                lane.fresh = true;
                Paged::Lost(lane.channel.clone())
            }
        }
    }
}

/// What a page of history did to its lane.
enum Paged {
    /// Queued; the lane pages on or is live.
    Done,
    /// History no longer covers the lane's position: it continues from the head.
    Lost(Channel),
    /// The lane moved to the oldest retained event and must read again.
    Again,
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
        for lane in std::mem::take(&mut self.lanes) {
            let channel = lane.channel.clone();
            drop(lane);
            self.hub.dispatch.release(&channel, &*self.hub.backplane);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor())
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish()
    }
}
