//! The node's link to Redis: one task owns the pub/sub connection and (re)establishes the
//! command connection, with capped, jittered exponential backoff.
//!
//! Watch and unwatch requests go through one ordered queue to that task, so a channel that is
//! unwatched and watched again at once ends up subscribed, whatever the timing. After every
//! reconnect the task resubscribes and asks the hub to catch up each watched channel from
//! history: whatever was published while the link was down is replayed from Redis.
//!
//! The pub/sub connection also listens to the node's signal topic from the moment it
//! connects; signals sent while it was down are lost (they are best effort).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, RedisFuture};
use rt_core::{Channel, Signal, Sink};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::{timeout, Instant};

use crate::codec;
use crate::retained::Retained;

/// How often an idle pub/sub connection (or every master of a cluster) is checked, so a silently dead link is noticed.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE when resubscribing after a reconnect.
pub(crate) const SUBSCRIBE_BATCH: usize = 256;

/// The link's state, as `health()` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    Up,
    Down(String),
}

/// What the backplane's methods and the link task share.
pub(crate) struct Shared {
    pub(crate) prefix: String,
    /// Whether Redis is a Redis Cluster (keys and pub/sub channels carry hash tags).
    pub(crate) cluster: bool,
    pub(crate) timeout: Duration,
    pub(crate) reconnect: (Duration, Duration),
    conn: Mutex<Option<Conn>>,
    pub(crate) state: watch::Sender<State>,
    /// A command failed: the task checks the connection (and reconnects if it is gone).
    pub(crate) broken: Notify,
    pub(crate) sink: OnceLock<Arc<dyn Sink>>,
    /// Retained events per channel as Redis last reported them, for the history gauge.
    pub(crate) retained: Retained,
}

pub(crate) enum Command {
    Watch(Channel, oneshot::Sender<Result<(), String>>),
    Unwatch(Channel),
}

impl Shared {
    pub(crate) fn new(
        cluster: bool,
        prefix: String,
        timeout: Duration,
        reconnect: (Duration, Duration),
        history_age: Duration,
    ) -> Self {
        Shared {
            cluster,
            prefix,
            timeout,
            reconnect,
            conn: Mutex::new(None),
            state: watch::Sender::new(State::Connecting),
            broken: Notify::new(),
            sink: OnceLock::new(),
            retained: Retained::new(history_age),
        }
    }

    /// The command connection, if the link is up.
    pub(crate) fn conn(&self) -> Option<Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_conn(&self, conn: Option<Conn>) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// A command failed: report degraded at once and let the task find out whether the
    /// connection is gone.
    pub(crate) fn command_failed(&self, reason: &str) {
        self.state
            .send_replace(State::Down(format!("a command failed: {reason}")));
        self.broken.notify_one();
    }

    /// The pub/sub channel of `channel` (on Redis Cluster, a sharded one in the channel's
    /// slot).
    pub(crate) fn topic(&self, channel: &Channel) -> String {
        if self.cluster {
            format!("{}:c:{{{channel}}}", self.prefix)
        } else {
            format!("{}:c:{channel}", self.prefix)
        }
    }

    /// The pub/sub channel of signals, which no event channel's topic can equal (those all
    /// start with `P:c:`).
    pub(crate) fn signal_topic(&self) -> String {
        format!("{}:signal", self.prefix)
    }
}

/// The command connection: to one Redis, or to every node of a Redis Cluster (which routes
/// each command to its key's slot and follows `MOVED`, `ASK` and failovers by itself).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Why the link went down.
enum Exit {
    /// The backplane was dropped: stop.
    Closed,
    /// The connection was lost.
    Lost(String),
}

/// Capped, jittered exponential backoff between connection attempts.
pub(crate) struct Backoff {
    pub(crate) next: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// Starts at `shared`'s minimum delay.
    pub(crate) fn new(shared: &Shared) -> Self {
        let (min, max) = shared.reconnect;
        Backoff {
            next: min,
            min,
            max,
        }
    }

    pub(crate) fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        // Between half and all of it, so that nodes cut off together do not retry together.
        d / 2 + d.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Runs the link until the backplane is dropped (its command queue closes).
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut watched: HashSet<Channel> = HashSet::new();
    let mut backoff = Backoff::new(&shared);
    loop {
        match connect(&shared, &client, &watched).await {
            Ok((conn, sink, stream)) => {
                shared.set_conn(Some(Conn::Single(conn)));
                shared.state.send_replace(State::Up);
                backoff.next = backoff.min;
                tracing::info!(prefix = %shared.prefix, channels = watched.len(), "connected to Redis");
                if let Some(hub) = shared.sink.get() {
                    // Anything published while we were away is in history.
                    for channel in &watched {
                        hub.catch_up(channel);
                    }
                }
                let exit = serve(&shared, &mut watched, &mut commands, sink, stream).await;
                shared.set_conn(None);
                match exit {
                    Exit::Closed => return,
                    Exit::Lost(reason) => {
                        tracing::warn!(%reason, "lost the connection to Redis, reconnecting");
                        shared.state.send_replace(State::Down(reason));
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "cannot connect to Redis, retrying");
                shared.state.send_replace(State::Down(reason));
            }
        }
        let delay = backoff.delay();
        if !wait_out(
            delay,
            &mut commands,
            "not connected to Redis, reconnecting",
            |channel| {
                watched.remove(&channel);
            },
        )
        .await
        {
            return;
        }
    }
}

/// Waits `delay` before the next connection attempt. Meanwhile new watches fail fast with
/// `why` (their subscribers get 503) and unwatches go to `unwatched`. Returns false when the
/// backplane was dropped.
pub(crate) async fn wait_out(
    delay: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    why: &str,
    mut unwatched: impl FnMut(Channel),
) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Watch(_, reply)) => {
                    let _ = reply.send(Err(why.to_owned()));
                }
                Some(Command::Unwatch(channel)) => unwatched(channel),
            },
        }
    }
}

async fn connect(
    shared: &Shared,
    client: &redis::Client,
    watched: &HashSet<Channel>,
) -> Result<(MultiplexedConnection, PubSubSink, PubSubStream), String> {
    let t = shared.timeout;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t))
        .set_response_timeout(Some(t));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    // Loaded before the first publish batch: batches in flight together would otherwise all
    // meet NOSCRIPT and each retry on its own (see `publish_batches`).
    within(t, crate::backplane::SCRIPT.load_async(&mut conn)).await?;
    let pubsub = timeout(t, client.get_async_pubsub())
        .await
        .map_err(|_| "timed out opening the pub/sub connection".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sink, stream) = pubsub.split();
    within(t, sink.subscribe(shared.signal_topic())).await?;
    let topics: Vec<String> = watched.iter().map(|c| shared.topic(c)).collect();
    for batch in topics.chunks(SUBSCRIBE_BATCH) {
        within(t, sink.subscribe(batch)).await?;
    }
    Ok((conn, sink, stream))
}

/// `f`, failing after `t`.
pub(crate) async fn within<T>(
    t: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("Redis did not answer within {t:?}")),
    }
}

/// The channels of a batch of watch requests not watched yet, sorted, once each.
pub(crate) fn unwatched<T>(batch: &[(Channel, T)], watched: &HashSet<Channel>) -> Vec<Channel> {
    let mut fresh: Vec<Channel> = batch
        .iter()
        .map(|(channel, _)| channel)
        .filter(|channel| !watched.contains(*channel))
        .cloned()
        .collect();
    fresh.sort();
    fresh.dedup();
    fresh
}

/// Subscribes to the channels of `batch` not watched yet, with one SUBSCRIBE, and answers each
/// request.
async fn watch_all(
    shared: &Shared,
    sink: &mut PubSubSink,
    watched: &mut HashSet<Channel>,
    batch: Vec<(Channel, oneshot::Sender<Result<(), String>>)>,
) -> Result<(), String> {
    let fresh = unwatched(&batch, watched);
    let result = if fresh.is_empty() {
        Ok(())
    } else {
        let topics: Vec<String> = fresh.iter().map(|c| shared.topic(c)).collect();
        within(shared.timeout, sink.subscribe(topics)).await
    };
    if result.is_ok() {
        watched.extend(fresh);
    }
    // Replying only after Redis confirmed the SUBSCRIBE is what makes `watch()` mean "every
    // later publish will be delivered".
    for (_, reply) in batch {
        let _ = reply.send(result.clone());
    }
    result
}

async fn serve(
    shared: &Shared,
    watched: &mut HashSet<Channel>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) -> Exit {
    let t = shared.timeout;
    let signals = shared.signal_topic();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(mut command) = command else {
                    return Exit::Closed;
                };
                loop {
                    match command {
                        Command::Watch(channel, reply) => {
                            // The watches of one subscribe arrive together: one SUBSCRIBE takes
                            // them all. Queue order is kept: an unwatch ends the batch.
                            let mut batch = vec![(channel, reply)];
                            let mut then = None;
                            while batch.len() < SUBSCRIBE_BATCH {
                                match commands.try_recv() {
                                    Ok(Command::Watch(channel, reply)) => batch.push((channel, reply)),
                                    Ok(unwatch) => {
                                        then = Some(unwatch);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            if let Err(e) = watch_all(shared, &mut sink, watched, batch).await {
                                return Exit::Lost(e);
                            }
                            match then {
                                Some(next) => command = next,
                                None => break,
                            }
                        }
                        Command::Unwatch(channel) => {
                            if watched.remove(&channel) {
                                if let Err(e) = within(t, sink.unsubscribe(shared.topic(&channel))).await {
                                    return Exit::Lost(e);
                                }
                            }
                            break;
                        }
                    }
                }
            },
            message = stream.next() => match message {
                None => return Exit::Lost("the pub/sub connection closed".into()),
                Some(message) if message.get_channel_name() == signals => {
                    match Signal::decode(message.get_payload_bytes()) {
                        Ok(signal) => {
                            if let Some(hub) = shared.sink.get() {
                                hub.signal(signal);
                            }
                        }
                        // Sent by a newer node, or by another program under our prefix.
                        Err(e) => tracing::debug!(error = %e, "ignored a signal"),
                    }
                }
                Some(message) => match codec::decode(message.get_payload_bytes()) {
                    Some(event) if watched.contains(event.channel()) => {
                        if let Some(hub) = shared.sink.get() {
                            hub.deliver(event);
                        }
                    }
                    // Late message of a channel just unwatched.
                    Some(_) => {}
                    None => tracing::warn!(
                        topic = message.get_channel_name(),
                        "ignored a message that is not an rt event; is another program publishing under this key prefix?"
                    ),
                },
            },
            _ = ping.tick() => {
                // Piggybacks on the ping timer: a quiet node's history gauge decays too.
                shared.retained.sweep();
                if let Err(e) = within(t, sink.ping::<redis::Value>()).await {
                    return Exit::Lost(format!("pub/sub ping failed: {e}"));
                }
            }
            () = shared.broken.notified() => {
                let Some(mut conn) = shared.conn() else {
                    return Exit::Lost("no command connection".into());
                };
                match within(t, redis::cmd("PING").query_async::<String>(&mut conn)).await {
                    // The failure was the command's own (e.g. Redis out of memory).
                    Ok(_) => { shared.state.send_replace(State::Up); }
                    Err(e) => return Exit::Lost(format!("command connection lost: {e}")),
                }
            }
        }
    }
}
