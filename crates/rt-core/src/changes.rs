//! Join and leave events: each node gathers its local joins and leaves of presence channels
//! for a short window and sends them to every node as a few [`Signal::Presence`], so that a
//! reconnect storm of thousands of clients is a handful of messages, not one per client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::backplane::Backplane;
use crate::name::Channel;
use crate::presence::Member;
use crate::signal::Signal;

/// How long a node gathers joins and leaves before sending them.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);
/// The most joins plus leaves one [`Changes`] carries; a larger gathering is split.
pub(crate) const MAX_BATCH: usize = 500;

/// Who joined and who left a channel's presence on one node during one gathering window
/// (100 ms).
///
/// # Examples
///
/// ```
/// use rt_core::{Changes, Channel, Signal};
///
/// let c = Changes { channel: Channel::new("chat").unwrap(), joins: vec![], leaves: vec![] };
/// let s = Signal::Presence(c);
/// assert_eq!(Signal::decode(&s.encode()).unwrap(), s);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The channel whose presence changed.
    pub channel: Channel,
    /// Connections that subscribed to it, oldest first.
    #[serde(default)]
    pub joins: Vec<Member>,
    /// Connections that left it, oldest first.
    #[serde(default)]
    pub leaves: Vec<Member>,
}

impl Changes {
    fn new(channel: Channel) -> Self {
        Changes {
            channel,
            joins: Vec::new(),
            leaves: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.joins.len() + self.leaves.len()
    }
}

/// One local join (`true`) or leave of a channel.
pub(crate) type Change = (Channel, bool, Member);

/// Starts the task that gathers this node's changes and sends them through `backplane`; it
/// ends when the returned sender (and its clones) are dropped.
pub(crate) fn start(backplane: Arc<dyn Backplane>) -> mpsc::UnboundedSender<Change> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(gather(backplane, rx));
    tx
}

async fn gather(backplane: Arc<dyn Backplane>, mut rx: mpsc::UnboundedReceiver<Change>) {
    while let Some(first) = rx.recv().await {
        let mut gathered: HashMap<Channel, Vec<Changes>> = HashMap::new();
        let mut add = |(channel, joined, member): Change| {
            let batches = gathered.entry(channel.clone()).or_default();
            if batches.last().is_none_or(|b| b.len() >= MAX_BATCH) {
                batches.push(Changes::new(channel));
            }
            if let Some(b) = batches.last_mut() {
                if joined { &mut b.joins } else { &mut b.leaves }.push(member);
            }
        };
        add(first);
        let window = tokio::time::sleep(WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                () = &mut window => break,
                change = rx.recv() => match change {
                    Some(c) => add(c),
                    None => break,
                },
            }
        }
        for changes in gathered.into_values().flatten() {
            if let Err(e) = backplane.signal(Signal::Presence(changes)).await {
                // Best effort, like every signal: the members themselves are in presence.
                tracing::debug!(error = %e, "join/leave events not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelPattern, Delivery, Hub, HubConfig, MemoryBackplane, Retention, Start};

    #[tokio::test]
    async fn a_burst_of_joins_reaches_subscribers_as_a_few_batches() {
        let hub = Hub::new(
            Arc::new(MemoryBackplane::new(Retention::default())),
            HubConfig::default(),
        );
        hub.enable_presence([ChannelPattern::new("room:*").unwrap()])
            .unwrap();
        let room = Channel::new("room:1").unwrap();
        let mut watcher = hub.subscribe([room.clone()], Start::Live).await.unwrap();
        let mut crowd = Vec::new();
        for _ in 0..1200 {
            crowd.push(hub.subscribe([room.clone()], Start::Live).await.unwrap());
        }
        // The watcher's own join, then the crowd's: 1,201 joins in at most 500 per batch.
        let (mut joins, mut batches) = (0, 0);
        while joins < 1201 {
            match watcher.next().await {
                Some(Delivery::Presence(c)) => {
                    assert_eq!(c.channel, room);
                    assert!(c.joins.len() <= MAX_BATCH && c.leaves.is_empty());
                    joins += c.joins.len();
                    batches += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(batches <= 30, "{batches} batches");
        drop(crowd);
        let mut leaves = 0;
        while leaves < 1200 {
            if let Some(Delivery::Presence(c)) = watcher.next().await {
                leaves += c.leaves.len();
            }
        }
    }
}
