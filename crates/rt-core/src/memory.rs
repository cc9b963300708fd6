//! The embedded, single-node backplane.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::backplane::{
    Backplane, ChannelHead, Health, MessageId, NewEvent, Published, Read, ReadFrom, Sink,
};
use crate::error::Error;
use crate::event::{now_ms, Epoch, Event, Position};
use crate::history::{History, Retention};
use crate::name::Channel;
use crate::presence::{LocalPresence, Presence};
use crate::signal::Signal;

/// Keeps history in this process. Its epoch is drawn at construction, so a restarted server
/// tells resuming clients that their cursors can no longer be honoured.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rt_core::{Hub, HubConfig, MemoryBackplane, Retention};
///
/// let backplane = MemoryBackplane::new(Retention::default());
/// let hub = Hub::new(Arc::new(backplane), HubConfig::default());
/// # drop(hub);
/// ```
pub struct MemoryBackplane {
    epoch: Epoch,
    retention: Retention,
    idempotency_window: Duration,
    state: Mutex<State>,
    sink: OnceLock<Arc<dyn Sink>>,
    presence: LocalPresence,
}

#[derive(Default)]
struct State {
    channels: HashMap<Channel, History>,
    seen: HashMap<(Channel, MessageId), Arc<Event>>,
    /// Keys of `seen` in expiry order.
    expiry: VecDeque<(u64, Channel, MessageId)>,
}

/// Upper bound on remembered message ids, so a flood of unique ids cannot exhaust memory.
const MAX_REMEMBERED_IDS: usize = 100_000;

impl MemoryBackplane {
    /// A backplane with the given retention and a 2-minute idempotency window.
    pub fn new(retention: Retention) -> Self {
        MemoryBackplane {
            epoch: Epoch::random(),
            retention,
            idempotency_window: Duration::from_secs(120),
            state: Mutex::new(State::default()),
            sink: OnceLock::new(),
            presence: LocalPresence::default(),
        }
    }

    /// Sets how long a client message id is remembered.
    pub fn with_idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// This backplane's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than stopping every publish would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackplane")
            .field("epoch", &self.epoch)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl State {
    fn forget_expired(&mut self, now: u64) {
        while let Some((at, _, _)) = self.expiry.front() {
            if *at > now && self.expiry.len() <= MAX_REMEMBERED_IDS {
                break;
            }
            if let Some((_, c, id)) = self.expiry.pop_front() {
                self.seen.remove(&(c, id));
            }
        }
    }
}

/// Keeps the retained-events gauge in step with a history that went from `before` to `after`.
fn retained_changed(before: usize, after: usize) {
    let gauge = metrics::gauge!(crate::telemetry::names::HISTORY_EVENTS);
    if after >= before {
        gauge.increment((after - before) as f64);
    } else {
        gauge.decrement((before - after) as f64);
    }
}

#[async_trait]
impl Backplane for MemoryBackplane {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, new: NewEvent) -> Result<Published, Error> {
        let now = now_ms();
        let mut state = self.state();
        state.forget_expired(now);
        if let Some(id) = &new.idempotency_key {
            if let Some(event) = state.seen.get(&(new.channel.clone(), id.clone())) {
                return Ok(Published {
                    event: event.clone(),
                    duplicate: true,
                });
            }
        }
        let history = state.channels.entry(new.channel.clone()).or_default();
        let event = Arc::new(Event::new(
            new.channel.clone(),
            Position {
                epoch: self.epoch,
                offset: history.next_offset(),
            },
            new.name,
            new.payload,
            now,
        ));
        let before = history.len();
        history.push(event.clone(), self.retention, now);
        retained_changed(before, history.len());
        if let Some(id) = new.idempotency_key {
            let window = u64::try_from(self.idempotency_window.as_millis()).unwrap_or(u64::MAX);
            state
                .expiry
                .push_back((now.saturating_add(window), new.channel.clone(), id.clone()));
            state.seen.insert((new.channel, id), event.clone());
        }
        // Delivering under the lock keeps every channel's live order equal to its offset order.
        if let Some(sink) = self.sink.get() {
            sink.deliver(event.clone());
        }
        Ok(Published {
            event,
            duplicate: false,
        })
    }

    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        let mut state = self.state();
        let since = match state.channels.get_mut(channel) {
            Some(h) => {
                let before = h.len();
                h.prune(self.retention, now_ms());
                retained_changed(before, h.len());
                h.since(after, limit)
            }
            None => History::new().since(after, limit),
        };
        Ok(Read {
            epoch: self.epoch,
            since,
        })
    }

    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        let head = self.state().channels.get(channel).map_or(0, History::head);
        Ok((self.epoch, head))
    }

    async fn join(
        &self,
        channels: &[(Channel, ReadFrom)],
        limit: usize,
    ) -> Result<Vec<ChannelHead>, Error> {
        let now = now_ms();
        let empty = History::new();
        // One lock for every channel: each head and its page belong together.
        let mut state = self.state();
        let mut answers = Vec::with_capacity(channels.len());
        for (channel, from) in channels {
            let history = match state.channels.get_mut(channel) {
                Some(h) => {
                    let before = h.len();
                    h.prune(self.retention, now);
                    retained_changed(before, h.len());
                    &*h
                }
                None => &empty,
            };
            answers.push(history.join(self.epoch, *from, limit));
        }
        Ok(answers)
    }

    async fn watch(&self, _channel: &Channel) -> Result<(), Error> {
        // Every publish goes to the sink already.
        Ok(())
    }

    fn unwatch(&self, _channel: &Channel) {}

    fn health(&self) -> Health {
        Health::Up
    }

    /// This process is the only node: the signal goes straight to the hub.
    async fn signal(&self, signal: Signal) -> Result<(), Error> {
        if let Some(sink) = self.sink.get() {
            sink.signal(signal);
        }
        Ok(())
    }

    fn presence(&self) -> Option<&dyn Presence> {
        Some(&self.presence)
    }
}
