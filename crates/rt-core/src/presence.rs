//! Presence (who is subscribed to a channel, on every node) and the registry of active
//! channels.
//!
//! A backplane that can share them across nodes offers a [`Presence`] through
//! [`Backplane::presence`](crate::Backplane::presence). The hub reports to it: every
//! subscription that gains or loses a channel changes the channel's subscriber count
//! ([`Presence::count`]), and on channels where presence is enabled
//! ([`Hub::enable_presence`](crate::Hub::enable_presence)) it also joins or leaves the channel
//! as one [`Member`] per connection. Reads never list more than a page: counts come from
//! counters, members and channels from cursors.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::auth::{ChannelPattern, Permissions};
use crate::changes::Changes;
use crate::error::Error;
use crate::hub::Inner;
use crate::name::Channel;

/// One connection's entry in a channel's presence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The connection's id, unique across nodes (16 hex digits).
    pub client: String,
    /// Who the connection's token was issued to (`sub`), if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What the token's `info` claim says about the client, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl Member {
    /// A new connection's entry: a fresh id, and the subject and info of `permissions`.
    pub fn new(permissions: Option<&Permissions>) -> Self {
        Member {
            client: client_id(),
            subject: permissions.and_then(|p| p.subject()).map(str::to_owned),
            info: permissions.and_then(|p| p.info()).cloned(),
        }
    }

    /// Whether `s` is shaped like a client id (a members cursor): 1 to 32 hex digits.
    pub fn is_client_id(s: &str) -> bool {
        (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// A fresh connection id: 16 hex digits, distinct across threads and nodes.
fn client_id() -> String {
    use std::hash::BuildHasher;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS per process, so two nodes draw different ids.
    let v = std::collections::hash_map::RandomState::new().hash_one((n, crate::event::now_ms()));
    format!("{v:016x}")
}

/// A page of a channel's members, in client id order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MembersPage {
    /// Up to the limit asked.
    pub members: Vec<Member>,
    /// Where the next page starts (pass it as `after`), or `None` after the last page.
    pub next: Option<String>,
}

/// A channel's presence counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct PresenceStats {
    /// Connections subscribed to the channel, on every node.
    pub connections: u64,
    /// Distinct subjects among them (connections without a subject are not counted).
    pub subjects: u64,
}

/// An active channel and how many subscriptions hold it, on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelCount {
    /// The channel.
    pub channel: Channel,
    /// Subscriptions holding it.
    pub subscribers: u64,
}

/// A page of active channels, in name order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChannelsPage {
    /// Up to the limit asked.
    pub channels: Vec<ChannelCount>,
    /// Where the next page starts (pass it as `after`), or `None` after the last page.
    pub next: Option<Channel>,
}

/// Presence and the channel registry, shared by every node of a backplane.
///
/// Writes ([`join`](Self::join), [`leave`](Self::leave), [`count`](Self::count)) do not wait:
/// a backplane behind a network queues and batches them, so reads see them a moment later.
/// A node that dies stops refreshing its entries, and they expire.
#[async_trait]
pub trait Presence: Send + Sync {
    /// `member` subscribed to `channel` on this node.
    fn join(&self, channel: &Channel, member: &Member);

    /// `member` (as given to [`join`](Self::join)) left `channel` on this node.
    fn leave(&self, channel: &Channel, member: &Member);

    /// This node's number of subscriptions to `channel` changed by `delta`.
    fn count(&self, channel: &Channel, delta: i64);

    /// Up to `limit` members of `channel` whose client id is after `after`.
    async fn members(
        &self,
        channel: &Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Error>;

    /// `channel`'s counts, without listing its members.
    async fn stats(&self, channel: &Channel) -> Result<PresenceStats, Error>;

    /// Up to `limit` active channels matching `pattern` whose name is after `after`.
    async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error>;
}

/// One client's membership in presence, held apart from any subscription: made by
/// [`Hub::membership`](crate::Hub::membership) for a transport whose client outlives each of
/// its requests (a polling client is one member across its polls). It counts in the channel
/// registry for every channel it holds and, where presence is enabled, joins it as its
/// [`Member`]; dropping it leaves them all.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rt_core::{Channel, ChannelPattern, Hub, HubConfig, MemoryBackplane, Retention};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rt_core::Error> {
/// let hub = Hub::new(Arc::new(MemoryBackplane::new(Retention::default())), HubConfig::default());
/// hub.enable_presence([ChannelPattern::new("room:*")?])?;
/// let room = Channel::new("room:1")?;
/// let mut membership = hub.membership(None);
/// membership.hold(&[room.clone()]);
/// assert_eq!(hub.presence_stats(&room).await?.connections, 1);
/// drop(membership);
/// assert_eq!(hub.presence_stats(&room).await?.connections, 0);
/// # Ok(())
/// # }
/// ```
pub struct Membership {
    hub: Arc<Inner>,
    member: Member,
    channels: Vec<Channel>,
}

impl Membership {
    pub(crate) fn new(hub: Arc<Inner>, member: Member) -> Self {
        Membership {
            hub,
            member,
            channels: Vec::new(),
        }
    }

    /// The member this membership joins channels as.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The channels held, in the order they were first held.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Holds exactly `channels` from now on: joins those not held yet, leaves those held that
    /// are not in `channels`.
    pub fn hold(&mut self, channels: &[Channel]) {
        let gone: Vec<Channel> = self
            .channels
            .iter()
            .filter(|c| !channels.contains(c))
            .cloned()
            .collect();
        for channel in gone {
            self.leave(&channel);
        }
        for channel in channels {
            if !self.channels.contains(channel) {
                self.channels.push(channel.clone());
                self.hub.present(channel, true, Some(&self.member));
            }
        }
    }

    /// Leaves `channel` if it is held.
    pub fn leave(&mut self, channel: &Channel) {
        if let Some(i) = self.channels.iter().position(|c| c == channel) {
            self.channels.remove(i);
            self.hub.present(channel, false, Some(&self.member));
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for channel in std::mem::take(&mut self.channels) {
            self.hub.present(&channel, false, Some(&self.member));
        }
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("member", &self.member)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Every join/leave batch a node hears, of every channel: made by
/// [`Hub::presence_changes`](crate::Hub::presence_changes).
#[derive(Debug)]
pub struct PresenceChanges {
    rx: broadcast::Receiver<Arc<Changes>>,
}

impl PresenceChanges {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<Changes>>) -> Self {
        PresenceChanges { rx }
    }

    /// The next batch; `Err(n)` when this reader fell so far behind that `n` batches were
    /// dropped for it (it goes on with the oldest one still queued); `None` once the hub is
    /// gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Arc<Changes>, u64>> {
        match self.rx.recv().await {
            Ok(changes) => Some(Ok(changes)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Presence kept in this process: the [`MemoryBackplane`](crate::MemoryBackplane)'s.
#[derive(Default)]
pub(crate) struct LocalPresence {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    members: HashMap<Channel, BTreeMap<String, Member>>,
    /// Connections per subject, per channel.
    subjects: HashMap<Channel, HashMap<String, u64>>,
    subscribers: BTreeMap<Channel, u64>,
}

impl LocalPresence {
    fn state(&self) -> MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Presence for LocalPresence {
    fn join(&self, channel: &Channel, member: &Member) {
        let mut state = self.state();
        let members = state.members.entry(channel.clone()).or_default();
        if members
            .insert(member.client.clone(), member.clone())
            .is_none()
        {
            if let Some(subject) = &member.subject {
                let subjects = state.subjects.entry(channel.clone()).or_default();
                *subjects.entry(subject.clone()).or_default() += 1;
            }
        }
    }

    fn leave(&self, channel: &Channel, member: &Member) {
        let mut state = self.state();
        let Some(members) = state.members.get_mut(channel) else {
            return;
        };
        if members.remove(&member.client).is_none() {
            return;
        }
        if members.is_empty() {
            state.members.remove(channel);
        }
        let Some(subject) = &member.subject else {
            return;
        };
        if let Some(subjects) = state.subjects.get_mut(channel) {
            if let Some(n) = subjects.get_mut(subject) {
                *n -= 1;
                if *n == 0 {
                    subjects.remove(subject);
                }
            }
            if subjects.is_empty() {
                state.subjects.remove(channel);
            }
        }
    }

    fn count(&self, channel: &Channel, delta: i64) {
        let mut state = self.state();
        let n = state.subscribers.entry(channel.clone()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            state.subscribers.remove(channel);
        }
    }

    async fn members(
        &self,
        channel: &Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Error> {
        let state = self.state();
        let Some(members) = state.members.get(channel) else {
            return Ok(MembersPage::default());
        };
        let from = match after {
            Some(after) => std::ops::Bound::Excluded(after.to_owned()),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = members.range((from, std::ops::Bound::Unbounded));
        let members: Vec<Member> = page.by_ref().take(limit).map(|(_, m)| m.clone()).collect();
        let next = match (page.next(), members.last()) {
            (Some(_), Some(last)) => Some(last.client.clone()),
            _ => None,
        };
        Ok(MembersPage { members, next })
    }

    async fn stats(&self, channel: &Channel) -> Result<PresenceStats, Error> {
        let state = self.state();
        let count = |n: Option<usize>| n.unwrap_or(0) as u64;
        Ok(PresenceStats {
            connections: count(state.members.get(channel).map(BTreeMap::len)),
            subjects: count(state.subjects.get(channel).map(HashMap::len)),
        })
    }

    async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error> {
        let state = self.state();
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after.clone()),
            None => match Channel::new(pattern.prefix()) {
                Ok(prefix) => std::ops::Bound::Included(prefix),
                // `*` alone: every channel.
                Err(_) => std::ops::Bound::Unbounded,
            },
        };
        // The map is ordered by name, so the channels with the prefix are one run.
        let mut run = state
            .subscribers
            .range((start, std::ops::Bound::Unbounded))
            .skip_while(|(c, _)| c.as_str() < pattern.prefix())
            .take_while(|(c, _)| c.as_str().starts_with(pattern.prefix()))
            .filter(|(c, _)| pattern.matches(c));
        let channels: Vec<ChannelCount> = run
            .by_ref()
            .take(limit)
            .map(|(c, n)| ChannelCount {
                channel: c.clone(),
                subscribers: *n,
            })
            .collect();
        let next = match (run.next(), channels.last()) {
            (Some(_), Some(last)) => Some(last.channel.clone()),
            _ => None,
        };
        Ok(ChannelsPage { channels, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Channel {
        Channel::new(s).unwrap()
    }

    fn member(client: &str, subject: Option<&str>) -> Member {
        Member {
            client: client.into(),
            subject: subject.map(Into::into),
            info: None,
        }
    }

    #[tokio::test]
    async fn counts_pages_and_forgets() {
        let p = LocalPresence::default();
        let c = ch("chat:a");
        for (id, subject) in [("03", Some("u")), ("01", Some("u")), ("02", None)] {
            p.join(&c, &member(id, subject));
        }
        p.join(&c, &member("01", Some("u")));
        let stats = p.stats(&c).await.unwrap();
        assert_eq!((stats.connections, stats.subjects), (3, 1));
        let first = p.members(&c, None, 2).await.unwrap();
        let ids: Vec<_> = first.members.iter().map(|m| m.client.as_str()).collect();
        assert_eq!((ids, first.next.as_deref()), (vec!["01", "02"], Some("02")));
        let rest = p.members(&c, first.next.as_deref(), 2).await.unwrap();
        assert_eq!((rest.members.len(), rest.next), (1, None));
        for id in ["01", "03"] {
            p.leave(&c, &member(id, Some("u")));
        }
        let stats = p.stats(&c).await.unwrap();
        assert_eq!((stats.connections, stats.subjects), (1, 0));
    }

    #[tokio::test]
    async fn channel_pages_follow_the_pattern() {
        let p = LocalPresence::default();
        for name in ["a", "chat:1", "chat:2", "chat:3", "chats", "d"] {
            p.count(&ch(name), 2);
        }
        p.count(&ch("chat:2"), -2);
        let pattern: ChannelPattern = "chat:*".parse().unwrap();
        let first = p.channels(&pattern, None, 1).await.unwrap();
        assert_eq!(first.channels[0].channel, ch("chat:1"));
        let rest = p.channels(&pattern, first.next.as_ref(), 5).await.unwrap();
        let names: Vec<_> = rest.channels.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!((names, rest.next), (vec!["chat:3"], None));
        let all = p.channels(&ChannelPattern::any(), None, 10).await.unwrap();
        assert_eq!(all.channels.len(), 5);
        let exact = p.channels(&"d".parse().unwrap(), None, 10).await.unwrap();
        assert_eq!(exact.channels[0].subscribers, 2);
    }
}
