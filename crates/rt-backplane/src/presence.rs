//! [`RedisPresence`]: rt-core's [`Presence`] on Redis and Redis Cluster, one set of keys per
//! node that expire unless the node's heartbeat refreshes them. The layout is in
//! `presence.lua`'s header.
//!
//! Every key carries a hash tag (a channel's keys share the channel's, a node's registry of
//! channels has the node's, the registry of nodes its own), and every script call touches one
//! slot: the writer groups its writes by slot, one call per slot, all in flight at once. On
//! one Redis, where slots do not matter, a batch is one call: the same code, one group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use redis::cluster_routing::Slot;
use rt_core::{
    Channel, ChannelCount, ChannelPattern, ChannelsPage, Epoch, Error, Member, MembersPage,
    Presence, PresenceStats,
};
use tokio::sync::mpsc;

use crate::backplane::{malformed, number, run};
use crate::link::Shared;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("presence.lua")));

/// Ops taken from the queue per batch, and writes sent in one script call at most (a
/// reconnect storm of 10,000 joins on one channel goes in 20 calls).
const MAX_OPS: usize = 512;

/// How long the writer lets joins and leaves gather after the first one: the joins of a
/// reconnect storm arrive over milliseconds, and writing each as it comes would cost one
/// script call per few clients (the history reads of that storm are shared, and this keeps
/// them the larger cost). A read sees a join this much later at most, plus the write.
const LINGER: Duration = Duration::from_millis(20);

/// What the hub reported, on its way to the node's writer task.
enum Op {
    Join(Channel, Member),
    Leave(Channel, Member),
    Count(Channel, i64),
}

impl Op {
    fn channel(&self) -> &Channel {
        match self {
            Op::Join(c, _) | Op::Leave(c, _) | Op::Count(c, _) => c,
        }
    }
}

/// Whose keys a write touches, which decides its hash slot.
enum Place {
    /// A channel's presence (`P:{CH}:p:...`).
    Channel(Channel),
    /// The node's registry of channels (`P:{n:NODE}:...`).
    Node,
    /// The registry of nodes (`P:{nodes}`).
    Nodes,
}

/// One op of the script's `write` mode: where it writes, and its arguments.
struct Write {
    place: Place,
    args: Vec<String>,
}

impl Write {
    fn new(place: Place, args: &[&str]) -> Self {
        Write {
            place,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// `op CH ...` on `channel`'s presence.
    fn channel(channel: &Channel, op: &str, rest: &[&str]) -> Self {
        let mut args = vec![op, channel.as_str()];
        args.extend_from_slice(rest);
        Write::new(Place::Channel(channel.clone()), &args)
    }

    /// The node's count of `channel`'s subscriptions, `n`.
    fn count(channel: &Channel, n: i64) -> Self {
        Write::new(Place::Node, &["c", channel.as_str(), &n.to_string()])
    }
}

/// The node's presence and channel registry in Redis.
pub(crate) struct RedisPresence {
    keys: Arc<Keys>,
    ops: mpsc::UnboundedSender<Op>,
}

/// The node's names of things in Redis, and how to call the script.
struct Keys {
    shared: Arc<Shared>,
    node: String,
    ttl: Duration,
}

impl Keys {
    /// A key of the slot `place`'s keys are in (it routes the call on a cluster).
    fn key(&self, place: &Place) -> String {
        let p = &self.shared.prefix;
        match place {
            Place::Channel(channel) => format!("{p}:{{{channel}}}:p:nodes"),
            Place::Node => self.node_key(&self.node),
            Place::Nodes => format!("{p}:{{nodes}}"),
        }
    }

    /// A key of `node`'s registry of channels.
    fn node_key(&self, node: &str) -> String {
        format!("{}:{{n:{node}}}:ch", self.shared.prefix)
    }

    /// A call of the script in `mode`, routed by `key`.
    fn call(&self, mode: &str, key: String) -> redis::ScriptInvocation<'static> {
        let mut call = SCRIPT.prepare_invoke();
        call.key(key)
            .arg(&self.shared.prefix)
            .arg(mode)
            .arg(&self.node)
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        call
    }

    /// Sends `writes`: on a cluster grouped by hash slot, one group per slot (on one Redis,
    /// one group), each group in order in calls of up to [`MAX_OPS`] writes, the groups at
    /// once (writes of different slots touch different keys, so their order does not
    /// matter). Whether Redis had lost some of the node's state (see `presence.lua`); `Err`
    /// when a call failed.
    async fn send(&self, writes: Vec<Write>) -> Result<bool, Error> {
        let mut groups: HashMap<Option<Slot>, (String, Vec<Write>)> = HashMap::new();
        for write in writes {
            let key = self.key(&write.place);
            let slot = self.shared.cluster.then(|| Slot::for_key(&key));
            groups
                .entry(slot)
                .or_insert_with(|| (key, Vec::new()))
                .1
                .push(write);
        }
        let sent = join_all(groups.into_values().map(|(key, writes)| async move {
            let mut lost = false;
            for chunk in writes.chunks(MAX_OPS) {
                let mut call = self.call("write", key.clone());
                for write in chunk {
                    call.arg(&write.args);
                }
                let reply = run(&self.shared, call).await?;
                lost |= reply.first().is_some_and(|f| f == b"1");
            }
            Ok::<_, Error>(lost)
        }))
        .await;
        sent.into_iter()
            .try_fold(false, |lost, group| Ok(lost | group?))
    }
}

impl RedisPresence {
    /// Starts the node's writer task (it ends when this is dropped).
    pub(crate) fn start(shared: Arc<Shared>, ttl: Duration) -> Self {
        let keys = Arc::new(Keys {
            shared,
            node: Epoch::random().to_string(),
            ttl,
        });
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(write(keys.clone(), queue));
        RedisPresence { keys, ops }
    }
}

/// How a member is stored: its client id first, so that entries sort by it.
fn entry(member: &Member) -> String {
    let json = serde_json::to_string(member).unwrap_or_default();
    format!("{}\t{json}", member.client)
}

/// What this node has told Redis, to tell it again after Redis lost it.
#[derive(Default)]
struct Local {
    counts: HashMap<Channel, i64>,
    /// Per channel: client id -> (entry, subject).
    members: HashMap<Channel, HashMap<String, (String, String)>>,
}

impl Local {
    /// Applies `op`, adding its write to `writes` (counts are added once per batch, by
    /// [`Local::counts`]).
    fn apply(&mut self, op: Op, writes: &mut Vec<Write>, dirty: &mut BTreeSet<Channel>) {
        match op {
            Op::Count(channel, delta) => {
                *self.counts.entry(channel.clone()).or_default() += delta;
                dirty.insert(channel);
            }
            Op::Join(channel, member) => {
                let (entry, subject) = (entry(&member), member.subject.unwrap_or_default());
                writes.push(Write::channel(&channel, "j", &[&entry, &subject]));
                let members = self.members.entry(channel).or_default();
                members.insert(member.client, (entry, subject));
            }
            Op::Leave(channel, member) => {
                let Some(members) = self.members.get_mut(&channel) else {
                    return;
                };
                let Some((entry, subject)) = members.remove(&member.client) else {
                    return;
                };
                if members.is_empty() {
                    self.members.remove(&channel);
                }
                writes.push(Write::channel(&channel, "l", &[&entry, &subject]));
            }
        }
    }

    /// The counts of the `dirty` channels, as they now are.
    fn counts(&mut self, writes: &mut Vec<Write>, dirty: BTreeSet<Channel>) {
        for channel in dirty {
            let n = self.counts.get(&channel).copied().unwrap_or(0).max(0);
            if n == 0 {
                self.counts.remove(&channel);
            }
            writes.push(Write::count(&channel, n));
        }
    }

    /// The heartbeat: the node stays registered, its registry of channels and its keys of
    /// every channel where it has members stay alive; each checks that Redis holds as many
    /// entries as the node wrote.
    fn beat(&self) -> Vec<Write> {
        let mut writes = vec![
            Write::new(Place::Nodes, &["r"]),
            Write::new(Place::Node, &["k", &self.counts.len().to_string()]),
        ];
        for (channel, members) in &self.members {
            writes.push(Write::channel(channel, "b", &[&members.len().to_string()]));
        }
        writes
    }

    /// Every write needed to put this node's state into Redis again: `stale` channels
    /// (whose writes failed, so Redis may hold what the node no longer has) are first
    /// dropped and their counts set.
    fn everything(&self, stale: &BTreeSet<Channel>) -> Vec<Write> {
        let mut writes = Vec::new();
        for channel in stale {
            writes.push(Write::channel(channel, "d", &[]));
            if !self.counts.contains_key(channel) {
                writes.push(Write::count(channel, 0));
            }
        }
        for (channel, n) in &self.counts {
            writes.push(Write::count(channel, *n));
        }
        for (channel, members) in &self.members {
            for (entry, subject) in members.values() {
                writes.push(Write::channel(channel, "j", &[entry, subject]));
            }
        }
        writes
    }
}

/// The node's writer: sends what the hub reports in batches, and beats every third of the
/// ttl so the node's keys stay alive; writes everything again when a beat finds that Redis
/// forgot some of the node's state (a first beat, a Redis or a cluster shard that lost its
/// data), or after a write failed (first dropping what Redis may still hold of the channels
/// whose writes failed, so that a lost leave leaves no ghost member). Ends when the
/// [`RedisPresence`] is dropped.
async fn write(keys: Arc<Keys>, mut queue: mpsc::UnboundedReceiver<Op>) {
    let mut local = Local::default();
    let mut beat = tokio::time::interval(keys.ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Channels whose writes failed since the last complete rewrite.
    let mut stale = BTreeSet::new();
    let mut lost = false;
    // Whether the node is known to be in the registry of nodes: until then (the first beat
    // may come before the connection), writes register it, so that its channels are listed
    // at once.
    let mut registered = false;
    loop {
        tokio::select! {
            op = queue.recv() => {
                let Some(op) = op else { break };
                tokio::time::sleep(LINGER).await;
                let mut writes = Vec::new();
                let mut dirty = BTreeSet::new();
                let mut touched = BTreeSet::new();
                let mut next = Some(op);
                for _ in 0..MAX_OPS {
                    let Some(op) = next.take().or_else(|| queue.try_recv().ok()) else {
                        break;
                    };
                    touched.insert(op.channel().clone());
                    local.apply(op, &mut writes, &mut dirty);
                }
                local.counts(&mut writes, dirty);
                if !registered {
                    writes.push(Write::new(Place::Nodes, &["r"]));
                }
                // What these writes could have found lost, the next beat finds.
                registered = keys.send(writes).await.is_ok();
                if !registered {
                    lost = true;
                    stale.extend(touched);
                }
            }
            _ = beat.tick() => {
                let beat = keys.send(local.beat()).await;
                registered = beat.is_ok();
                match beat {
                    Ok(forgot) if lost || forgot => {
                        lost = keys.send(local.everything(&stale)).await.is_err();
                        if !lost {
                            stale.clear();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => lost = true,
                }
            }
        }
    }
}

/// Cuts a page the script read one item past (`limit + 1`) down to `limit`; whether another
/// page follows.
fn cut<T>(items: &mut Vec<T>, limit: usize) -> bool {
    let more = items.len() > limit;
    items.truncate(limit);
    more
}

#[async_trait]
impl Presence for RedisPresence {
    fn join(&self, channel: &Channel, member: &Member) {
        // Only fails once the writer is gone, with the backplane.
        let _ = self.ops.send(Op::Join(channel.clone(), member.clone()));
    }

    fn leave(&self, channel: &Channel, member: &Member) {
        let _ = self.ops.send(Op::Leave(channel.clone(), member.clone()));
    }

    fn count(&self, channel: &Channel, delta: i64) {
        let _ = self.ops.send(Op::Count(channel.clone(), delta));
    }

    async fn members(
        &self,
        channel: &Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Error> {
        let keys = &self.keys;
        let mut call = keys.call("members", keys.key(&Place::Channel(channel.clone())));
        call.arg(channel.as_str())
            .arg(after.unwrap_or(""))
            .arg(limit);
        let reply = run(&keys.shared, call).await?;
        let mut members = reply
            .iter()
            .map(|e| {
                let json = e.splitn(2, |&b| b == b'\t').nth(1);
                json.and_then(|j| serde_json::from_slice(j).ok())
                    .ok_or_else(|| malformed("presence entry"))
            })
            .collect::<Result<Vec<Member>, Error>>()?;
        let next = cut(&mut members, limit)
            .then(|| members.last().map(|m| m.client.clone()))
            .flatten();
        Ok(MembersPage { members, next })
    }

    async fn stats(&self, channel: &Channel) -> Result<PresenceStats, Error> {
        let keys = &self.keys;
        let mut call = keys.call("stats", keys.key(&Place::Channel(channel.clone())));
        call.arg(channel.as_str());
        let reply = run(&keys.shared, call).await?;
        Ok(PresenceStats {
            connections: number(reply.first(), "connections")?,
            subjects: number(reply.get(1), "subjects")?,
        })
    }

    /// One call for the live nodes, then one per live node for a page of its registry (all
    /// at once: each node's registry is in its own slot), merged here. Each node's page holds
    /// its first `limit + 1` channels from `after`, so every channel of the merged first
    /// `limit + 1` is on the page of every node that has it, and its count is exact.
    async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error> {
        let keys = &self.keys;
        let live = run(&keys.shared, keys.call("nodes", keys.key(&Place::Nodes))).await?;
        let exact = if pattern.is_prefix() { "0" } else { "1" };
        let pages = join_all(live.iter().map(|node| async move {
            let node = std::str::from_utf8(node).map_err(|_| malformed("node id"))?;
            let mut call = keys.call("channels", keys.node_key(node));
            call.arg(node)
                .arg(pattern.prefix())
                .arg(exact)
                .arg(after.map_or("", Channel::as_str))
                .arg(limit);
            run(&keys.shared, call).await
        }))
        .await;
        let mut merged: BTreeMap<Channel, u64> = BTreeMap::new();
        for page in pages {
            for pair in page?.chunks(2) {
                let name = pair.first().and_then(|n| std::str::from_utf8(n).ok());
                let channel = name
                    .and_then(|n| Channel::new(n).ok())
                    .ok_or_else(|| malformed("channel name"))?;
                *merged.entry(channel).or_default() += number(pair.get(1), "subscribers")?;
            }
        }
        let mut channels: Vec<ChannelCount> = merged
            .into_iter()
            .take(limit + 1)
            .map(|(channel, subscribers)| ChannelCount {
                channel,
                subscribers,
            })
            .collect();
        let next = cut(&mut channels, limit)
            .then(|| channels.last().map(|c| c.channel.clone()))
            .flatten();
        Ok(ChannelsPage { channels, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let shared = Shared::new(
            true,
            "rt".into(),
            Duration::from_secs(1),
            (Duration::from_millis(10), Duration::from_secs(1)),
            Duration::from_secs(60),
        );
        Keys {
            shared: Arc::new(shared),
            node: "00ab".into(),
            ttl: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_channels_presence_is_in_the_slot_of_its_history() {
        let keys = keys();
        for name in ["news", "chat:1", "a/b@c", "n:00ab", "nodes"] {
            let channel = Channel::new(name).unwrap();
            let presence = Slot::for_key(keys.key(&Place::Channel(channel)));
            assert_eq!(
                presence,
                Slot::for_key(crate::cluster::epoch_key("rt", name)),
                "{name}"
            );
            // The member keys presence.lua writes, by their names there.
            assert_eq!(presence, Slot::for_key(format!("rt:{{{name}}}:p:00ab:s")));
        }
        let node = Slot::for_key(keys.key(&Place::Node));
        assert_eq!(node, Slot::for_key("rt:{n:00ab}:chl"));
        assert_eq!(node, Slot::for_key(keys.node_key("00ab")));
        assert_eq!(
            Slot::for_key(keys.key(&Place::Nodes)),
            Slot::for_key("nodes")
        );
    }
}
