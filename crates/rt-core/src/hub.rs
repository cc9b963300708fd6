//! The hub: publishing, and fanning out live events to local subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{broadcast, mpsc, watch, OnceCell};

use crate::auth::{ChannelPattern, Permissions};
use crate::backplane::{Backplane, ChannelHead, Health, NewEvent, Published, ReadFrom, Sink};
use crate::changes::{self, Change, Changes};
use crate::cursor::Start;
use crate::error::Error;
use crate::event::Event;
use crate::name::Channel;
use crate::presence::{
    ChannelsPage, Member, MembersPage, Membership, Presence, PresenceChanges, PresenceStats,
};
use crate::signal::{Signal, SubjectSignals};
use crate::subscription::Subscription;

/// Tuning of a [`Hub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// How many live events a subscription may fall behind before it leaves the live stream
    /// to catch up from history.
    pub queue_capacity: usize,
    /// Most channels one subscription may hold.
    pub max_channels: usize,
    /// How many history events are read per round trip while replaying.
    pub page_size: usize,
    /// Largest payload accepted by [`Hub::publish`], in bytes.
    pub max_payload: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_capacity: 1024,
            max_channels: 100,
            page_size: 256,
            max_payload: 64 * 1024,
        }
    }
}

/// How many join/leave batches a [`PresenceChanges`] may fall behind before it misses some.
const PRESENCE_QUEUE: usize = 1024;

/// How many signals about subjects a [`SubjectSignals`] may fall behind before it misses some.
const SIGNAL_QUEUE: usize = 1024;

/// What travels on a channel's local broadcast.
#[derive(Clone, Debug)]
pub(crate) enum Live {
    Event(Arc<Event>),
    /// The backplane may have missed events: re-read history.
    CatchUp,
    /// Joins and leaves of the channel's presence.
    Presence(Arc<Changes>),
}

/// A channel with local subscribers.
struct Local {
    tx: broadcast::Sender<Live>,
    /// Set once the backplane delivers this channel live; joiners wait for it.
    watched: Arc<Watched>,
    /// An unwatch of this channel is on its way to the backplane (see [`Dispatch::release`]).
    unwatching: bool,
}

/// Whether a channel is watched on the backplane, once per channel that gains subscribers.
pub(crate) struct Watched {
    done: OnceCell<()>,
    /// Closes once the unwatch that preceded this watch has reached the backplane. Watching
    /// before that could let the late unwatch undo it while the channel has subscribers.
    after: Option<watch::Receiver<()>>,
}

impl Watched {
    fn new(after: Option<watch::Receiver<()>>) -> Arc<Self> {
        Arc::new(Watched {
            done: OnceCell::new(),
            after,
        })
    }

    /// Watches `channel` unless that is done already; every joiner waits for it.
    pub(crate) async fn ensure(
        &self,
        backplane: &dyn Backplane,
        channel: &Channel,
    ) -> Result<(), Error> {
        self.done
            .get_or_try_init(|| async {
                if let Some(after) = &self.after {
                    // Nothing is ever sent: this returns once the unwatch's sender is dropped.
                    let _ = after.clone().changed().await;
                }
                backplane.watch(channel).await
            })
            .await
            .map(|_| ())
    }
}

/// A channel being unwatched: finishes the job when dropped, even if `unwatch` panicked.
struct Unwatching<'a> {
    dispatch: &'a Dispatch,
    channel: &'a Channel,
    /// Dropped last, to let re-joiners watch again.
    _done: watch::Sender<()>,
}

impl Drop for Unwatching<'_> {
    fn drop(&mut self) {
        let mut map = self.dispatch.channels();
        if let Some(local) = map.get_mut(self.channel) {
            local.unwatching = false;
            // Re-joiners during the unwatch keep the entry and watch it again; otherwise it
            // goes, together with every release that deferred to this one.
            if local.tx.receiver_count() == 0 {
                map.remove(self.channel);
            }
        }
    }
}

/// Where a subscription of a subject receives the signals about that subject.
type Listener = (u64, mpsc::UnboundedSender<Signal>);

/// The local fan-out table, shared with the backplane as its [`Sink`].
pub(crate) struct Dispatch {
    channels: Mutex<HashMap<Channel, Local>>,
    capacity: usize,
    /// The local subscriptions of each subject (the token's `sub`), for signals about them.
    subjects: Mutex<HashMap<Arc<str>, Vec<Listener>>>,
    next_listener: AtomicU64,
    /// Every join/leave batch this node hears, for [`Hub::presence_changes`].
    presence: broadcast::Sender<Arc<Changes>>,
    /// Every signal about a subject this node hears, for [`Hub::subject_signals`].
    about_subjects: broadcast::Sender<Signal>,
}

/// A subscription's place in [`Dispatch`]'s subject index; leaves it when dropped.
pub(crate) struct Listening {
    dispatch: Arc<Dispatch>,
    subject: Arc<str>,
    id: u64,
    pub(crate) signals: mpsc::UnboundedReceiver<Signal>,
}

impl Listening {
    /// The subject listened for.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut subjects = self.dispatch.subjects();
        if let Some(listeners) = subjects.get_mut(&self.subject) {
            listeners.retain(|(id, _)| *id != self.id);
            if listeners.is_empty() {
                subjects.remove(&self.subject);
            }
        }
    }
}

impl Dispatch {
    fn channels(&self) -> MutexGuard<'_, HashMap<Channel, Local>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subjects(&self) -> MutexGuard<'_, HashMap<Arc<str>, Vec<Listener>>> {
        self.subjects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a subscription of `subject` in the subject index.
    pub(crate) fn listen(self: &Arc<Self>, subject: &str) -> Listening {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        let (tx, signals) = mpsc::unbounded_channel();
        let subject: Arc<str> = subject.into();
        self.subjects()
            .entry(subject.clone())
            .or_default()
            .push((id, tx));
        Listening {
            dispatch: self.clone(),
            subject,
            id,
            signals,
        }
    }

    /// Joins `channel`'s broadcast, creating it if needed.
    pub(crate) fn join(&self, channel: &Channel) -> (broadcast::Receiver<Live>, Arc<Watched>) {
        let mut map = self.channels();
        let local = map.entry(channel.clone()).or_insert_with(|| Local {
            tx: broadcast::channel(self.capacity).0,
            watched: Watched::new(None),
            unwatching: false,
        });
        (local.tx.subscribe(), local.watched.clone())
    }

    /// Called after a subscription dropped its receiver of `channel`: forgets the channel when
    /// nobody is left, so idle channels cost nothing.
    ///
    /// The backplane is called without the lock held (see [`Backplane`]'s docs), so the entry
    /// stays, marked, until `unwatch` has returned: whoever joins meanwhile gets a fresh
    /// [`Watched`] that waits for the unwatch before watching again, so the backplane sees
    /// unwatch then watch, never the reverse. One unwatch at a time per channel: a release
    /// during it leaves the decision to the unwatch in progress.
    pub(crate) fn release(&self, channel: &Channel, backplane: &dyn Backplane) {
        let unwatching = {
            let mut map = self.channels();
            let Some(local) = map.get_mut(channel) else {
                return;
            };
            if local.unwatching || local.tx.receiver_count() > 0 {
                return;
            }
            let (done, pending) = watch::channel(());
            local.unwatching = true;
            local.watched = Watched::new(Some(pending));
            Unwatching {
                dispatch: self,
                channel,
                _done: done,
            }
        };
        backplane.unwatch(channel);
        drop(unwatching);
    }

    fn send(&self, channel: &Channel, live: Live) {
        if let Some(local) = self.channels().get(channel) {
            // An error only means that every receiver is gone; release() removes the entry.
            let _ = local.tx.send(live);
        }
    }
}

impl Sink for Dispatch {
    fn deliver(&self, event: Arc<Event>) {
        let channel = event.channel().clone();
        self.send(&channel, Live::Event(event));
    }

    fn catch_up(&self, channel: &Channel) {
        self.send(channel, Live::CatchUp);
    }

    /// Hands join and leave events to the local subscribers of their channel, and a signal
    /// about a subject to each of its local subscriptions, which act on it when next polled (see [`Subscription::next`]). Only queues: no backplane call and no
    /// wait, as the [`Sink`] contract asks.
    fn signal(&self, signal: Signal) {
        let subject = match signal {
            Signal::Presence(changes) => {
                let channel = changes.channel.clone();
                let changes = Arc::new(changes);
                // An error only means that nobody listens to every channel's changes.
                let _ = self.presence.send(changes.clone());
                return self.send(&channel, Live::Presence(changes));
            }
            Signal::Disconnect { ref subject, .. } | Signal::Unsubscribe { ref subject, .. } => {
                subject.clone()
            }
        };
        // An error only means that nobody listens to every subject's signals.
        let _ = self.about_subjects.send(signal.clone());
        if let Some(listeners) = self.subjects().get(subject.as_str()) {
            for (_, tx) in listeners {
                // An error only means the subscription is being dropped.
                let _ = tx.send(signal.clone());
            }
        }
    }
}

pub(crate) struct Inner {
    /// Flips to true once when the server starts shutting down.
    closing: tokio::sync::watch::Sender<bool>,
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) dispatch: Arc<Dispatch>,
    pub(crate) config: HubConfig,
    pub(crate) subscriptions: AtomicUsize,
    /// The channels whose members are kept in the backplane's presence.
    pub(crate) presence: OnceLock<Arc<[ChannelPattern]>>,
    /// Where this node's joins and leaves of presence channels go to be gathered and sent.
    pub(crate) changes: OnceLock<mpsc::UnboundedSender<Change>>,
}

impl Inner {
    /// Tells the backplane's presence that a holder (a subscription or a [`Membership`])
    /// gained (`joined`) or lost `channel`: its subscriber count, and where presence is
    /// enabled, `member`'s entry and the join/leave events.
    pub(crate) fn present(&self, channel: &Channel, joined: bool, member: Option<&Member>) {
        let Some(presence) = self.backplane.presence() else {
            return;
        };
        presence.count(channel, if joined { 1 } else { -1 });
        let Some(member) = member.filter(|_| self.presence_enabled(channel)) else {
            return;
        };
        if joined {
            presence.join(channel, member);
        } else {
            presence.leave(channel, member);
        }
        if let Some(changes) = self.changes.get() {
            // An error only means the hub is being dropped.
            let _ = changes.send((channel.clone(), joined, member.clone()));
        }
    }

    /// Whether `channel`'s subscriptions join its presence.
    pub(crate) fn presence_enabled(&self, channel: &Channel) -> bool {
        self.presence
            .get()
            .is_some_and(|patterns| patterns.iter().any(|p| p.matches(channel)))
    }
}

/// Publishes events and hands out [`Subscription`]s. Cheap to clone; every transport of a
/// server shares one hub.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rt_core::{Channel, Delivery, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention, Start};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rt_core::Error> {
/// let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
/// let news = Channel::new("news")?;
/// let mut sub = hub.subscribe([news.clone()], Start::Live).await?;
/// hub.publish(NewEvent::new(news, Payload::text("hello"))).await?;
/// match sub.next().await {
///     Some(Delivery::Event(e)) => assert_eq!(e.offset(), 1),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A snapshot of the hub's local load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubStats {
    /// Channels with at least one local subscription.
    pub channels: usize,
    /// Open subscriptions (each WS connection, SSE stream or held poll has one).
    pub subscriptions: usize,
}

impl Hub {
    /// A hub over `backplane`.
    pub fn new(backplane: Arc<dyn Backplane>, config: HubConfig) -> Self {
        let dispatch = Arc::new(Dispatch {
            channels: Mutex::new(HashMap::new()),
            capacity: config.queue_capacity.max(1),
            subjects: Mutex::new(HashMap::new()),
            next_listener: AtomicU64::new(0),
            presence: broadcast::channel(PRESENCE_QUEUE).0,
            about_subjects: broadcast::channel(SIGNAL_QUEUE).0,
        });
        backplane.attach(dispatch.clone());
        Hub {
            inner: Arc::new(Inner {
                closing: tokio::sync::watch::Sender::new(false),
                backplane,
                dispatch,
                config,
                subscriptions: AtomicUsize::new(0),
                presence: OnceLock::new(),
                changes: OnceLock::new(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Publishes an event: checks the payload size, then lets the backplane assign its
    /// position, store it and fan it out. `Ok` means the event is stored.
    pub async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        use crate::telemetry::names;
        let max = self.inner.config.max_payload;
        if event.payload.len() > max {
            let e = Error::PayloadTooLarge {
                size: event.payload.len(),
                max,
            };
            metrics::counter!(names::PUBLISHES, "result" => e.code()).increment(1);
            return Err(e);
        }
        let started = std::time::Instant::now();
        let published = self.inner.backplane.publish(event).await;
        metrics::histogram!(names::PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
        let result = match &published {
            Ok(p) if p.duplicate => "duplicate",
            Ok(_) => "stored",
            // Counted as errors where they are answered (HTTP or WebSocket), not here too.
            Err(e) => e.code(),
        };
        metrics::counter!(names::PUBLISHES, "result" => result).increment(1);
        published
    }

    /// How many of one client's publishes may be in flight at once, started in the order the
    /// client sent them (see [`Backplane::publish_pipeline`]); at least 1.
    pub fn publish_pipeline(&self) -> usize {
        self.inner.backplane.publish_pipeline().max(1)
    }

    /// [`publish`](Self::publish) on behalf of a client holding `permissions`: a channel
    /// outside them is refused with [`Error::Unauthorized`], [`Error::Forbidden`] or
    /// [`Error::TokenExpired`].
    pub async fn publish_as(
        &self,
        permissions: &Permissions,
        event: NewEvent,
    ) -> Result<Published, Error> {
        permissions.check_publish(&event.channel)?;
        self.publish(event).await
    }

    /// Subscribes to `channels` from `start`: the subscription first yields the retained events
    /// after the start (if any), then live events, each exactly once and in offset order per
    /// channel.
    pub async fn subscribe(
        &self,
        channels: impl IntoIterator<Item = Channel>,
        start: Start,
    ) -> Result<Subscription, Error> {
        let mut sub = self.empty_subscription();
        let channels: Vec<Channel> = channels.into_iter().collect();
        if channels.is_empty() {
            return Err(Error::NoChannels);
        }
        sub.add(channels, start).await?;
        Ok(sub)
    }

    /// [`subscribe`](Self::subscribe) on behalf of a client holding `permissions` (see
    /// [`Subscription::set_permissions`]).
    pub async fn subscribe_as(
        &self,
        permissions: &Permissions,
        channels: impl IntoIterator<Item = Channel>,
        start: Start,
    ) -> Result<Subscription, Error> {
        let channels: Vec<Channel> = channels.into_iter().collect();
        if channels.is_empty() {
            return Err(Error::NoChannels);
        }
        let mut sub = self
            .empty_subscription()
            .with_permissions(permissions.clone());
        sub.add(channels, start).await?;
        Ok(sub)
    }

    /// A subscription to nothing yet; add channels with [`Subscription::add`].
    pub fn empty_subscription(&self) -> Subscription {
        Subscription::new(self.inner.clone())
    }

    /// Starts a graceful shutdown: every transport watching [`Hub::closing`] ends its
    /// connections in its own way (WebSocket close 1001, SSE stream end with a `retry:` hint,
    /// held polls answered with their cursor).
    pub fn begin_shutdown(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Whether [`Hub::begin_shutdown`] was called.
    pub fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    /// Resolves once [`Hub::begin_shutdown`] has been called (at once if it already was).
    /// Cancel-safe.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.closing.subscribe();
        async move {
            // An error means the hub is gone, which is a shutdown too.
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// The backplane's health.
    pub fn health(&self) -> Health {
        self.inner.backplane.health()
    }

    /// A channel's head and up to `limit` of its retained events from `from`, read from the
    /// backplane without subscribing: what an application backend reads through a server API.
    pub async fn history(
        &self,
        channel: &Channel,
        from: ReadFrom,
        limit: usize,
    ) -> Result<ChannelHead, Error> {
        let backplane = &self.inner.backplane;
        let mut answer = backplane
            .join(&[(channel.clone(), from)], limit)
            .await?
            .pop()
            .ok_or_else(|| Error::Unavailable("the backplane answered for no channel".into()))?;
        if answer.page.is_none() && from != ReadFrom::Nothing {
            let read = backplane.read(channel, answer.after, limit).await?;
            if read.epoch != answer.epoch {
                let message = "the backplane's epoch changed while reading; retry";
                return Err(Error::Unavailable(message.into()));
            }
            answer.page = Some(read.since);
        }
        Ok(answer)
    }

    /// Sends `signal` to every node through the backplane (this node included); see
    /// [`Backplane::signal`] for what `Ok` means. Each node hands a
    /// [`Disconnect`](Signal::Disconnect) or [`Unsubscribe`](Signal::Unsubscribe) to the local
    /// subscriptions of its subject (those whose [`Permissions`] name it), which yield
    /// [`Delivery::Disconnected`](crate::Delivery::Disconnected) or
    /// [`Delivery::Unsubscribed`](crate::Delivery::Unsubscribed).
    pub async fn signal(&self, signal: crate::signal::Signal) -> Result<(), Error> {
        self.inner.backplane.signal(signal).await
    }

    /// Keeps presence for the channels matching `patterns`: from now on, each subscription to
    /// one of them joins its presence, on every node of the backplane, until it leaves, and
    /// the subscribers of such a channel get its joins and leaves as
    /// [`Delivery::Presence`](crate::Delivery::Presence), gathered by each node for
    /// 100 ms. Must be called inside a Tokio runtime (the
    /// gathering is a task). [`Error::Unsupported`] when the backplane keeps no presence or
    /// presence was enabled already (every node of a deployment should be given the same
    /// patterns).
    pub fn enable_presence(
        &self,
        patterns: impl IntoIterator<Item = ChannelPattern>,
    ) -> Result<(), Error> {
        if self.inner.backplane.presence().is_none() {
            return Err(Error::Unsupported(format!(
                "presence: the backplane ({:?}) does not keep it",
                self.inner.backplane
            )));
        }
        self.inner
            .presence
            .set(patterns.into_iter().collect())
            .map_err(|_| Error::Unsupported("presence can be enabled only once".into()))?;
        let _ = self
            .inner
            .changes
            .set(changes::start(self.inner.backplane.clone()));
        Ok(())
    }

    /// Whether subscriptions to `channel` join its presence.
    pub fn presence_enabled(&self, channel: &Channel) -> bool {
        self.inner.presence_enabled(channel)
    }

    /// A membership in presence held apart from any subscription, for a transport whose
    /// client outlives each of its requests (polling): one [`Member`] (a fresh client id,
    /// and the subject and info of `permissions`) that joins and leaves channels as
    /// [`Membership::hold`] says, and leaves them all when dropped. Pair it with subscriptions
    /// made [`without_presence`](crate::Subscription::without_presence).
    pub fn membership(&self, permissions: Option<&Permissions>) -> Membership {
        Membership::new(self.inner.clone(), Member::new(permissions))
    }

    /// Every join/leave batch this node hears from now on, of every channel (its own and other
    /// nodes'), for a transport that hands them to clients between their requests. Nothing
    /// is checked here: the caller filters by channel and permission.
    pub fn presence_changes(&self) -> PresenceChanges {
        PresenceChanges::new(self.inner.dispatch.presence.subscribe())
    }

    /// Every [`Disconnect`](Signal::Disconnect) and [`Unsubscribe`](Signal::Unsubscribe) this
    /// node hears from now on, whatever its subject, for a transport whose clients outlive
    /// their requests (polling) and must hear them between two requests too. The local
    /// subscriptions of the subject get them as well, as usual.
    pub fn subject_signals(&self) -> SubjectSignals {
        SubjectSignals::new(self.inner.dispatch.about_subjects.subscribe())
    }

    /// The backplane's presence, for a channel where it is enabled.
    fn presence_of(&self, channel: &Channel) -> Result<&dyn Presence, Error> {
        if !self.presence_enabled(channel) {
            return Err(Error::PresenceDisabled(channel.to_string()));
        }
        self.registry()
    }

    fn registry(&self) -> Result<&dyn Presence, Error> {
        self.inner.backplane.presence().ok_or_else(|| {
            Error::Unsupported("the backplane keeps no presence or channel registry".into())
        })
    }

    /// Up to `limit` of `channel`'s members (one per connection, on every node) after the
    /// client id `after`. [`Error::PresenceDisabled`] unless presence is enabled for it.
    pub async fn presence(
        &self,
        channel: &Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Error> {
        self.presence_of(channel)?
            .members(channel, after, limit)
            .await
    }

    /// `channel`'s presence counts, read without listing members.
    pub async fn presence_stats(&self, channel: &Channel) -> Result<PresenceStats, Error> {
        self.presence_of(channel)?.stats(channel).await
    }

    /// Up to `limit` channels with subscribers on any node, matching `pattern`, in name order
    /// after `after`, each with its number of subscriptions.
    pub async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error> {
        self.registry()?.channels(pattern, after, limit).await
    }

    /// Current local load.
    pub fn stats(&self) -> HubStats {
        HubStats {
            channels: self.inner.dispatch.channels().len(),
            subscriptions: self.inner.subscriptions.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("backplane", &self.inner.backplane)
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}
