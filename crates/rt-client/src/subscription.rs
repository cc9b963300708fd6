//! The application's side of a subscription: a `Stream` of updates, its cursor, publishing.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use rt_core::{Channel, Cursor, Start};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Config;
use crate::cursor::Tracker;
use crate::error::Error;
use crate::event::{Message, PublishAck, Update};
use crate::publish::{self, Link};

/// What the connection task hands the subscription, in order.
#[derive(Debug)]
pub(crate) enum Item {
    Update(Update),
    /// A position the server reported (`replace`: it could not recover, its position wins).
    /// It moves the subscription's cursor without being an event: a channel that started live
    /// resumes from where it started.
    Position(Cursor, bool),
}

/// A live subscription: a [`Stream`] of [`Update`]s that reconnects by itself, resuming from
/// its cursor, until it is dropped.
///
/// Every event is yielded once, in offset order per channel, across reconnects and
/// transport switches, as long as the server's history covers the gaps; when it does not, an
/// [`Update::Resync`] names the channels that skipped events.
pub struct Subscription {
    rx: mpsc::Receiver<Item>,
    task: JoinHandle<()>,
    channels: Vec<Channel>,
    /// Shared with the connection task, which adds what the server joins.
    joined: Arc<Mutex<Vec<Channel>>>,
    consumed: Tracker,
    publisher: Publisher,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channels", &self.channels)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::Receiver<Item>,
        task: JoinHandle<()>,
        channels: Vec<Channel>,
        joined: Arc<Mutex<Vec<Channel>>>,
        start: Start,
        publisher: Publisher,
    ) -> Self {
        let consumed = match start {
            Start::Cursor(c) => Tracker::new(Some(c)),
            Start::Live | Start::Earliest => Tracker::default(),
        };
        Subscription {
            rx,
            task,
            channels,
            joined,
            consumed,
            publisher,
        }
    }

    /// The cursor of what this stream has yielded so far: save it, and resume from it later
    /// with [`Client::cursor`](crate::Client::cursor) to get exactly the events after it.
    /// `None` until the server told a position. It covers the channels the server joined
    /// ([`Subscription::joined`]) too.
    pub fn cursor(&self) -> Option<String> {
        let mut held = self.channels.clone();
        held.extend(self.joined());
        self.consumed.resume(&held).map(|c| c.to_string())
    }

    /// The channels the server joined this subscription to beyond its own (a connect hook's
    /// `channels`, `--proxy-connect`), as far as the connections so far told them. Their
    /// events are yielded like those of the subscription's own channels.
    pub fn joined(&self) -> Vec<Channel> {
        self.joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes over this subscription's WebSocket when it has one open, else over HTTP;
    /// see [`Client::publish`](crate::Client::publish).
    pub async fn publish(&self, message: Message) -> Result<PublishAck, Error> {
        self.publisher.publish(message).await
    }

    /// A handle that publishes like [`Subscription::publish`] from other tasks.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }
}

impl Stream for Subscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        loop {
            match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Item::Position(cursor, replace)) => self.consumed.adopt(&cursor, replace),
                Some(Item::Update(update)) => {
                    if let Update::Event(e) = &update {
                        self.consumed.accept(&e.channel, e.epoch, e.offset);
                    }
                    return Poll::Ready(Some(update));
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes for a [`Subscription`] (over its WebSocket when open) from any task; it keeps
/// working over HTTP after the subscription is dropped.
#[derive(Clone)]
pub struct Publisher {
    config: Arc<Config>,
    link: Option<Arc<Link>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.config.endpoints.client_publish)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(config: Arc<Config>, link: Option<Arc<Link>>) -> Self {
        Publisher { config, link }
    }

    /// See [`Subscription::publish`].
    pub async fn publish(&self, message: Message) -> Result<PublishAck, Error> {
        publish::publish(&self.config, self.link.as_deref(), message).await
    }
}
