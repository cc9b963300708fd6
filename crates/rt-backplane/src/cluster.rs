//! Redis Cluster: the same script, codec and hub protocol as on one Redis, with every key of a
//! channel in one hash slot and events on sharded pub/sub.
//!
//! - Keys: a channel's keys carry the hash tag `{CHANNEL}`, so a channel lives in one slot and
//!   one script call (routed by the `redis` crate's cluster client, which follows `MOVED`,
//!   `ASK` and failovers) sees all of them. The epoch is per slot: `P:{TAG}:epoch`, `TAG` a
//!   string of that slot ([`epoch_key`]). Every slot's epoch is written once, by the first
//!   node of a deployment ([`init_epochs`]); a slot whose epoch is later missing lost its data
//!   (a shard restarted empty), and the script starts a new epoch there, so clients resuming
//!   on its channels get `recovered: false`, not a silent gap.
//! - Publishes: a node's queued publishes are grouped per channel, one script call per
//!   channel, all in flight at once; the calls of one channel go one after the other, which
//!   keeps its order. An event is stored, then `WAIT`ed for on its shard's replicas, and only
//!   then sent on the channel's sharded pub/sub channel and acknowledged: what a client was
//!   told or shown survives its master's failover (up to Redis' own `WAIT` guarantee).
//! - Subscriptions: `SSUBSCRIBE`, which the cluster client sends on its connection to the
//!   slot's master: one subscription per shard connection per watched channel. After the
//!   client resubscribes (a reconnect, a failover), the channel is caught up from history.
//! - Signals: a plain `PUBLISH`/`SUBSCRIBE` on `P:signal`, which Redis Cluster carries to
//!   every node; they are rare and best effort, so the broadcast costs nothing that matters.
//! - Health: every [`CHECK_EVERY`] (and when a node connection drops) the cluster's view of
//!   itself is read and every shard pinged; a failing node, a shard not answering, or a
//!   master with fewer replicas than publishes wait for makes the node degraded, while
//!   channels on the other shards keep working.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use rt_core::{Channel, Epoch, Error, Retention, Signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backplane::{answer, invocation, publish_call, run, take_batch, Pending};
use crate::codec;
use crate::link::{
    unwatched, wait_out, within, Backoff, Command, Conn, Shared, State, SUBSCRIBE_BATCH,
};

/// The URL scheme of a Redis Cluster over plain TCP.
const SCHEME: &str = "redis-cluster://";

/// The URL scheme of a Redis Cluster over TLS (`rediss://` to every node), as `rediss://` is
/// to `redis://` for one Redis.
const TLS_SCHEME: &str = "rediss-cluster://";

/// Calls of one channel's publishes in flight at once, over all channels.
const GROUPS_IN_FLIGHT: usize = 256;

/// How often the cluster's health is checked: often enough that a failover is noticed (and
/// subscriptions moved) within about a second; each check is a `CLUSTER NODES` and a `PING`
/// per shard.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// A `redis-cluster://` or `rediss-cluster://` URL: the nodes to start from, the replicas to
/// wait for, and the CA to trust over TLS.
pub(crate) struct Nodes {
    urls: Vec<String>,
    /// Replicas that must hold an event before it is acknowledged.
    pub(crate) replicas: usize,
    /// PEM of the CA that signed the nodes' certificates (`rediss-cluster://` only); without
    /// it, the platform's roots are trusted.
    // Only read by the `tls` feature's client; without it, no URL that takes a CA parses.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ca: Option<Vec<u8>>,
}

impl Nodes {
    /// `None` when `url` is not a cluster URL. `ca` is
    /// [`RedisConfig::tls_ca`](crate::RedisConfig::tls_ca): an error with a plain `redis-cluster://` URL, which would
    /// otherwise quietly not use it.
    pub(crate) fn parse(url: &str, ca: Option<&[u8]>) -> Result<Option<Nodes>, crate::Error> {
        let invalid = |why: &str| crate::Error::InvalidUrl(why.to_owned());
        let (rest, node_scheme) = if let Some(rest) = url.strip_prefix(SCHEME) {
            (rest, "redis://")
        } else if let Some(rest) = url.strip_prefix(TLS_SCHEME) {
            if cfg!(not(feature = "tls")) {
                return Err(invalid(
                    "rediss-cluster:// needs rt-backplane's `tls` feature (rt-server's `redis`)",
                ));
            }
            (rest, "rediss://")
        } else {
            return Ok(None);
        };
        if ca.is_some() && node_scheme == "redis://" {
            return Err(crate::Error::InvalidSetting(
                "a TLS CA (--redis-tls-ca) was given with a plain redis-cluster:// URL; \
                 use rediss-cluster:// for a Redis Cluster over TLS",
            ));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut replicas = 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replicas", n)) => {
                    replicas = n
                        .parse()
                        .map_err(|_| invalid("replicas=N needs a number"))?;
                }
                _ => {
                    return Err(invalid(
                        "the only option of redis-cluster:// and rediss-cluster:// is replicas=N",
                    ))
                }
            }
        }
        let (auth, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let urls: Vec<String> = hosts
            .split(',')
            .map(|host| {
                let ok = host
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if ok {
                    Ok(format!("{node_scheme}{auth}{host}"))
                } else {
                    Err(invalid(
                        "redis-cluster:// needs host:port of at least one node, comma-separated",
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        let nodes = Nodes {
            urls,
            replicas,
            ca: ca.map(<[u8]>::to_vec),
        };
        // Checks the node URLs (and the CA's PEM) the way the client will read them.
        nodes
            .builder(Duration::from_secs(1))
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Some(nodes))
    }

    fn builder(&self, timeout: Duration) -> ClusterClientBuilder {
        let builder = ClusterClientBuilder::new(self.urls.clone())
            // Sharded pub/sub arrives as RESP3 pushes.
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(timeout)
            .response_timeout(timeout);
        // The TLS mode itself comes from the `rediss://` node URLs; the CA applies to every
        // node, the ones given and the ones discovered.
        #[cfg(feature = "tls")]
        if let Some(ca) = &self.ca {
            return builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            });
        }
        builder
    }

    /// The nodes as given, without any password.
    fn shown(&self) -> String {
        let hosts: Vec<String> = self
            .urls
            .iter()
            .map(|u| crate::config::redacted(u))
            .collect();
        hosts.join(",")
    }
}

/// The key holding the epoch of `channel`'s hash slot.
pub(crate) fn epoch_key(prefix: &str, channel: &str) -> String {
    format!(
        "{prefix}:{{{}}}:epoch",
        TAGS[&Slot::for_key(format!("{{{channel}}}"))]
    )
}

/// A hash tag of every slot: the shortest decimal numbers, found once (about 170,000 CRCs).
static TAGS: LazyLock<HashMap<Slot, String>> = LazyLock::new(|| {
    let mut tags = HashMap::with_capacity(SLOTS);
    for n in 0u32.. {
        let tag = n.to_string();
        tags.entry(Slot::for_key(&tag)).or_insert(tag);
        if tags.len() == SLOTS {
            break;
        }
    }
    tags
});

/// Connects to the cluster; starts the link task and returns once connected, or after
/// `shared.timeout` still connecting (the task keeps trying). A URL that reaches a Redis
/// that is not a cluster is an error.
pub(crate) async fn start(
    shared: Arc<Shared>,
    nodes: &Nodes,
    commands: mpsc::UnboundedReceiver<Command>,
) -> Result<(), crate::Error> {
    let (pushes, received) = mpsc::unbounded_channel();
    let client = nodes
        .builder(shared.timeout)
        .push_sender(pushes)
        .build()
        .map_err(|e| crate::Error::InvalidUrl(e.to_string()))?;
    let first = match connect(&shared, &client).await {
        Ok(conn) => Some(conn),
        Err(e) if e.contains("cluster support disabled") => {
            return Err(crate::Error::NotACluster(format!(
                "{} is not a Redis Cluster ({e})",
                nodes.shown()
            )))
        }
        Err(e) if e.contains("NOAUTH") || e.contains("WRONGPASS") => {
            return Err(crate::Error::NotACluster(format!("refused the login: {e}")))
        }
        // A certificate the CA does not vouch for stays so: retrying cannot help.
        Err(e) if e.contains("invalid peer certificate") => {
            return Err(crate::Error::TlsRefused(format!("{} ({e})", nodes.shown())))
        }
        Err(e) => {
            tracing::warn!(reason = %e, "cannot connect to the Redis Cluster, retrying");
            shared.state.send_replace(State::Down(e));
            None
        }
    };
    tokio::spawn(link(
        shared,
        nodes.replicas,
        client,
        first,
        received,
        commands,
    ));
    Ok(())
}

/// Opens the cluster connection and makes it ready: the script loaded on every master, every
/// slot's epoch written.
async fn connect(shared: &Shared, client: &ClusterClient) -> Result<ClusterConnection, String> {
    let t = shared.timeout;
    let mut conn = within(t, client.get_async_connection()).await?;
    within(t, crate::backplane::SCRIPT.load_async(&mut conn)).await?;
    init_epochs(shared, &mut conn).await?;
    within(t, conn.subscribe(shared.signal_topic())).await?;
    Ok(conn)
}

/// Writes every slot's epoch, once per deployment: the first node picks the epoch
/// (`P:{init}:epoch`) and sets it where none is (`SET NX`), then marks the deployment ready
/// (`P:{init}:ready`, in the same slot, so both are lost together). A node that finds the
/// mark skips this; nodes starting together all run it, harmlessly.
async fn init_epochs(shared: &Shared, conn: &mut ClusterConnection) -> Result<(), String> {
    let t = shared.timeout;
    let p = &shared.prefix;
    let ready = format!("{p}:{{init}}:ready");
    let epoch_key = format!("{p}:{{init}}:epoch");
    if within(
        t,
        redis::cmd("EXISTS").arg(&ready).query_async::<bool>(conn),
    )
    .await?
    {
        return Ok(());
    }
    let fresh = Epoch::random().to_string();
    let set = redis::cmd("SET")
        .arg(&epoch_key)
        .arg(&fresh)
        .arg("NX")
        .clone();
    within(t, set.query_async::<Value>(conn)).await?;
    let epoch: String = within(t, redis::cmd("GET").arg(&epoch_key).query_async(conn)).await?;
    let keys: Vec<String> = TAGS
        .values()
        .map(|tag| format!("{p}:{{{tag}}}:epoch"))
        .collect();
    let (base, value) = (conn.clone(), epoch.clone());
    let mut sets = futures_util::stream::iter(keys)
        .map(move |key| {
            let (mut conn, value) = (base.clone(), value.clone());
            async move {
                let set = redis::cmd("SET").arg(key).arg(value).arg("NX").clone();
                within(t, set.query_async::<Value>(&mut conn)).await
            }
        })
        .buffer_unordered(512);
    while let Some(done) = sets.next().await {
        done?;
    }
    let mark = redis::cmd("SET").arg(&ready).arg(&epoch).clone();
    within(t, mark.query_async::<Value>(conn)).await?;
    Ok(())
}

/// The link task: connects (with backoff) until it has a connection, then serves watches,
/// the sharded messages and health checks until the backplane is dropped. The cluster client
/// reconnects to nodes, follows failovers and resubscribes by itself.
async fn link(
    shared: Arc<Shared>,
    replicas: usize,
    client: ClusterClient,
    mut conn: Option<ClusterConnection>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = Backoff::new(&shared);
    let conn = loop {
        if let Some(conn) = conn.take() {
            break conn;
        }
        let why = "not connected to the Redis Cluster, retrying";
        if !wait_out(backoff.delay(), &mut commands, why, drop).await {
            return;
        }
        match connect(&shared, &client).await {
            Ok(c) => conn = Some(c),
            Err(e) => {
                tracing::warn!(reason = %e, "cannot connect to the Redis Cluster, retrying");
                shared.state.send_replace(State::Down(e));
            }
        }
    };
    shared.set_conn(Some(Conn::Cluster(conn.clone())));
    tracing::info!(prefix = %shared.prefix, "connected to the Redis Cluster");
    serve(&shared, replicas, conn, &mut pushes, &mut commands).await;
}

/// Serves the link until the command queue closes.
async fn serve(
    shared: &Shared,
    replicas: usize,
    conn: ClusterConnection,
    pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) {
    let mut watched: HashSet<Channel> = HashSet::new();
    // Topics subscribed by this task whose first confirmation has not arrived: any other
    // confirmation is the client resubscribing after a reconnect or failover.
    let mut first: HashSet<Vec<u8>> = HashSet::new();
    let mut ping = tokio::time::interval_at(Instant::now() + CHECK_EVERY, CHECK_EVERY);
    let mut masters = check(shared, &conn, replicas).await;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let mut batch = Vec::new();
                let mut then = None;
                match command {
                    Command::Watch(channel, reply) => batch.push((channel, reply)),
                    unwatch => then = Some(unwatch),
                }
                // The watches of one subscribe arrive together: they go out together. Queue
                // order is kept: an unwatch ends the batch.
                while then.is_none() && !batch.is_empty() && batch.len() < SUBSCRIBE_BATCH {
                    match commands.try_recv() {
                        Ok(Command::Watch(channel, reply)) => batch.push((channel, reply)),
                        Ok(unwatch) => then = Some(unwatch),
                        Err(_) => break,
                    }
                }
                watch_all(shared, &conn, &mut watched, &mut first, batch).await;
                if let Some(Command::Unwatch(channel)) = then {
                    if watched.remove(&channel) {
                        let mut conn = conn.clone();
                        // A failure leaves a subscription whose messages are ignored.
                        let _ = within(shared.timeout, conn.sunsubscribe(shared.topic(&channel))).await;
                    }
                }
            },
            push = pushes.recv() => match push {
                None => return,
                Some(push) => received(shared, &watched, &mut first, push),
            },
            _ = ping.tick() => {
                shared.retained.sweep();
                let now = check(shared, &conn, replicas).await;
                moved(shared, &conn, &watched, &mut first, &mut masters, now).await;
            }
            () = shared.broken.notified() => {
                let now = check(shared, &conn, replicas).await;
                moved(shared, &conn, &watched, &mut first, &mut masters, now).await;
            }
        }
    }
}

/// When the cluster's masters changed (a failover, a node replaced), subscribes every
/// watched channel again, on its slot's master as the client now sees it, and catches each
/// up from history: the client resubscribes after reconnects by itself, but a node that only
/// subscribes may not notice a failover for a long time. A channel subscribed twice (on its
/// old master, now a replica, and its new one) gets its events twice, which subscriptions
/// drop by offset.
async fn moved(
    shared: &Shared,
    conn: &ClusterConnection,
    watched: &HashSet<Channel>,
    first: &mut HashSet<Vec<u8>>,
    masters: &mut Vec<String>,
    now: Vec<String>,
) {
    if now.is_empty() || now == *masters {
        return;
    }
    let changed = !masters.is_empty();
    *masters = now;
    if !changed || watched.is_empty() {
        return;
    }
    tracing::info!(
        channels = watched.len(),
        "the cluster's masters changed: subscribing again"
    );
    let again = ssubscribe(shared, conn, watched.iter(), first).await;
    if let Some(Err(e)) = again.into_iter().find(Result::is_err) {
        shared.command_failed(&e);
    }
    if let Some(hub) = shared.sink.get() {
        for channel in watched {
            hub.catch_up(channel);
        }
    }
}

/// `SSUBSCRIBE`s each of `channels` on its shard's connection, all at once, noting each topic
/// as awaiting its first confirmation; one result per channel.
async fn ssubscribe<'a>(
    shared: &Shared,
    conn: &ClusterConnection,
    channels: impl Iterator<Item = &'a Channel>,
    first: &mut HashSet<Vec<u8>>,
) -> Vec<Result<(), String>> {
    join_all(channels.map(|channel| {
        let topic = shared.topic(channel);
        first.insert(topic.clone().into_bytes());
        let mut conn = conn.clone();
        async move { within(shared.timeout, conn.ssubscribe(topic)).await }
    }))
    .await
}

/// Subscribes to the channels of `batch` not watched yet, each on its shard's connection, and
/// answers each request once its shard confirmed (or failed: then only that channel's
/// subscribers get `503`).
async fn watch_all(
    shared: &Shared,
    conn: &ClusterConnection,
    watched: &mut HashSet<Channel>,
    first: &mut HashSet<Vec<u8>>,
    batch: Vec<(Channel, oneshot::Sender<Result<(), String>>)>,
) {
    let fresh = unwatched(&batch, watched);
    let results = ssubscribe(shared, conn, fresh.iter(), first).await;
    let mut failed = HashMap::new();
    for (channel, result) in fresh.into_iter().zip(results) {
        match result {
            Ok(()) => {
                watched.insert(channel);
            }
            Err(e) => {
                first.remove(shared.topic(&channel).as_bytes());
                shared.command_failed(&e);
                failed.insert(channel, e);
            }
        }
    }
    for (channel, reply) in batch {
        let _ = reply.send(failed.get(&channel).map_or(Ok(()), |e| Err(e.clone())));
    }
}

/// A push from the cluster client: a sharded message, or a (re)subscription confirmation.
fn received(
    shared: &Shared,
    watched: &HashSet<Channel>,
    first: &mut HashSet<Vec<u8>>,
    push: PushInfo,
) {
    let Some(hub) = shared.sink.get() else { return };
    let bytes = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    if !matches!(push.kind, PushKind::SMessage | PushKind::Message) {
        tracing::debug!(?push, "push from the cluster");
    }
    match push.kind {
        PushKind::SMessage => match bytes(push.data.get(1)).and_then(|m| codec::decode(&m)) {
            Some(event) if watched.contains(event.channel()) => hub.deliver(event),
            // Late message of a channel just unwatched.
            Some(_) => {}
            None => tracing::warn!(
                "ignored a sharded message that is not an rt event; is another program publishing under this key prefix?"
            ),
        },
        PushKind::SSubscribe => {
            let Some(topic) = bytes(push.data.first()) else { return };
            if first.remove(&topic) {
                return;
            }
            // Resubscribed: whatever was published meanwhile is in history.
            let channel = std::str::from_utf8(&topic)
                .ok()
                .and_then(|t| t.strip_prefix(&format!("{}:c:{{", shared.prefix)))
                .and_then(|t| t.strip_suffix('}'))
                .and_then(|c| Channel::new(c).ok());
            if let Some(channel) = channel.filter(|c| watched.contains(c)) {
                hub.catch_up(&channel);
            }
        }
        PushKind::Message => match bytes(push.data.get(1)).map(|m| Signal::decode(&m)) {
            Some(Ok(signal)) => hub.signal(signal),
            // Sent by a newer node, or by another program under our prefix.
            Some(Err(e)) => tracing::debug!(error = %e, "ignored a signal"),
            None => {}
        },
        // A node connection dropped: the client reconnects; health says so meanwhile.
        PushKind::Disconnection => shared.broken.notify_one(),
        _ => {}
    }
}

/// Checks the cluster as its nodes see it (`CLUSTER NODES`, from any node) and as this node
/// reaches it (a `PING` routed to every shard's slots, which also makes the client notice a
/// failover and move its subscriptions): health is up only when no node is failing, every
/// shard answers and each master has the `replicas` its publishes wait for (with fewer, its
/// channels answer `503`). Returns the healthy masters' addresses, sorted.
async fn check(shared: &Shared, conn: &ClusterConnection, replicas: usize) -> Vec<String> {
    let mut masters = Vec::new();
    let problem = match shards(shared, conn).await {
        Err(e) => Some(format!("the cluster does not answer: {e}")),
        Ok(shards) => {
            masters = shards
                .iter()
                .filter(|s| !s.failing)
                .map(|s| s.master.clone())
                .collect();
            masters.sort();
            let mut problem = shards.iter().find_map(|shard| shard.problem(replicas));
            for shard in &shards {
                let mut conn = conn.clone();
                let ping = conn.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        shard.slot,
                        SlotAddr::Master,
                    ))),
                );
                if let Err(e) = within(shared.timeout, ping).await {
                    problem.get_or_insert(format!(
                        "the shard of slot {} ({}) does not answer: {e}",
                        shard.slot, shard.master
                    ));
                }
            }
            problem
        }
    };
    match problem {
        Some(reason) => {
            shared.state.send_replace(State::Down(reason));
        }
        None => {
            shared.state.send_if_modified(|s| {
                let changed = *s != State::Up;
                *s = State::Up;
                changed
            });
        }
    }
    masters
}

/// A master serving slots, as `CLUSTER NODES` shows it.
#[derive(Debug, PartialEq)]
struct Shard {
    master: String,
    /// Its first slot, to route commands to it.
    slot: u16,
    failing: bool,
    /// Its replicas that are not failing.
    replicas: usize,
}

impl Shard {
    fn problem(&self, replicas: usize) -> Option<String> {
        if self.failing {
            Some(format!("the master {} is failing", self.master))
        } else if self.replicas < replicas {
            Some(format!(
                "the master {} has {} replica(s), fewer than the {replicas} publishes wait for: its channels answer 503",
                self.master, self.replicas
            ))
        } else {
            None
        }
    }
}

/// The shards of the cluster, from `CLUSTER NODES` on any node.
async fn shards(shared: &Shared, conn: &ClusterConnection) -> Result<Vec<Shard>, String> {
    let mut conn = conn.clone();
    let nodes = conn.route_command(
        redis::cmd("CLUSTER").arg("NODES").clone(),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
    );
    match within(shared.timeout, nodes).await? {
        Value::BulkString(b) => Ok(parse_nodes(&String::from_utf8_lossy(&b))),
        Value::VerbatimString { text, .. } => Ok(parse_nodes(&text)),
        other => Err(format!("unexpected CLUSTER NODES reply {other:?}")),
    }
}

/// `CLUSTER NODES`: `id addr flags master-id ping pong epoch link slot...` per line.
fn parse_nodes(text: &str) -> Vec<Shard> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect();
    let failing = |flags: &str| {
        flags
            .split(',')
            .any(|f| f.starts_with("fail") || f == "noaddr")
    };
    lines
        .iter()
        .filter(|f| f[2].contains("master"))
        .filter_map(|f| {
            let slot = f[8..]
                .iter()
                .find_map(|range| range.split('-').next()?.parse::<u16>().ok())?;
            Some(Shard {
                master: f[1].split('@').next().unwrap_or_default().to_owned(),
                slot,
                failing: failing(f[2]),
                replicas: lines
                    .iter()
                    .filter(|r| r[3] == f[0] && !failing(r[2]))
                    .count(),
            })
        })
        .collect()
}

/// Sends the node's publishes: each batch taken from the queue is split per channel, one
/// script call each, all in flight together; a channel's next call waits for its previous
/// one, so each channel keeps the order of the queue. Ends when the backplane is dropped.
pub(crate) async fn publish_batches(
    shared: Arc<Shared>,
    retention: Retention,
    window_ms: u64,
    replicas: usize,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let mut flying = FuturesUnordered::new();
    // Per channel, whether its last call in the air is done.
    let mut tails: HashMap<Channel, watch::Receiver<bool>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = flying.next(), if !flying.is_empty() => {}
            first = queue.recv(), if flying.len() < GROUPS_IN_FLIGHT => {
                let Some(first) = first else { break };
                tails.retain(|_, done| !*done.borrow());
                let mut groups: Vec<(Channel, Vec<Pending>)> = Vec::new();
                for pending in take_batch(first, &mut queue) {
                    let channel = &pending.event.channel;
                    match groups.iter_mut().find(|(c, _)| c == channel) {
                        Some((_, group)) => group.push(pending),
                        None => groups.push((channel.clone(), vec![pending])),
                    }
                }
                for (channel, group) in groups {
                    let (done, tail) = watch::channel(false);
                    let before = tails.insert(channel.clone(), tail);
                    let shared = shared.clone();
                    flying.push(async move {
                        if let Some(mut before) = before {
                            // Done or dropped: either way this call may go.
                            let _ = before.wait_for(|d| *d).await;
                        }
                        let result = store(&shared, retention, window_ms, replicas, &channel, &group).await;
                        answer(&shared, group, result);
                        done.send_replace(true);
                    });
                }
            }
        }
    }
    while flying.next().await.is_some() {}
}

/// Stores one channel's publishes, waits until `replicas` replicas have them, then sends the
/// new ones to the channel's subscribers. The script's reply, or why the events cannot be
/// acknowledged.
async fn store(
    shared: &Shared,
    retention: Retention,
    window_ms: u64,
    replicas: usize,
    channel: &Channel,
    group: &[Pending],
) -> Result<Vec<Vec<u8>>, Error> {
    let reply = run(
        shared,
        publish_call(shared, retention, window_ms, channel.as_str(), group),
    )
    .await?;
    let fresh: Vec<&Vec<u8>> = reply
        .chunks(3)
        .filter(|part| part.first().is_some_and(|flag| flag.as_slice() == b"0"))
        .filter_map(|part| part.get(1))
        .collect();
    if fresh.is_empty() {
        return Ok(reply);
    }
    if replicas > 0 {
        replicated(shared, channel, replicas).await?;
    }
    let mut deliver = invocation(shared, retention, "deliver", channel.as_str());
    for message in fresh {
        deliver.arg(message.as_slice());
    }
    // Stored and replicated: a failed send only delays live delivery (subscribers read the
    // events from history when the next one shows the gap), so the publish still succeeded.
    if let Err(e) = run(shared, deliver).await {
        tracing::warn!(%channel, error = %e, "events stored but not sent on sharded pub/sub");
    }
    Ok(reply)
}

/// `WAIT`s on the master of `channel`'s slot until `replicas` replicas have what this node
/// wrote there.
async fn replicated(shared: &Shared, channel: &Channel, replicas: usize) -> Result<(), Error> {
    let Some(Conn::Cluster(mut conn)) = shared.conn() else {
        return Err(Error::Unavailable(
            "not connected to the Redis Cluster".into(),
        ));
    };
    let wait_ms = u64::try_from(shared.timeout.as_millis() / 2).unwrap_or(u64::MAX);
    let route = Route::with_key(
        epoch_key(&shared.prefix, channel.as_str()),
        SlotAddr::Master,
    );
    let wait = conn.route_command(
        redis::cmd("WAIT").arg(replicas).arg(wait_ms).clone(),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
    );
    match within(shared.timeout, wait).await {
        Ok(Value::Int(n)) if usize::try_from(n).is_ok_and(|n| n >= replicas) => Ok(()),
        Ok(answer) => {
            // Health finds out which master lacks replicas.
            shared.broken.notify_one();
            Err(Error::Unavailable(format!(
            "Redis Cluster: the event is stored on its shard's master but {replicas} replica(s) did not confirm it within {wait_ms} ms (WAIT answered {answer:?}); it may be lost if that master fails, retry with the same message id"
            )))
        }
        Err(e) => {
            shared.command_failed(&e);
            Err(Error::Unavailable(format!("Redis Cluster: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_urls() {
        assert!(Nodes::parse("redis://h:1", None).unwrap().is_none());
        let n = Nodes::parse("redis-cluster://a:1,b:2", None)
            .unwrap()
            .unwrap();
        assert_eq!(n.urls, ["redis://a:1", "redis://b:2"]);
        assert_eq!(n.replicas, 1);
        let n = Nodes::parse("redis-cluster://u:p@a:1,b:2?replicas=0", None)
            .unwrap()
            .unwrap();
        assert_eq!(n.urls, ["redis://u:p@a:1", "redis://u:p@b:2"]);
        assert_eq!(n.replicas, 0);
        for bad in [
            "redis-cluster://",
            "redis-cluster://a",
            "redis-cluster://a:1,",
            "redis-cluster://a:x",
            "redis-cluster://a:1?replicas=x",
            "redis-cluster://a:1?db=2",
        ] {
            assert!(Nodes::parse(bad, None).is_err(), "{bad}");
        }
        // A CA is for TLS: with a plain cluster URL it would be ignored, so it is refused.
        assert!(matches!(
            Nodes::parse("redis-cluster://a:1", Some(b"pem")),
            Err(crate::Error::InvalidSetting(_))
        ));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn parses_tls_cluster_urls() {
        let n = Nodes::parse("rediss-cluster://u:p@a:1,b:2?replicas=0", None)
            .unwrap()
            .unwrap();
        assert_eq!(n.urls, ["rediss://u:p@a:1", "rediss://u:p@b:2"]);
        assert_eq!(n.replicas, 0);
        assert_eq!(n.shown(), "rediss://***@a:1,rediss://***@b:2");
        // A CA whose PEM is broken is refused before connecting.
        let broken = b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        assert!(Nodes::parse("rediss-cluster://a:1", Some(broken)).is_err());
    }

    #[test]
    fn reads_the_shards_of_cluster_nodes() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected 5461-10922
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
e 127.0.0.1:7004@17004 slave,fail? c 0 0 3 connected
f 127.0.0.1:7005@17005 master - 0 0 7 connected 5461-10922
g 127.0.0.1:7006@17006 master,noaddr - 0 0 0 disconnected
";
        let shards = parse_nodes(text);
        let seen: Vec<_> = shards
            .iter()
            .map(|s| (s.master.as_str(), s.slot, s.failing, s.replicas))
            .collect();
        assert_eq!(
            seen,
            [
                ("127.0.0.1:7000", 0, false, 1),
                ("127.0.0.1:7001", 5461, true, 0),
                ("127.0.0.1:7002", 10923, false, 0),
                ("127.0.0.1:7005", 5461, false, 0),
            ]
        );
        assert_eq!(shards[0].problem(1), None);
        assert!(shards[1].problem(0).unwrap().contains("failing"));
        assert!(shards[2].problem(1).unwrap().contains("0 replica(s)"));
        assert_eq!(shards[2].problem(0), None);
    }

    #[test]
    fn every_slot_has_an_epoch_key_in_it() {
        assert_eq!(TAGS.len(), SLOTS);
        for channel in ["news", "a:b", "x}y", "{z}"] {
            let key = epoch_key("rt", channel);
            assert_eq!(
                Slot::for_key(&key),
                Slot::for_key(format!("rt:{{{channel}}}:heads")),
                "{channel}"
            );
        }
    }
}
