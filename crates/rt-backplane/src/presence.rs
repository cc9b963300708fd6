//! [`RedisPresence`]: rt-core's [`Presence`] on Redis, one set of keys per node that expire
//! unless the node's heartbeat refreshes them. The layout is in `presence.lua`'s header.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use rt_core::{
    Channel, ChannelCount, ChannelPattern, ChannelsPage, Epoch, Error, Member, MembersPage,
    Presence, PresenceStats,
};
use tokio::sync::mpsc;

use crate::backplane::{malformed, number, run};
use crate::link::Shared;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("presence.lua")));

/// Writes sent in one script call at most (a reconnect storm of 10,000 joins goes in 20).
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

/// The node's presence and channel registry in Redis.
pub(crate) struct RedisPresence {
    shared: Arc<Shared>,
    node: String,
    ttl: Duration,
    ops: mpsc::UnboundedSender<Op>,
}

impl RedisPresence {
    /// Starts the node's writer task (it ends when this is dropped).
    pub(crate) fn start(shared: Arc<Shared>, ttl: Duration) -> Self {
        let node = Epoch::random().to_string();
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(write(shared.clone(), node.clone(), ttl, queue));
        RedisPresence {
            shared,
            node,
            ttl,
            ops,
        }
    }

    fn call(&self, mode: &str) -> redis::ScriptInvocation<'static> {
        invocation(&self.shared, &self.node, self.ttl, mode)
    }
}

fn invocation(
    shared: &Shared,
    node: &str,
    ttl: Duration,
    mode: &str,
) -> redis::ScriptInvocation<'static> {
    let mut call = SCRIPT.prepare_invoke();
    call.arg(&shared.prefix)
        .arg(mode)
        .arg(node)
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    call
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
    /// Applies `op`, adding its write to `call` (counts are added once per batch, by
    /// [`Local::counts`]).
    fn apply(
        &mut self,
        op: Op,
        call: &mut redis::ScriptInvocation<'static>,
        dirty: &mut BTreeSet<Channel>,
    ) {
        match op {
            Op::Count(channel, delta) => {
                *self.counts.entry(channel.clone()).or_default() += delta;
                dirty.insert(channel);
            }
            Op::Join(channel, member) => {
                let (entry, subject) = (entry(&member), member.subject.unwrap_or_default());
                call.arg("j")
                    .arg(channel.as_str())
                    .arg(&member.client)
                    .arg(&entry)
                    .arg(&subject);
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
                call.arg("l")
                    .arg(channel.as_str())
                    .arg(&member.client)
                    .arg(entry)
                    .arg(subject);
            }
        }
    }

    fn counts(&mut self, call: &mut redis::ScriptInvocation<'static>, dirty: BTreeSet<Channel>) {
        for channel in dirty {
            let n = self.counts.get(&channel).copied().unwrap_or(0).max(0);
            if n == 0 {
                self.counts.remove(&channel);
            }
            call.arg("c").arg(channel.as_str()).arg(n);
        }
    }

    /// Every write needed to put this node's state into Redis again, in batches: `stale`
    /// channels (whose writes failed, so Redis may hold what the node no longer has) are
    /// first dropped and their counts set.
    fn everything(
        &self,
        stale: &BTreeSet<Channel>,
        new: impl Fn() -> redis::ScriptInvocation<'static>,
    ) -> Vec<redis::ScriptInvocation<'static>> {
        let mut calls = Vec::new();
        let mut call = new();
        let mut ops = 0;
        let mut next = |call: &mut redis::ScriptInvocation<'static>, ops: &mut usize| {
            *ops += 1;
            if *ops == MAX_OPS {
                calls.push(std::mem::replace(call, new()));
                *ops = 0;
            }
        };
        for channel in stale {
            call.arg("d").arg(channel.as_str());
            next(&mut call, &mut ops);
            if !self.counts.contains_key(channel) {
                call.arg("c").arg(channel.as_str()).arg(0);
                next(&mut call, &mut ops);
            }
        }
        for (channel, n) in &self.counts {
            call.arg("c").arg(channel.as_str()).arg(*n);
            next(&mut call, &mut ops);
        }
        for (channel, members) in &self.members {
            for (client, (entry, subject)) in members {
                call.arg("j")
                    .arg(channel.as_str())
                    .arg(client)
                    .arg(entry)
                    .arg(subject);
                next(&mut call, &mut ops);
            }
        }
        if ops > 0 {
            calls.push(call);
        }
        calls
    }
}

/// The node's writer: sends what the hub reports in batches, and beats every third of the
/// ttl so the node's keys stay alive; writes everything again when a beat finds that Redis
/// forgot the node, or after a write failed (first dropping what Redis may still hold of the
/// channels whose writes failed, so that a lost leave leaves no ghost member). Ends when the [`RedisPresence`] is dropped.
async fn write(
    shared: Arc<Shared>,
    node: String,
    ttl: Duration,
    mut queue: mpsc::UnboundedReceiver<Op>,
) {
    let new = || invocation(&shared, &node, ttl, "write");
    let mut local = Local::default();
    let mut beat = tokio::time::interval(ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Channels whose writes failed since the last complete rewrite.
    let mut stale = BTreeSet::new();
    let mut lost = false;
    loop {
        tokio::select! {
            op = queue.recv() => {
                let Some(op) = op else { break };
                tokio::time::sleep(LINGER).await;
                let mut call = new();
                let mut dirty = BTreeSet::new();
                let mut touched = BTreeSet::new();
                let mut next = Some(op);
                for _ in 0..MAX_OPS {
                    let Some(op) = next.take().or_else(|| queue.try_recv().ok()) else {
                        break;
                    };
                    touched.insert(op.channel().clone());
                    local.apply(op, &mut call, &mut dirty);
                }
                local.counts(&mut call, dirty);
                if run(&shared, call).await.is_err() {
                    lost = true;
                    stale.extend(touched);
                }
            }
            _ = beat.tick() => {
                let mut call = invocation(&shared, &node, ttl, "beat");
                for channel in local.members.keys() {
                    call.arg(channel.as_str());
                }
                match run(&shared, call).await {
                    Ok(reply) if lost || reply.first().is_some_and(|f| f == b"1") => {
                        lost = false;
                        for call in local.everything(&stale, new) {
                            if run(&shared, call).await.is_err() {
                                lost = true;
                                break;
                            }
                        }
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
        let mut call = self.call("members");
        call.arg(channel.as_str())
            .arg(after.unwrap_or(""))
            .arg(limit);
        let reply = run(&self.shared, call).await?;
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
        let mut call = self.call("stats");
        call.arg(channel.as_str());
        let reply = run(&self.shared, call).await?;
        Ok(PresenceStats {
            connections: number(reply.first(), "connections")?,
            subjects: number(reply.get(1), "subjects")?,
        })
    }

    async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error> {
        let exact = !pattern.is_prefix();
        let mut call = self.call("channels");
        call.arg(pattern.prefix())
            .arg(if exact { "1" } else { "0" })
            .arg(after.map_or("", Channel::as_str))
            .arg(limit);
        let reply = run(&self.shared, call).await?;
        let mut channels = reply
            .chunks(2)
            .map(|pair| {
                let name = pair.first().and_then(|n| std::str::from_utf8(n).ok());
                let channel = name
                    .and_then(|n| Channel::new(n).ok())
                    .ok_or_else(|| malformed("channel name"))?;
                let subscribers = number(pair.get(1), "subscribers")?;
                Ok(ChannelCount {
                    channel,
                    subscribers,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let next = cut(&mut channels, limit)
            .then(|| channels.last().map(|c| c.channel.clone()))
            .flatten();
        Ok(ChannelsPage { channels, next })
    }
}
