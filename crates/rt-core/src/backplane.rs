//! The seam between the hub and where events are ordered and stored.
//!
//! A [`Backplane`] assigns positions, keeps history and delivers live events of the channels
//! the hub watches to the hub's [`Sink`]. [`MemoryBackplane`](crate::MemoryBackplane) is the
//! embedded default; `rt-backplane` implements the same trait on Redis so that several nodes
//! share one stream per channel.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Error;
use crate::event::{Epoch, Event, Payload};
use crate::history::Since;
use crate::name::Channel;
use crate::name::EventName;
use crate::presence::Presence;
use crate::signal::Signal;

/// An event to publish, before it has a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Target channel.
    pub channel: Channel,
    /// Event name.
    pub name: EventName,
    /// Payload.
    pub payload: Payload,
    /// Client message id: a publish repeated with the same id on the same channel within the
    /// idempotency window is not published again; the first publish's position is returned.
    pub idempotency_key: Option<MessageId>,
}

impl NewEvent {
    /// A `message` event with no idempotency key.
    pub fn new(channel: Channel, payload: Payload) -> Self {
        NewEvent {
            channel,
            name: EventName::message(),
            payload,
            idempotency_key: None,
        }
    }
}

/// A client message id used as an idempotency key: 1 to 128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// Validates a client message id.
    pub fn new(id: &str) -> Result<Self, Error> {
        if id.is_empty() {
            return Err(Error::InvalidMessageId("it is empty"));
        }
        if id.len() > 128 {
            return Err(Error::InvalidMessageId("it is longer than 128 bytes"));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidMessageId(
                "it contains a character that is not printable ASCII",
            ));
        }
        Ok(MessageId(id.into()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The result of a publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The stored event (for a duplicate: the event the first publish stored).
    pub event: Arc<Event>,
    /// True when the idempotency key had been seen and nothing new was published.
    pub duplicate: bool,
}

/// A page of history with the epoch it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The backplane's current epoch.
    pub epoch: Epoch,
    /// The events after the requested offset, or a gap.
    pub since: Since,
}

/// Where [`Backplane::join`] starts a channel's first page of history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// No history: only the head is wanted (the channel starts live).
    Nothing,
    /// The oldest retained event, wherever history now begins.
    Earliest,
    /// The event after this offset (of the backplane's current epoch).
    After(u64),
}

/// One channel's answer to [`Backplane::join`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelHead {
    /// The backplane's current epoch.
    pub epoch: Epoch,
    /// The channel's latest offset.
    pub head: u64,
    /// The offset `page` follows: the one asked for with [`ReadFrom::After`]; with
    /// [`ReadFrom::Earliest`] the one before the oldest retained event (the head when none is
    /// retained); with [`ReadFrom::Nothing`] the head.
    pub after: u64,
    /// What [`Backplane::read`] after `after` would answer, in `epoch`. `None` for
    /// [`ReadFrom::Nothing`], or when the backplane could not read it consistently with `epoch`;
    /// the caller then reads it itself.
    pub page: Option<Since>,
}

/// Whether the backplane can serve requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Fully working.
    Up,
    /// Not working now (publishes fail); the reason is for operators.
    Degraded(String),
}

/// Where the hub receives live events. Implemented by the hub; called by backplanes.
pub trait Sink: Send + Sync + 'static {
    /// A live event of a watched channel, in offset order per channel.
    fn deliver(&self, event: Arc<Event>);

    /// The backplane may have missed live events of `channel` (e.g. it reconnected):
    /// subscribers must re-read history from their last offset.
    fn catch_up(&self, channel: &Channel);

    /// A [`Signal`] sent by some node (this one included) with [`Backplane::signal`].
    ///
    /// The default ignores it, for sinks that only want events.
    fn signal(&self, signal: Signal) {
        let _ = signal;
    }
}

/// Orders, stores and distributes events. See the module docs.
///
/// # Calls from the hub
///
/// The hub never calls a backplane method while it holds one of its own locks, so a backplane
/// may call the [`Sink`] from any context: from any thread or task, from inside any of its own
/// methods, and while holding its own locks (delivering under the lock that orders publishes
/// is how a backplane keeps each channel's live order equal to its offset order).
///
/// Per channel, the hub calls `unwatch` only once the channel's last local subscriber left,
/// and a `watch` that follows an `unwatch` of the same channel starts only after that
/// `unwatch` returned: a backplane that applies them in the order it is called ends up
/// delivering every channel that has subscribers.
#[async_trait]
pub trait Backplane: Send + Sync + fmt::Debug + 'static {
    /// Connects the hub. Called once, before any other method.
    fn attach(&self, sink: Arc<dyn Sink>);

    /// Assigns the next position of the event's channel, stores it in history and delivers it
    /// to every node watching the channel. Fails fast with [`Error::Unavailable`] when the
    /// event cannot be stored; an `Ok` means it is stored.
    async fn publish(&self, event: NewEvent) -> Result<Published, Error>;

    /// How many publishes of one client may be in flight at once, so that a client that
    /// publishes fast is not held to one round trip per publish.
    ///
    /// More than 1 only for a backplane that stores concurrent publishes in the order their
    /// futures were first polled (e.g. each sends its command on one ordered connection
    /// before its first `Pending`): callers start a client's publishes in the order it sent
    /// them and answer them in that order, and rely on this to keep the client's order. The
    /// default, 1, makes each publish wait for the previous one.
    fn publish_pipeline(&self) -> usize {
        1
    }

    /// Up to `limit` events of `channel` after offset `after`.
    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error>;

    /// The current epoch and the channel's latest offset.
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error>;

    /// For each channel, its head and the first page of its history from where asked (at most
    /// `limit` events per channel): what a subscription needs to join the channels it just
    /// watched. One answer per channel, in the order asked.
    ///
    /// The default asks [`head`](Self::head) and [`read`](Self::read) channel by channel. A
    /// backplane behind a network should answer all channels in one round trip: a client
    /// resuming a hundred channels would otherwise wait for hundreds of them.
    async fn join(
        &self,
        channels: &[(Channel, ReadFrom)],
        limit: usize,
    ) -> Result<Vec<ChannelHead>, Error> {
        let mut answers = Vec::with_capacity(channels.len());
        for (channel, from) in channels {
            let (epoch, head) = self.head(channel).await?;
            let (after, read) = match *from {
                ReadFrom::Nothing => (head, None),
                ReadFrom::After(after) => (after, Some(self.read(channel, after, limit).await?)),
                ReadFrom::Earliest => match self.read(channel, 0, limit).await? {
                    // History starts later than offset 1: read from where it starts.
                    Read {
                        since: Since::Gap { oldest, .. },
                        ..
                    } if oldest > 1 => {
                        let after = oldest - 1;
                        (after, Some(self.read(channel, after, limit).await?))
                    }
                    read => (0, Some(read)),
                },
            };
            answers.push(ChannelHead {
                epoch,
                head,
                after,
                page: read.filter(|r| r.epoch == epoch).map(|r| r.since),
            });
        }
        Ok(answers)
    }

    /// Starts live delivery of `channel` to the sink. When this returns, every event published
    /// afterwards will be delivered. Called once per channel that gains local subscribers.
    async fn watch(&self, channel: &Channel) -> Result<(), Error>;

    /// Stops live delivery of `channel` (its last local subscriber left).
    fn unwatch(&self, channel: &Channel);

    /// Current health.
    fn health(&self) -> Health;

    /// Sends `signal` to the [`Sink`] of every node, this one included. Not stored and not
    /// replayed: a node cut off from the backplane meanwhile misses it. `Ok` means it was
    /// handed to the backplane, not that any node received it.
    ///
    /// The default fails with [`Error::Unavailable`]: a backplane must opt in to carrying
    /// signals.
    async fn signal(&self, signal: Signal) -> Result<(), Error> {
        let _ = signal;
        Err(Error::Unavailable(format!(
            "the backplane {self:?} does not carry signals between nodes"
        )))
    }

    /// The backplane's presence and channel registry, shared by its nodes; `None` (the
    /// default) for a backplane without them.
    fn presence(&self) -> Option<&dyn Presence> {
        None
    }
}
