//! The replay→live seam as a state machine without I/O (the shape of quinn-proto): it is fed
//! the answers of the backplane and what the live queues held, and answers what to do next.
//!
//! Each channel of a subscription is a *lane* that remembers the last offset it queued. The
//! driver ([`Subscription`](crate::Subscription)) joins a channel's live broadcast *before*
//! reading its history, so an event published while history is read is either in what was read
//! or in the broadcast (or both): events at or below the lane's offset are dropped as
//! duplicates, and an event that skips ahead means something was missed, which the lane
//! re-reads from history. The same rule covers a backplane that reconnected, a history that
//! was lost (a new epoch), and a subscriber that fell a whole live queue behind: it reads
//! history from its own position and rejoins the live stream when caught up.
//!
//! Nothing here waits, locks or reads a clock: the same inputs give the same answers, so the
//! seam is tested by feeding it every interleaving of history pages and live events
//! (`seam/tests.rs`).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use crate::backplane::{ChannelHead, Read, ReadFrom};
use crate::changes::Changes;
use crate::cursor::{Cursor, Start};
use crate::error::Error;
use crate::event::{Epoch, Event};
use crate::history::Since;
use crate::name::Channel;
use crate::subscription::{Delivery, Joined};

/// What the driver must do next ([`Seam::poll`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Hand this to the caller.
    Deliver(Delivery),
    /// Read a page of lane `lane`'s history after `after` and give the answer to
    /// [`Seam::on_page`]. With `rejoin`, renew the lane's live receiver first, before awaiting
    /// anything: whatever the old receiver held or missed is in what is read next.
    Read {
        lane: usize,
        channel: Channel,
        after: u64,
        rejoin: bool,
    },
    /// Nothing is queued and every lane is live: take what the live queues hold (and give it
    /// to [`Seam::on_live`]), or wait for it.
    Live,
    /// The subscription ended.
    End,
}

/// What a lane's live queue gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next live event of the channel.
    Event(Arc<Event>),
    /// Joins and leaves of the channel's presence: passed on as they come.
    Presence(Arc<Changes>),
    /// The backplane may have missed events: re-read history.
    CatchUp,
    /// The queue overflowed: events were dropped from it.
    Lagged,
    /// The queue's sender is gone.
    Closed,
}

/// A delivery waiting in the subscription, with what it moves the cursor to.
#[derive(Clone, Debug)]
enum Queued {
    Event(Arc<Event>),
    /// Channels that lost continuity, each with the offset it continues after in `epoch`.
    Resync {
        epoch: Epoch,
        moved: Vec<(Channel, u64)>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Delivering from the live queue.
    Live,
    /// Must renew its live receiver, then read history after `last`.
    Behind,
    /// Reading history page by page.
    Paging,
}

#[derive(Clone, Debug)]
struct Lane {
    channel: Channel,
    /// Last offset queued for delivery.
    last: u64,
    /// Last offset handed to the caller: what the cursor reports.
    delivered: u64,
    state: State,
    /// Replaying from the oldest retained event: a gap at the start is not a loss.
    from_earliest: bool,
}

/// The lanes an add is joining, until [`Seam::end_add`].
#[derive(Clone, Debug)]
struct Joining {
    lanes: Range<usize>,
    start: Start,
    asked: Vec<ReadFrom>,
    /// Channels whose position could not be honoured.
    resynced: Vec<Channel>,
    /// Lanes whose first page is still to be read, with the reads they have left.
    unread: Vec<(usize, u8)>,
}

/// How many times an add reads a lane's first page: an `earliest` lane that finds the start of
/// history trimmed reads again at once, so that the page the add returns with already holds
/// the retained events (`try_next` takes only what is in memory). Bounded, in case publishes
/// keep trimming history under the reads; paging continues after the add.
const JOIN_READS: u8 = 3;

/// The I/O-free state of a subscription. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Seam {
    lanes: Vec<Lane>,
    /// The epoch of the history being read: a page or event of another means history was
    /// lost.
    epoch: Option<Epoch>,
    /// The epoch of what was handed out: the cursor's. It moves to a new epoch only with the
    /// resync that tells the caller, so a cursor taken before that still gets the resync when
    /// it is sent back.
    handed: Epoch,
    pending: VecDeque<Queued>,
    ended: bool,
    joining: Option<Joining>,
}

/// What a page of history did to its lane.
enum Paged {
    /// Queued; the lane pages on or is live.
    Done,
    /// History no longer covers the lane's position: it continues from the head.
    Lost,
    /// The lane moved to the oldest retained event and must read again.
    Again,
}

impl Default for Seam {
    fn default() -> Self {
        Seam {
            lanes: Vec::new(),
            epoch: None,
            handed: Epoch(0),
            pending: VecDeque::new(),
            ended: false,
            joining: None,
        }
    }
}

impl Seam {
    /// The channels, in the order they were added.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.lanes.iter().map(|l| &l.channel)
    }

    /// How many deliveries wait to be handed out.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the subscription ended.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// The position after everything handed out.
    pub(crate) fn cursor(&self) -> Cursor {
        let mut c = Cursor::new(self.handed);
        for lane in &self.lanes {
            c.set(lane.channel.clone(), lane.delivered);
        }
        c
    }

    /// Starts adding `channels` (sorted, none held yet) from `start`: their lanes are in place
    /// from now on, and the answer says what [`Backplane::join`](crate::Backplane::join) must
    /// be asked, whose answers go to [`Seam::on_join`].
    pub(crate) fn begin_add(
        &mut self,
        channels: Vec<Channel>,
        start: Start,
    ) -> Vec<(Channel, ReadFrom)> {
        let first = self.lanes.len();
        // Exactly as many as needed: most subscriptions hold one channel for hours.
        self.lanes.reserve_exact(channels.len());
        let mut asked = Vec::with_capacity(channels.len());
        for channel in channels {
            let from = match &start {
                Start::Live => ReadFrom::Nothing,
                Start::Earliest => ReadFrom::Earliest,
                // A channel new to this cursor starts live.
                Start::Cursor(c) => c
                    .offset(&channel)
                    .map_or(ReadFrom::Nothing, ReadFrom::After),
            };
            asked.push((channel.clone(), from));
            self.lanes.push(Lane {
                channel,
                last: 0,
                delivered: 0,
                state: State::Live,
                from_earliest: false,
            });
        }
        self.joining = Some(Joining {
            lanes: first..self.lanes.len(),
            start,
            asked: asked.iter().map(|(_, from)| *from).collect(),
            resynced: Vec::new(),
            unread: Vec::new(),
        });
        asked
    }

    /// Applies the backplane's answers (one per channel, in the order asked) to the lanes
    /// being added. Their first pages are queued where the answers carry them; the others are
    /// asked for by [`Seam::join_read`].
    pub(crate) fn on_join(&mut self, answers: Vec<ChannelHead>) -> Result<(), Error> {
        let Some(mut joining) = self.joining.take() else {
            return Ok(());
        };
        if answers.len() != joining.asked.len() {
            let e = Error::Unavailable(format!(
                "the backplane answered {} of {} channels joined",
                answers.len(),
                joining.asked.len()
            ));
            self.joining = Some(joining);
            return Err(e);
        }
        let cursor_epoch = match &joining.start {
            Start::Cursor(c) => Some(c.epoch()),
            Start::Live | Start::Earliest => None,
        };
        let mut pages = Vec::with_capacity(answers.len());
        for (k, (from, answer)) in joining.asked.iter().zip(answers).enumerate() {
            self.observe_epoch(answer.epoch);
            let lane = &mut self.lanes[joining.lanes.start + k];
            match *from {
                ReadFrom::Nothing => lane.last = answer.head,
                ReadFrom::Earliest => {
                    lane.last = answer.after;
                    lane.state = State::Paging;
                    lane.from_earliest = true;
                }
                ReadFrom::After(offset)
                    if cursor_epoch == Some(answer.epoch) && offset <= answer.head =>
                {
                    lane.last = offset;
                    lane.state = State::Paging;
                }
                ReadFrom::After(_) => {
                    lane.last = answer.head;
                    joining.resynced.push(lane.channel.clone());
                }
            }
            pages.push((answer.epoch, answer.page));
        }
        for lane in &mut self.lanes[joining.lanes.clone()] {
            lane.delivered = lane.last;
        }
        // The first page decides whether history still covers each cursor.
        for (k, (epoch, page)) in pages.into_iter().enumerate() {
            let i = joining.lanes.start + k;
            if self.lanes[i].state != State::Paging {
                continue;
            }
            match page {
                Some(since) if Some(epoch) == self.epoch => match self.apply_page(i, since) {
                    Paged::Done => {}
                    Paged::Lost => joining.resynced.push(self.lanes[i].channel.clone()),
                    // History was trimmed under an `earliest` join: rare, read on.
                    Paged::Again => joining.unread.push((i, JOIN_READS)),
                },
                // Not read with the head, or the epoch changed since: read it now.
                _ => joining.unread.push((i, JOIN_READS)),
            }
        }
        self.joining = Some(joining);
        Ok(())
    }

    /// During an add, after [`Seam::on_join`]: the lane whose first page must be read now,
    /// and after which offset; its answer goes to [`Seam::on_page`].
    pub(crate) fn join_read(&mut self) -> Option<(usize, Channel, u64)> {
        let joining = self.joining.as_mut()?;
        let lanes = &self.lanes;
        joining
            .unread
            .retain(|&(i, left)| left > 0 && lanes[i].state == State::Paging);
        let (i, left) = joining.unread.first_mut()?;
        *left -= 1;
        let lane = &self.lanes[*i];
        Some((*i, lane.channel.clone(), lane.last))
    }

    /// Ends an add: the channels whose position could not be honoured are queued as one
    /// [`Delivery::Resync`] and returned.
    pub(crate) fn end_add(&mut self) -> Joined {
        let Some(joining) = self.joining.take() else {
            return Joined::default();
        };
        if !joining.resynced.is_empty() {
            let moved = self.lanes[joining.lanes]
                .iter()
                .filter(|l| joining.resynced.contains(&l.channel))
                .map(|l| (l.channel.clone(), l.last))
                .collect();
            self.queue_resync(moved);
        }
        Joined {
            resynced: joining.resynced,
        }
    }

    /// Undoes an add that failed: its lanes, and whatever they queued, are gone. Returns the
    /// range of lane indices removed.
    pub(crate) fn abort_add(&mut self) -> Range<usize> {
        let Some(joining) = self.joining.take() else {
            return 0..0;
        };
        let gone: Vec<Channel> = self
            .lanes
            .drain(joining.lanes.clone())
            .map(|l| l.channel)
            .collect();
        self.pending
            .retain(|q| !matches!(q, Queued::Event(e) if gone.contains(e.channel())));
        joining.lanes
    }

    /// Drops `channel`; returns the index its lane had.
    pub(crate) fn remove(&mut self, channel: &Channel) -> Option<usize> {
        let i = self.lanes.iter().position(|l| &l.channel == channel)?;
        self.lanes.remove(i);
        self.pending
            .retain(|q| !matches!(q, Queued::Event(e) if e.channel() == channel));
        Some(i)
    }

    /// What to do next: hand out what is queued, read history for a lane that is behind, or
    /// take from the live queues.
    pub(crate) fn poll(&mut self) -> Action {
        if let Some(q) = self.pending.pop_front() {
            return Action::Deliver(self.hand_out(q));
        }
        if self.ended || self.lanes.is_empty() {
            return Action::End;
        }
        if let Some(i) = self.lanes.iter().position(|l| l.state != State::Live) {
            let lane = &mut self.lanes[i];
            let rejoin = lane.state == State::Behind;
            lane.state = State::Paging;
            return Action::Read {
                lane: i,
                channel: lane.channel.clone(),
                after: lane.last,
                rejoin,
            };
        }
        Action::Live
    }

    /// What lane `i`'s live queue gave, taken after [`Action::Live`]. An event that is the
    /// lane's next is returned to be handed out at once (nothing is queued while the live
    /// queues are read); otherwise ask [`Seam::poll`] again.
    pub(crate) fn on_live(&mut self, i: usize, arrival: Arrival) -> Option<Delivery> {
        match arrival {
            Arrival::Event(event) => {
                if Some(event.epoch()) != self.epoch {
                    self.observe_epoch(event.epoch());
                    return None;
                }
                let lane = &mut self.lanes[i];
                if event.offset() <= lane.last {
                    return None;
                }
                if event.offset() != lane.last + 1 {
                    lane.state = State::Behind;
                    return None;
                }
                lane.last = event.offset();
                lane.delivered = event.offset();
                self.handed = event.epoch();
                Some(Delivery::Event(event))
            }
            // A lagging lane catches up in place: it reads history from its own position
            // and rejoins the live stream when it reaches the end. Only history that no
            // longer covers the position costs a resync.
            Arrival::Presence(changes) => Some(Delivery::Presence(changes)),
            Arrival::CatchUp | Arrival::Lagged => {
                self.lanes[i].state = State::Behind;
                None
            }
            Arrival::Closed => {
                self.ended = true;
                None
            }
        }
    }

    /// A page of lane `i`'s history, read after the offset [`Action::Read`] (or
    /// [`Seam::join_read`]) named.
    pub(crate) fn on_page(&mut self, i: usize, read: Read) {
        if Some(read.epoch) != self.epoch {
            self.observe_epoch(read.epoch);
            return;
        }
        let paged = self.apply_page(i, read.since);
        let lane = &self.lanes[i];
        // A first page read during an add settles its lane there; later ones are on their own.
        let joining = self
            .joining
            .as_mut()
            .filter(|j| j.unread.iter().any(|&(k, _)| k == i));
        match (paged, joining) {
            (Paged::Again, _) => {}
            (Paged::Done, None) => {}
            (Paged::Done, Some(j)) => j.unread.retain(|&(k, _)| k != i),
            (Paged::Lost, Some(j)) => {
                j.unread.retain(|&(k, _)| k != i);
                j.resynced.push(lane.channel.clone());
            }
            (Paged::Lost, None) => {
                let moved = vec![(lane.channel.clone(), lane.last)];
                self.queue_resync(moved);
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
                self.handed = event.epoch();
                Delivery::Event(event)
            }
            Queued::Resync { epoch, moved } => {
                self.handed = epoch;
                let mut channels = Vec::with_capacity(moved.len());
                for (channel, offset) in moved {
                    if let Some(lane) = self.lanes.iter_mut().find(|l| l.channel == channel) {
                        lane.delivered = offset;
                    }
                    channels.push(channel);
                }
                Delivery::Resync { channels }
            }
        }
    }

    /// History was lost and restarted as `epoch`: every lane replays the new incarnation from
    /// its start, after telling the client about the hole.
    fn observe_epoch(&mut self, epoch: Epoch) {
        match self.epoch {
            None => {
                self.epoch = Some(epoch);
                self.handed = epoch;
            }
            Some(current) if current == epoch => {}
            Some(_) => {
                self.epoch = Some(epoch);
                let mut channels = Vec::new();
                for lane in &mut self.lanes {
                    lane.last = 0;
                    lane.state = State::Behind;
                    // The resync sets where the lane is: a later gap is a loss.
                    lane.from_earliest = false;
                    channels.push((lane.channel.clone(), 0));
                }
                self.queue_resync(channels);
            }
        }
    }

    fn queue_resync(&mut self, moved: Vec<(Channel, u64)>) {
        // Only queued once an epoch was seen: pages and events carry one.
        let epoch = self.epoch.unwrap_or(self.handed);
        self.pending.push_back(Queued::Resync { epoch, moved });
    }

    /// Queues a page of lane `i`'s history, read after the lane's `last`.
    fn apply_page(&mut self, i: usize, since: Since) -> Paged {
        let lane = &mut self.lanes[i];
        match since {
            Since::Events { events, more } => {
                // Once something is queued, the start is set: a later gap is a loss.
                lane.from_earliest &= events.is_empty();
                for event in events {
                    if event.offset() == lane.last + 1 {
                        lane.last = event.offset();
                        self.pending.push_back(Queued::Event(event));
                    }
                }
                if !more {
                    lane.state = State::Live;
                    lane.from_earliest = false;
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
                lane.state = State::Live;
                lane.from_earliest = false;
                Paged::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests;
