//! [`NatsPresence`]: rt-core's [`Presence`] in a JetStream key-value bucket.
//!
//! NATS 2.9 has no per-key TTL, so expiry comes from the bucket: `<prefix>-presence` (stream
//! `KV_<prefix>-presence`, memory storage, one value per key) has the presence TTL as its
//! `max_age`. Every node writes only keys of its own and rewrites each of them every third
//! of the TTL (its heartbeat), so a node that dies drops out within the TTL without anyone
//! cleaning up after it. Keys (`<ch>` is the channel name with `.` `:` `@` written `=d` `=c`
//! `=a`, one key token; `<node>` is the node's random id):
//!
//! | key | value | read by |
//! |---|---|---|
//! | `c.<ch>.<node>` | the node's subscriptions to the channel (decimal) | `/api/channels` |
//! | `s.<ch>.<node>` | the node's connections in the channel's presence, its chunks in use, its distinct subjects | counts, and paging |
//! | `m.<ch>.<h1>.<h2>.<node>` | the node's members whose client id starts with `h1h2`, a JSON array | member pages |
//!
//! A key whose value would be empty is deleted (a `KV-Operation: DEL` marker, which ages
//! out like the rest). The bucket is created as a stream in the layout of `nats kv add`
//! (async-nats' `create_key_value` first reads the account's info, which it cannot parse
//! from NATS 2.9), so the `nats kv` tools can inspect it. Reads are short-lived pull
//! consumers that deliver the last value of each key matching a subject filter (one
//! consumer-create request, then batches of 256, then a delete), so what a read costs is
//! what its filter matches:
//!
//! - **Counts** (`/api/presence-stats`) read one `s.<ch>.*` entry per node: O(nodes). The
//!   distinct-subject count is exact while every node has at most 4,096 distinct subjects in
//!   the channel (each node's entry lists them); beyond that a node's entry only counts them,
//!   and the total is an upper bound (a subject connected to two such nodes counts twice).
//! - **Member pages** read the `s` entries, then the member chunks from the cursor on, in
//!   client id order, until the page is full: the whole channel in one read up to 1,000
//!   members, then one sixteenth (`m.<ch>.<h1>.>`) at a time up to 16,000, then one chunk
//!   (1/256) at a time. A page reads about `limit` members plus one chunk's worth.
//! - **Active channels** (`/api/channels`) read every `c` entry of every node for a pattern
//!   with `*` (subject filters match whole tokens, not prefixes of a token), or only the
//!   named channel's `c.<ch>.*` for an exact pattern: a page costs O(active channels x
//!   nodes) small entries, unlike Redis' sorted sets. The answer is still paged.
//!
//! Writes go through one writer task per node which lets joins and leaves gather for 20 ms
//! and then writes each key they changed once (a batch of up to 4,096 reports writes at most
//! 256 chunks and one stats entry per channel: a reconnect storm of 10,000 joins to one
//! channel is under 800 puts, not 10,000). A batch's stats entries are written after its
//! chunks, so a reader that finds a member counted finds it in its chunk. A
//! heartbeat costs one put per key the node holds: per active channel one, plus per
//! presence channel its stats entry and its non-empty chunks. Writes that fail are retried
//! at the next beat, after the bucket is created again if NATS lost it (a restarted server
//! without the memory store), so a leave written while NATS was unreachable leaves no ghost.
//! A read before any node created the bucket answers empty.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State as Conn;
use async_nats::header::HeaderMap;
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::stream::{self, ConsumerErrorKind, DiscardPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use rt_core::{
    Channel, ChannelCount, ChannelPattern, ChannelsPage, Epoch, Error, Member, MembersPage,
    Presence, PresenceStats,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::backplane::unavailable;

/// The header that marks a deleted key.
const KV_OPERATION: &str = "KV-Operation";

/// How long the writer lets joins and leaves gather after the first one (as on Redis).
const LINGER: Duration = Duration::from_millis(20);

/// Ops applied per batch at most, so that a beat is not held back by an endless storm.
const MAX_OPS: usize = 4096;

/// How soon the writer looks again for a connection to set the bucket up with.
const RETRY: Duration = Duration::from_millis(100);

/// Entries per fetch when reading.
const BATCH: usize = 256;

/// How long a read's fetch waits for messages the consumer counts as pending. NATS 2.9
/// counts a message deleted under a consumer (a key rewritten while it is read) as still
/// pending and holds a no-wait fetch for it; this bounds that wait.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// Puts awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 256;

/// Distinct subjects a node lists in its stats entry; beyond it, it only counts them.
const MAX_SUBJECTS: usize = 4096;

/// Up to this many members, a page reads the whole channel at once; up to 16 times this
/// many, a sixteenth of it at a time; beyond, one chunk (1/256) at a time.
const SMALL: u64 = 1000;

/// What the hub reported, on its way to the node's writer task.
enum Op {
    Join(Channel, Member),
    Leave(Channel, Member),
    Count(Channel, i64),
}

/// A key of this node in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Count(Channel),
    Stats(Channel),
    /// A channel and the first two characters of its members' client ids.
    Chunk(Channel, [u8; 2]),
}

/// A node's `s.<ch>.<node>` entry.
#[derive(Debug, Serialize, Deserialize)]
struct NodeStats {
    /// The node's connections in the channel's presence.
    connections: u64,
    /// Its non-empty chunks (`"ab"`: client ids starting with `ab`), in order.
    chunks: Vec<String>,
    /// Its distinct subjects, unless there are more than [`MAX_SUBJECTS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subjects: Option<Vec<String>>,
    /// How many distinct subjects it has.
    distinct: u64,
}

/// `channel` as one key token: `.` (the token separator), `:` and `@` (not allowed in keys)
/// become `=d`, `=c` and `=a`; no channel name contains `=`.
fn encode(channel: &Channel) -> String {
    let mut token = String::with_capacity(channel.as_str().len() + 8);
    for c in channel.as_str().chars() {
        match c {
            '.' => token.push_str("=d"),
            ':' => token.push_str("=c"),
            '@' => token.push_str("=a"),
            c => token.push(c),
        }
    }
    token
}

/// The channel of a key token made by [`encode`].
fn decode(token: &str) -> Option<Channel> {
    let mut name = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        name.push(match c {
            '=' => match chars.next()? {
                'd' => '.',
                'c' => ':',
                'a' => '@',
                _ => return None,
            },
            c => c,
        });
    }
    Channel::new(&name).ok()
}

/// The chunk of a client id: its first two characters (ids are lowercase hex, so chunks in
/// order hold ids in order); anything else is mapped to `0` to stay a valid key.
fn chunk(client: &str) -> [u8; 2] {
    let digit = |b: Option<&u8>| match b {
        Some(b) if b.is_ascii_alphanumeric() => b.to_ascii_lowercase(),
        _ => b'0',
    };
    let bytes = client.as_bytes();
    [digit(bytes.first()), digit(bytes.get(1))]
}

fn malformed(what: &str) -> Error {
    unavailable(format_args!(
        "a presence {what} in the bucket is not rt's; is another program writing to it?"
    ))
}

/// One channel's members on this node.
#[derive(Default)]
struct Members {
    /// Chunk -> client id -> member.
    chunks: BTreeMap<[u8; 2], BTreeMap<String, Member>>,
    /// Subject -> connections of it.
    subjects: BTreeMap<String, u64>,
    connections: u64,
}

/// What this node holds, to write each changed key again in full.
#[derive(Default)]
struct Local {
    counts: HashMap<Channel, i64>,
    members: HashMap<Channel, Members>,
}

impl Local {
    /// Applies `op`, adding the keys it changes to `dirty`.
    fn apply(&mut self, op: Op, dirty: &mut BTreeSet<Key>) {
        match op {
            Op::Count(channel, delta) => {
                let n = self.counts.entry(channel.clone()).or_default();
                *n += delta;
                if *n <= 0 {
                    self.counts.remove(&channel);
                }
                dirty.insert(Key::Count(channel));
            }
            Op::Join(channel, member) => {
                let members = self.members.entry(channel.clone()).or_default();
                let c = chunk(&member.client);
                let subject = member.subject.clone();
                let chunk = members.chunks.entry(c).or_default();
                if chunk.insert(member.client.clone(), member).is_none() {
                    members.connections += 1;
                    if let Some(subject) = subject {
                        *members.subjects.entry(subject).or_default() += 1;
                    }
                }
                dirty.insert(Key::Stats(channel.clone()));
                dirty.insert(Key::Chunk(channel, c));
            }
            Op::Leave(channel, member) => {
                let Some(members) = self.members.get_mut(&channel) else {
                    return;
                };
                let c = chunk(&member.client);
                let Some(chunk) = members.chunks.get_mut(&c) else {
                    return;
                };
                let Some(left) = chunk.remove(&member.client) else {
                    return;
                };
                if chunk.is_empty() {
                    members.chunks.remove(&c);
                }
                members.connections -= 1;
                if let Some(subject) = left.subject {
                    if let Some(n) = members.subjects.get_mut(&subject) {
                        *n -= 1;
                        if *n == 0 {
                            members.subjects.remove(&subject);
                        }
                    }
                }
                if members.connections == 0 {
                    self.members.remove(&channel);
                }
                dirty.insert(Key::Stats(channel.clone()));
                dirty.insert(Key::Chunk(channel, c));
            }
        }
    }

    /// Every key this node holds a value for.
    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        let counts = self.counts.keys().map(|c| Key::Count(c.clone()));
        let members = self.members.iter().flat_map(|(channel, members)| {
            let chunks = members
                .chunks
                .keys()
                .map(|k| Key::Chunk(channel.clone(), *k));
            std::iter::once(Key::Stats(channel.clone())).chain(chunks)
        });
        counts.chain(members)
    }

    /// The value of `key` now; `None` when it is to be deleted.
    fn value(&self, key: &Key) -> Option<Bytes> {
        match key {
            Key::Count(channel) => {
                let n = self.counts.get(channel).copied().filter(|&n| n > 0)?;
                Some(n.to_string().into())
            }
            Key::Stats(channel) => {
                let members = self.members.get(channel)?;
                let stats = NodeStats {
                    connections: members.connections,
                    chunks: members
                        .chunks
                        .keys()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect(),
                    subjects: (members.subjects.len() <= MAX_SUBJECTS)
                        .then(|| members.subjects.keys().cloned().collect()),
                    distinct: members.subjects.len() as u64,
                };
                serde_json::to_vec(&stats).ok().map(Bytes::from)
            }
            Key::Chunk(channel, c) => {
                let chunk = self.members.get(channel)?.chunks.get(c)?;
                let members: Vec<&Member> = chunk.values().collect();
                serde_json::to_vec(&members).ok().map(Bytes::from)
            }
        }
    }
}

/// The bucket, as the writer and the readers use it.
struct Kv {
    js: Context,
    client: async_nats::Client,
    /// The bucket's stream, as `nats kv add` makes it.
    config: stream::Config,
    /// The bucket's stream (a handle; no request is made to get it).
    stream: jetstream::stream::Stream<()>,
    /// `$KV.<bucket>.`
    subjects: String,
    node: String,
    timeout: Duration,
}

impl Kv {
    async fn within<F, T, E>(&self, f: F) -> Result<T, Error>
    where
        F: IntoFuture<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format_args!(
                "no answer within {:?} (presence bucket)",
                self.timeout
            ))),
        }
    }

    fn subject(&self, key: &Key) -> String {
        let node = &self.node;
        let s = &self.subjects;
        match key {
            Key::Count(c) => format!("{s}c.{}.{node}", encode(c)),
            Key::Stats(c) => format!("{s}s.{}.{node}", encode(c)),
            Key::Chunk(c, [h1, h2]) => {
                let (h1, h2) = (char::from(*h1), char::from(*h2));
                format!("{s}m.{}.{h1}.{h2}.{node}", encode(c))
            }
        }
    }

    /// Creates the bucket, or updates it to this node's TTL. As a stream: async-nats'
    /// `create_key_value` first reads the account's info, which it cannot parse from NATS 2.9.
    async fn setup(&self) -> Result<(), Error> {
        if self.client.connection_state() != Conn::Connected {
            return Err(unavailable("not connected (reconnecting)"));
        }
        self.within(self.js.create_or_update_stream(self.config.clone()))
            .await
            .map(drop)
    }

    /// Writes `value` at `subject` (deletes it for `None`) and waits for JetStream to have it.
    async fn put(&self, subject: String, value: Option<Bytes>) -> Result<(), Error> {
        let ack = match value {
            Some(value) => self.within(self.js.publish(subject, value)).await?,
            None => {
                let mut headers = HeaderMap::new();
                headers.insert(KV_OPERATION, "DEL");
                let publish = self.js.publish_with_headers(subject, headers, Bytes::new());
                self.within(publish).await?
            }
        };
        self.within(ack).await.map(drop)
    }

    /// Writes every key of `dirty` from `local`; the keys whose write failed stay in
    /// `dirty`. Returns whether all were written.
    ///
    /// Stats entries go last, once everything else was written: a reader finds the chunks
    /// through them, so an entry must never list (or count) members whose chunk is not
    /// there yet.
    async fn flush(&self, local: &Local, dirty: &mut BTreeSet<Key>) -> bool {
        if self.client.connection_state() != Conn::Connected {
            return false;
        }
        let (stats, rest): (BTreeSet<Key>, BTreeSet<Key>) = std::mem::take(dirty)
            .into_iter()
            .partition(|key| matches!(key, Key::Stats(_)));
        *dirty = self.put_all(local, rest).await;
        if dirty.is_empty() {
            *dirty = self.put_all(local, stats).await;
        } else {
            dirty.extend(stats);
        }
        dirty.is_empty()
    }

    /// Writes `keys` from `local`, up to [`IN_FLIGHT`] at a time, and returns those whose
    /// write failed.
    async fn put_all(&self, local: &Local, keys: BTreeSet<Key>) -> BTreeSet<Key> {
        // Boxed: the writer's future must be Send for every lifetime of the borrows.
        let writes: Vec<futures_util::future::BoxFuture<'_, Option<Key>>> = keys
            .into_iter()
            .map(|key| {
                let put = self.put(self.subject(&key), local.value(&key));
                Box::pin(async move { put.await.is_err().then_some(key) }) as _
            })
            .collect();
        futures_util::stream::iter(writes)
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|failed| async move { failed })
            .collect()
            .await
    }

    /// The last value of every key matching `filter` (a subject filter under the bucket),
    /// deleted keys left out: `(key, value)`.
    async fn last(&self, filter: &str) -> Result<Vec<(String, Bytes)>, Error> {
        if self.client.connection_state() != Conn::Connected {
            return Err(unavailable("not connected (reconnecting)"));
        }
        // A plain pull consumer read in no-wait batches: an ordered one recreates itself
        // from the start of the stream when a key is rewritten under it. It delivers every
        // message, which is the last value of each key (one value per key): NATS 2.9 skips
        // messages of a `LastPerSubject` consumer when keys were rewritten (interior deletes,
        // fixed later by nats-server#7005), and heartbeats rewrite every key all the time.
        let created = self.within(async {
            let consumer = self.stream.create_consumer(pull::Config {
                filter_subject: format!("{}{filter}", self.subjects),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                replay_policy: ReplayPolicy::Instant,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            });
            match consumer.await {
                Ok(consumer) => Ok(Some(consumer)),
                // No bucket yet (no node has written since NATS started): nothing in it.
                Err(e)
                    if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        });
        let Some(consumer): Option<Consumer<pull::Config>> = created.await? else {
            return Ok(Vec::new());
        };
        let name = consumer.cached_info().name.clone();
        let entries = self.within(self.read(&consumer)).await;
        // Deleted once read rather than left to its inactivity threshold, so that a
        // dashboard polling counts does not keep dozens of consumers alive; not waited for.
        let stream = self.stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        entries
    }

    /// The last value of each key `consumer` delivers, deleted keys left out.
    async fn read(&self, consumer: &Consumer<pull::Config>) -> Result<Vec<(String, Bytes)>, Error> {
        // By key: a key rewritten while the values are read comes again.
        let mut entries = BTreeMap::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        'fetching: loop {
            let mut batch = consumer
                .fetch()
                .max_messages(BATCH)
                .expires(FETCH_WAIT)
                .messages()
                .await
                .map_err(unavailable)?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(unavailable)?;
                got += 1;
                let pending = message.info().map_err(unavailable)?.pending;
                let deleted = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(KV_OPERATION))
                    .is_some_and(|op| op.as_str() != "PUT");
                if let Some(key) = message.subject.strip_prefix(self.subjects.as_str()) {
                    if deleted {
                        entries.remove(key);
                    } else {
                        entries.insert(key.to_owned(), message.payload.clone());
                    }
                }
                if pending == 0 {
                    break 'fetching;
                }
            }
            // Nothing more is there (keys can age out while being read).
            if got == 0 {
                break;
            }
        }
        Ok(entries.into_iter().collect())
    }

    /// Every node's stats entry of `channel`.
    async fn stats(&self, channel: &Channel) -> Result<Vec<NodeStats>, Error> {
        let entries = self.last(&format!("s.{}.*", encode(channel))).await?;
        entries
            .iter()
            .map(|(_, v)| serde_json::from_slice(v).map_err(|_| malformed("stats entry")))
            .collect()
    }
}

/// The node's presence and channel registry in the bucket.
pub(crate) struct NatsPresence {
    kv: Arc<Kv>,
    ops: mpsc::UnboundedSender<Op>,
}

impl NatsPresence {
    /// Starts the node's writer task (it ends when this is dropped), which creates the
    /// bucket `<prefix>-presence` with a `max_age` of `ttl` and keeps it.
    pub(crate) async fn start(
        js: Context,
        client: async_nats::Client,
        prefix: &str,
        ttl: Duration,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Self, crate::Error> {
        let bucket = format!("{prefix}-presence");
        let stream = js
            .get_stream_no_info(format!("KV_{bucket}"))
            .await
            .map_err(|_| crate::Error::InvalidPrefix(prefix.to_owned()))?;
        let kv = Arc::new(Kv {
            js,
            client,
            // What async-nats' kv::Config makes of a bucket with one value per key.
            config: stream::Config {
                name: format!("KV_{bucket}"),
                description: Some(
                    "rt presence and active channels: one node's keys each, rewritten every \
                     third of max_age"
                        .into(),
                ),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: ttl,
                // Rewritten by every node's heartbeat: nothing to keep across a restart.
                storage: StorageType::Memory,
                num_replicas: replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                ..Default::default()
            },
            stream,
            subjects: format!("$KV.{bucket}."),
            node: Epoch::random().to_string(),
            timeout,
        });
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(write(kv.clone(), ttl, queue));
        Ok(NatsPresence { kv, ops })
    }
}

/// The node's writer: writes the keys that the hub's reports changed, in batches, and every
/// key it holds every third of the ttl (creating the bucket first when it is missing or a
/// write failed). Ends when the [`NatsPresence`] is dropped.
async fn write(kv: Arc<Kv>, ttl: Duration, mut queue: mpsc::UnboundedReceiver<Op>) {
    let mut local = Local::default();
    let mut dirty = BTreeSet::new();
    // Whether the bucket is known to exist and the last writes went through.
    let mut ready = false;
    let mut beat = tokio::time::interval(ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            op = queue.recv() => {
                let Some(op) = op else { break };
                tokio::time::sleep(LINGER).await;
                local.apply(op, &mut dirty);
                for _ in 1..MAX_OPS {
                    let Ok(op) = queue.try_recv() else { break };
                    local.apply(op, &mut dirty);
                }
                if !ready {
                    ready = kv.setup().await.is_ok();
                }
                if ready {
                    ready = kv.flush(&local, &mut dirty).await;
                }
            }
            _ = beat.tick() => {
                if !ready {
                    // While the client (re)connects, which the backplane reports, try again
                    // soon and quietly; the first beat usually comes before the connection.
                    if kv.client.connection_state() != Conn::Connected {
                        beat.reset_after(RETRY.min(ttl / 3));
                        continue;
                    }
                    if let Err(e) = kv.setup().await {
                        tracing::warn!(error = %e, "cannot set up the NATS presence bucket, retrying");
                        continue;
                    }
                }
                dirty.extend(local.keys());
                ready = kv.flush(&local, &mut dirty).await;
                if !ready {
                    tracing::warn!(keys = dirty.len(), "presence writes to NATS failed, retrying");
                }
            }
        }
    }
}

#[async_trait]
impl Presence for NatsPresence {
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
        let nodes = self.kv.stats(channel).await?;
        let total: u64 = nodes.iter().map(|n| n.connections).sum();
        let chunks: BTreeSet<&str> = nodes
            .iter()
            .flat_map(|n| n.chunks.iter().map(String::as_str))
            .filter(|c| c.len() == 2 && c.is_ascii())
            .collect();
        // The parts to read, in client id order: "" (everything), "a" (ids starting with a)
        // or "ab".
        let width = match total {
            0 => return Ok(MembersPage::default()),
            n if n <= SMALL => 0,
            n if n <= 16 * SMALL => 1,
            _ => 2,
        };
        let parts: BTreeSet<&str> = chunks.iter().map(|c| &c[..width]).collect();
        let after = after.map(str::to_ascii_lowercase);
        let token = encode(channel);
        let mut found = BTreeMap::new();
        for part in parts {
            // A part whose ids all sort before the cursor has nothing for this page.
            let head = after
                .as_deref()
                .and_then(|a| a.get(..part.len().min(a.len())));
            if head.is_some_and(|head| part < head) {
                continue;
            }
            let filter = match part.as_bytes() {
                [] => format!("m.{token}.>"),
                [h1] => format!("m.{token}.{}.>", char::from(*h1)),
                [h1, h2, ..] => format!("m.{token}.{}.{}.*", char::from(*h1), char::from(*h2)),
            };
            for (_, value) in self.kv.last(&filter).await? {
                let members: Vec<Member> =
                    serde_json::from_slice(&value).map_err(|_| malformed("member entry"))?;
                for member in members {
                    if after.as_deref().is_none_or(|a| member.client.as_str() > a) {
                        found.insert(member.client.clone(), member);
                    }
                }
            }
            // Later parts only hold larger ids.
            if found.len() > limit {
                break;
            }
        }
        let more = found.len() > limit;
        let members: Vec<Member> = found.into_values().take(limit).collect();
        let next = more
            .then(|| members.last().map(|m| m.client.clone()))
            .flatten();
        Ok(MembersPage { members, next })
    }

    async fn stats(&self, channel: &Channel) -> Result<PresenceStats, Error> {
        let nodes = self.kv.stats(channel).await?;
        let mut subjects = BTreeSet::new();
        let mut unlisted = 0;
        for node in &nodes {
            match &node.subjects {
                Some(list) => subjects.extend(list.iter().map(String::as_str)),
                None => unlisted += node.distinct,
            }
        }
        Ok(PresenceStats {
            connections: nodes.iter().map(|n| n.connections).sum(),
            subjects: subjects.len() as u64 + unlisted,
        })
    }

    async fn channels(
        &self,
        pattern: &ChannelPattern,
        after: Option<&Channel>,
        limit: usize,
    ) -> Result<ChannelsPage, Error> {
        let filter = if pattern.is_prefix() {
            "c.>".to_owned()
        } else {
            match Channel::new(pattern.prefix()) {
                Ok(channel) => format!("c.{}.*", encode(&channel)),
                Err(_) => return Ok(ChannelsPage::default()),
            }
        };
        let mut counts: BTreeMap<Channel, u64> = BTreeMap::new();
        for (key, value) in self.kv.last(&filter).await? {
            let mut tokens = key.splitn(3, '.');
            let channel = tokens.nth(1).and_then(decode);
            let n = std::str::from_utf8(&value)
                .ok()
                .and_then(|n| n.parse::<u64>().ok());
            let (Some(channel), Some(n)) = (channel, n) else {
                return Err(malformed("channel count"));
            };
            if pattern.matches(&channel) && after.is_none_or(|a| &channel > a) {
                *counts.entry(channel).or_default() += n;
            }
        }
        let more = counts.len() > limit;
        let channels: Vec<ChannelCount> = counts
            .into_iter()
            .take(limit)
            .map(|(channel, subscribers)| ChannelCount {
                channel,
                subscribers,
            })
            .collect();
        let next = more
            .then(|| channels.last().map(|c| c.channel.clone()))
            .flatten();
        Ok(ChannelsPage { channels, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Channel {
        Channel::new(s).unwrap()
    }

    #[test]
    fn channel_names_are_one_valid_key_token_each_and_come_back() {
        for name in ["a.b:c/d@e-f_g", "chat:1", "x", "..::@@"] {
            let token = encode(&ch(name));
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=')),
                "{token}"
            );
            assert_eq!(decode(&token), Some(ch(name)));
        }
        assert_eq!(decode("a=x"), None);
        assert_eq!(decode("a="), None);
    }

    fn member(client: &str, subject: Option<&str>) -> Member {
        Member {
            client: client.into(),
            subject: subject.map(Into::into),
            info: None,
        }
    }

    #[test]
    fn local_state_writes_changed_keys_and_deletes_empty_ones() {
        let mut local = Local::default();
        let mut dirty = BTreeSet::new();
        let c = ch("room:1");
        local.apply(Op::Join(c.clone(), member("ab01", Some("u"))), &mut dirty);
        local.apply(Op::Join(c.clone(), member("ab02", Some("u"))), &mut dirty);
        local.apply(Op::Join(c.clone(), member("cd01", None)), &mut dirty);
        local.apply(Op::Count(c.clone(), 3), &mut dirty);
        let keys: Vec<Key> = dirty.iter().cloned().collect();
        assert_eq!(
            keys,
            [
                Key::Count(c.clone()),
                Key::Stats(c.clone()),
                Key::Chunk(c.clone(), *b"ab"),
                Key::Chunk(c.clone(), *b"cd"),
            ]
        );
        let stats: NodeStats =
            serde_json::from_slice(&local.value(&Key::Stats(c.clone())).unwrap()).unwrap();
        assert_eq!((stats.connections, stats.distinct), (3, 1));
        assert_eq!(stats.chunks, ["ab", "cd"]);
        let chunk: Vec<Member> =
            serde_json::from_slice(&local.value(&Key::Chunk(c.clone(), *b"ab")).unwrap()).unwrap();
        assert_eq!(chunk.len(), 2);
        assert_eq!(local.keys().count(), 4);

        dirty.clear();
        local.apply(Op::Leave(c.clone(), member("cd01", None)), &mut dirty);
        local.apply(Op::Count(c.clone(), -3), &mut dirty);
        assert_eq!(local.value(&Key::Chunk(c.clone(), *b"cd")), None);
        assert_eq!(local.value(&Key::Count(c.clone())), None);
        local.apply(Op::Leave(c.clone(), member("ab01", None)), &mut dirty);
        local.apply(Op::Leave(c.clone(), member("ab02", None)), &mut dirty);
        assert_eq!(local.value(&Key::Stats(c.clone())), None);
        assert_eq!(local.keys().count(), 0);
        // Leaving twice changes nothing.
        local.apply(Op::Leave(c.clone(), member("ab01", None)), &mut dirty);
        assert!(local.members.is_empty());
    }

    #[test]
    fn chunks_follow_client_id_order() {
        assert_eq!(chunk("0f3a"), *b"0f");
        assert_eq!(chunk("a"), *b"a0");
        assert_eq!(chunk("!?"), *b"00");
        assert!(chunk("0fff") < chunk("10"));
    }
}
