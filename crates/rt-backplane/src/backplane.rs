//! [`RedisBackplane`]: rt-core's [`Backplane`] on Redis.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use rt_core::{
    Backplane, Channel, ChannelHead, Epoch, Error, Event, Health, NewEvent, Presence, Published,
    Read, ReadFrom, Retention, Signal, Since, Sink,
};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::config::{redacted, RedisConfig, Target};
use crate::flight::Flights;
use crate::link::{self, Command, Shared, State};
use crate::presence::RedisPresence;

/// Positions are assigned and history is read by this one script; see its header.
pub(crate) static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("script.lua")));

/// A client's publishes in flight at once (see [`Backplane::publish_pipeline`]): a client
/// publishing 20,000 a second has this many in flight when batches take 25 ms to come back
/// (as on a busy machine); few enough to bound what one connection holds (each is its event
/// and a small future).
const PUBLISH_PIPELINE: usize = 512;

/// Publishes sent in one script call at most.
const MAX_BATCH: usize = 256;

/// Batches of publishes in flight at once: the next batch goes out while the previous one
/// is answered, so a round trip (and the scheduling delays of a busy machine) is not paid
/// between batches.
const BATCHES_IN_FLIGHT: usize = 4;

/// The gathering time of identical history reads (see [`Flights`]): while one is in the air,
/// the next leaves at the earliest this long after it. A storm's reads on one node then cost at
/// most one script call per this time per cursor; a lone read never waits for it.
const READ_GATHER: Duration = Duration::from_millis(20);

/// Ages beyond this are treated as "forever" (Redis rejects absurd expiry times).
const MAX_AGE_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// A [`Backplane`] on Redis: several rt nodes share one ordered, resumable stream per channel.
///
/// - Positions are assigned by a Lua script, atomically in Redis, so every node agrees on each
///   channel's order and offsets. The epoch lives in Redis: when Redis loses its data, a new
///   epoch starts and resuming clients are told (`recovered: false`).
/// - History is a Redis stream per channel, bounded by count and age, so a client resumes
///   exactly on any node.
/// - Each node subscribes to a channel's pub/sub topic once, while it has local subscribers.
/// - While Redis is unreachable, [`Backplane::publish`] fails at once with
///   [`Error::Unavailable`] (HTTP `503`), [`Backplane::health`] is degraded, and a background
///   task reconnects with capped, jittered exponential backoff; then every watched channel is
///   caught up from history.
///
/// Must be created inside a Tokio runtime (it spawns its link task, which ends when the
/// backplane is dropped).
pub struct RedisBackplane {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    retention: Retention,
    /// The node's publishes, to the task that sends them to Redis in batches.
    publishes: mpsc::UnboundedSender<Pending>,
    url: String,
    /// Identical history reads (`read` and `join` scripts with the same arguments) in flight.
    reads: Flights<Result<Arc<Vec<Vec<u8>>>, Error>>,
    presence: RedisPresence,
}

impl RedisBackplane {
    /// Checks `config`, starts the link to Redis and waits up to `config.timeout` for the first
    /// connection. An unreachable Redis is not an error: the backplane starts degraded and
    /// keeps trying, so a node can start before its Redis.
    pub async fn connect(config: RedisConfig) -> Result<Self, crate::Error> {
        let target = config.target()?;
        let shared = Arc::new(Shared::new(
            matches!(target, Target::Cluster(_)),
            config.prefix.clone(),
            config.timeout,
            (config.reconnect_min, config.reconnect_max),
            config.retention.max_age,
        ));
        let (commands, queue) = mpsc::unbounded_channel();
        let (publishes, publish_queue) = mpsc::unbounded_channel();
        let window_ms = u64::try_from(config.idempotency_window.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_AGE_MS);
        let (shared2, retention) = (shared.clone(), config.retention);
        match target {
            Target::Single(client) => {
                tokio::spawn(link::run(shared.clone(), *client, queue));
                tokio::spawn(publish_batches(
                    shared2,
                    retention,
                    window_ms,
                    publish_queue,
                ));
            }
            Target::Cluster(nodes) => {
                crate::cluster::start(shared.clone(), &nodes, queue).await?;
                tokio::spawn(crate::cluster::publish_batches(
                    shared2,
                    retention,
                    window_ms,
                    nodes.replicas,
                    publish_queue,
                ));
            }
        }
        let presence = RedisPresence::start(shared.clone(), config.presence_ttl);
        let backplane = RedisBackplane {
            presence,
            shared,
            commands,
            retention: config.retention,
            publishes,
            url: redacted(&config.url),
            reads: Flights::new(READ_GATHER),
        };
        backplane.wait_until_up(config.timeout).await;
        Ok(backplane)
    }

    /// Waits up to `within` for the link to Redis to be up; returns whether it is.
    pub async fn wait_until_up(&self, within: Duration) -> bool {
        let mut state = self.shared.state.subscribe();
        tokio::time::timeout(within, state.wait_for(|s| *s == State::Up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn invocation(&self, mode: &str, channel: &str) -> redis::ScriptInvocation<'static> {
        invocation(&self.shared, self.retention, mode, channel)
    }

    async fn run(&self, call: redis::ScriptInvocation<'static>) -> Result<Vec<Vec<u8>>, Error> {
        run(&self.shared, call).await
    }

    /// Runs a read-only script call shared with identical concurrent ones (see
    /// [`Flights`]); `key` names the call's arguments.
    async fn run_shared(
        &self,
        key: String,
        call: impl Fn() -> redis::ScriptInvocation<'static>,
    ) -> Result<Arc<Vec<Vec<u8>>>, Error> {
        self.reads
            .run(key, || async { self.run(call()).await.map(Arc::new) })
            .await
    }

    /// Runs the script's `read` mode, noting how many events the channel retains.
    async fn read_raw(
        &self,
        channel: &Channel,
        after: u64,
        limit: usize,
    ) -> Result<Arc<Vec<Vec<u8>>>, Error> {
        // Channel names hold no spaces.
        let key = format!("read {channel} {after} {limit}");
        let reply = self
            .run_shared(key, || {
                let mut call = self.invocation("read", channel.as_str());
                call.arg(after).arg(limit);
                call
            })
            .await?;
        if let (Ok(head), Ok(oldest)) =
            (number(reply.get(1), "head"), number(reply.get(2), "oldest"))
        {
            // Offsets oldest..=head are retained; oldest is head + 1 when none are.
            self.shared
                .retained
                .record(channel, (head + 1).saturating_sub(oldest));
        }
        Ok(reply)
    }
}

/// A script call in `mode` on `channel`, with the arguments every mode takes. On Redis
/// Cluster, `channel` also routes the call: its slot's epoch key is the call's key.
pub(crate) fn invocation(
    shared: &Shared,
    retention: Retention,
    mode: &str,
    channel: &str,
) -> redis::ScriptInvocation<'static> {
    let max_age_ms =
        u64::try_from(retention.max_age.as_millis()).map_or(MAX_AGE_MS, |ms| ms.min(MAX_AGE_MS));
    let mut call = SCRIPT.prepare_invoke();
    if shared.cluster {
        call.key(crate::cluster::epoch_key(&shared.prefix, channel));
    }
    call.arg(&shared.prefix)
        .arg(mode)
        .arg(channel)
        // Becomes the epoch only if Redis has none (first use, or its data was lost).
        .arg(Epoch::random().to_string())
        .arg(retention.max_len)
        .arg(max_age_ms);
    call
}

/// Runs a script call within the timeout; a failure marks the link degraded.
pub(crate) async fn run(
    shared: &Shared,
    call: redis::ScriptInvocation<'static>,
) -> Result<Vec<Vec<u8>>, Error> {
    let Some(mut conn) = shared.conn() else {
        return Err(Error::Unavailable(
            "not connected to Redis (reconnecting)".into(),
        ));
    };
    let reason = match tokio::time::timeout(shared.timeout, call.invoke_async(&mut conn)).await {
        Ok(Ok(reply)) => return Ok(reply),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("Redis did not answer within {:?}", shared.timeout),
    };
    shared.command_failed(&reason);
    Err(Error::Unavailable(format!("Redis: {reason}")))
}

/// A publish waiting for its batch.
pub(crate) struct Pending {
    pub(crate) event: NewEvent,
    reply: oneshot::Sender<Result<Published, Error>>,
}

/// `first` and what else is queued, up to a batch.
pub(crate) fn take_batch(
    first: Pending,
    queue: &mut mpsc::UnboundedReceiver<Pending>,
) -> Vec<Pending> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

/// The script call storing `batch` (`channel`: see [`invocation`]).
pub(crate) fn publish_call(
    shared: &Shared,
    retention: Retention,
    window_ms: u64,
    channel: &str,
    batch: &[Pending],
) -> redis::ScriptInvocation<'static> {
    let mut call = invocation(shared, retention, "publish", channel);
    call.arg(window_ms);
    for Pending { event, .. } in batch {
        call.arg(event.channel.as_str())
            .arg(event.name.as_str())
            .arg(codec::kind(&event.payload))
            .arg(event.payload.bytes().as_ref())
            .arg(event.idempotency_key.as_ref().map_or("", |k| k.as_str()));
    }
    call
}

/// Sends the node's publishes to Redis, in the order they were queued: everything queued
/// while earlier batches are in the air goes in the next one, one script call. The script's
/// fixed cost (the call, the epoch, the clock) is then paid once per batch instead of once
/// per publish, which is what lets one Redis keep up with a fast publisher. Batches are sent
/// in order on the one multiplexed connection (each when first polled, and they are polled
/// in the order pushed), and Redis runs them in that order. Ends when the backplane is
/// dropped.
async fn publish_batches(
    shared: Arc<Shared>,
    retention: Retention,
    window_ms: u64,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let mut flying = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = flying.next(), if !flying.is_empty() => {}
            first = queue.recv(), if flying.len() < BATCHES_IN_FLIGHT => {
                let Some(first) = first else { break };
                let batch = take_batch(first, &mut queue);
                let call = publish_call(&shared, retention, window_ms, "", &batch);
                let shared = shared.clone();
                flying.push_back(async move {
                    let result = run(&shared, call).await;
                    answer(&shared, batch, result);
                });
            }
        }
    }
    while flying.next().await.is_some() {}
}

/// Answers each publish of a batch from the script's reply (or its failure).
pub(crate) fn answer(shared: &Shared, batch: Vec<Pending>, result: Result<Vec<Vec<u8>>, Error>) {
    match result {
        Ok(reply) => {
            let mut parts = reply.chunks(3);
            for Pending { reply, .. } in batch {
                let _ = reply.send(published(shared, parts.next()));
            }
        }
        Err(e) => {
            for Pending { reply, .. } in batch {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// One publish's part of the script's reply: `{flag, message, retained}`.
fn published(shared: &Shared, part: Option<&[Vec<u8>]>) -> Result<Published, Error> {
    let Some([flag, msg, retained]) = part else {
        return Err(malformed("publish"));
    };
    let event = codec::decode(msg).ok_or_else(|| malformed("published event"))?;
    let duplicate = flag.as_slice() == b"1";
    if !duplicate {
        // The event is stored whatever this says, so a missing count is no error.
        if let Ok(retained) = number(Some(retained), "retained") {
            shared.retained.record(event.channel(), retained);
        }
    }
    Ok(Published { event, duplicate })
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        // The history gauge is process-wide: take out what this backplane put in.
        self.shared.retained.clear();
    }
}

pub(crate) fn malformed(what: &str) -> Error {
    Error::Unavailable(format!(
        "unexpected reply from Redis ({what}); is another program writing under this key prefix?"
    ))
}

pub(crate) fn number(field: Option<&Vec<u8>>, what: &str) -> Result<u64, Error> {
    field
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(what))
}

fn epoch(field: Option<&Vec<u8>>) -> Result<Epoch, Error> {
    field
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| malformed("epoch"))
}

/// Builds rt-core's answer from the script's `{epoch, head, oldest, messages...}`, with the
/// same meaning as [`rt_core::History::since`].
fn since(reply: &[Vec<u8>], after: u64, limit: usize) -> Result<Read, Error> {
    let epoch = epoch(reply.first())?;
    let head = number(reply.get(1), "head")?;
    let oldest = number(reply.get(2), "oldest")?;
    let messages = reply.get(3..).unwrap_or_default();
    let since = page(epoch, head, oldest, messages, after, limit)?;
    Ok(Read { epoch, since })
}

/// Splits the script's join reply, `{epoch, then per channel: head, oldest, count, count
/// messages}`, into one answer per channel asked.
fn joined(
    reply: &[Vec<u8>],
    channels: &[(Channel, ReadFrom)],
    limit: usize,
) -> Result<Vec<(u64, ChannelHead)>, Error> {
    let epoch = epoch(reply.first())?;
    let mut rest = reply.get(1..).unwrap_or_default();
    let mut answers = Vec::with_capacity(channels.len());
    for (_, from) in channels {
        let [head, oldest, count, tail @ ..] = rest else {
            return Err(malformed("join: too few channels"));
        };
        let head = number(Some(head), "head")?;
        let oldest = number(Some(oldest), "oldest")?;
        let count =
            usize::try_from(number(Some(count), "count")?).map_err(|_| malformed("join: count"))?;
        let Some(messages) = tail.get(..count) else {
            return Err(malformed("join: too few messages"));
        };
        rest = &tail[count..];
        let after = match *from {
            ReadFrom::Nothing => None,
            ReadFrom::Earliest => Some(oldest.saturating_sub(1)),
            ReadFrom::After(after) => Some(after),
        };
        let page = after
            .map(|after| page(epoch, head, oldest, messages, after, limit))
            .transpose()?;
        // Offsets oldest..=head are retained; oldest is head + 1 when none are.
        let retained = (head + 1).saturating_sub(oldest);
        answers.push((
            retained,
            ChannelHead {
                epoch,
                head,
                after: after.unwrap_or(head),
                page,
            },
        ));
    }
    if !rest.is_empty() {
        return Err(malformed("join: too many channels"));
    }
    Ok(answers)
}

/// The page after `after` of a channel whose history holds `oldest..=head`, from the messages
/// the script read.
fn page(
    epoch: Epoch,
    head: u64,
    oldest: u64,
    messages: &[Vec<u8>],
    after: u64,
    limit: usize,
) -> Result<Since, Error> {
    let gap = Since::Gap { head, oldest };
    let since = if after > head || (after < head && after + 1 < oldest) {
        gap
    } else if after == head {
        Since::Events {
            events: Vec::new(),
            more: false,
        }
    } else {
        let events = messages
            .iter()
            .map(|m| codec::decode(m).ok_or_else(|| malformed("history entry")))
            .collect::<Result<Vec<Arc<Event>>, Error>>()?;
        let contiguous = events
            .iter()
            .zip(after + 1..)
            .all(|(e, expected)| e.offset() == expected && e.epoch() == epoch);
        if !contiguous {
            return Err(malformed("history out of order"));
        }
        match events.last() {
            Some(last) => Since::Events {
                more: last.offset() < head,
                events,
            },
            None if limit == 0 => Since::Events { events, more: true },
            None => gap,
        }
    };
    Ok(since)
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.shared.sink.set(sink);
    }

    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        let stopped = || Error::Unavailable("the Redis publish task has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.publishes
            .send(Pending { event, reply })
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Concurrent publishes reach Redis in the order they are first polled: the first poll
    /// puts each on the node's publish queue, whose batches go to Redis one after the
    /// other, each one script call that stores its events in queue order.
    fn publish_pipeline(&self) -> usize {
        PUBLISH_PIPELINE
    }

    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        since(&self.read_raw(channel, after, limit).await?, after, limit)
    }

    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        let reply = self.read_raw(channel, 0, 0).await?;
        let Read { epoch, .. } = since(&reply, 0, 0)?;
        Ok((epoch, number(reply.get(1), "head")?))
    }

    async fn join(
        &self,
        channels: &[(Channel, ReadFrom)],
        limit: usize,
    ) -> Result<Vec<ChannelHead>, Error> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let from = |from: &ReadFrom| match from {
            ReadFrom::Nothing => String::new(),
            ReadFrom::Earliest => "e".into(),
            ReadFrom::After(after) => after.to_string(),
        };
        // One call for all channels; on Redis Cluster one per channel (a call sees one
        // slot), all in flight together.
        let calls: Vec<&[(Channel, ReadFrom)]> = if self.shared.cluster {
            channels.chunks(1).collect()
        } else {
            vec![channels]
        };
        let replies = futures_util::future::join_all(calls.iter().map(|asked| {
            // Clients resuming from one cursor ask the same: a reconnect storm shares reads.
            let mut key = format!("join {limit}");
            for (channel, f) in *asked {
                key.push_str(&format!(" {channel}={}", from(f)));
            }
            let routed = if self.shared.cluster {
                asked[0].0.as_str()
            } else {
                ""
            };
            self.run_shared(key, move || {
                let mut call = self.invocation("join", routed);
                call.arg(limit);
                for (channel, f) in *asked {
                    call.arg(channel.as_str()).arg(from(f));
                }
                call
            })
        }))
        .await;
        let mut heads = Vec::with_capacity(channels.len());
        for (asked, reply) in calls.iter().zip(replies) {
            let answers = joined(&reply?, asked, limit)?;
            for ((channel, _), (retained, answer)) in asked.iter().zip(answers) {
                self.shared.retained.record(channel, retained);
                heads.push(answer);
            }
        }
        Ok(heads)
    }

    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Watch(channel.clone(), reply))
            .map_err(|_| Error::Unavailable("the Redis link has stopped".into()))?;
        // The link answers within its own timeouts; this bounds the wait behind other commands.
        match tokio::time::timeout(self.shared.timeout * 3, answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(Error::Unavailable(format!("Redis: {reason}"))),
            Ok(Err(_)) => Err(Error::Unavailable("the Redis link has stopped".into())),
            Err(_) => Err(Error::Unavailable(
                "Redis did not confirm the subscription in time".into(),
            )),
        }
    }

    fn unwatch(&self, channel: &Channel) {
        // Only fails when the link task is gone, and then nothing is subscribed anyway.
        let _ = self.commands.send(Command::Unwatch(channel.clone()));
    }

    fn presence(&self) -> Option<&dyn Presence> {
        Some(&self.presence)
    }

    fn health(&self) -> Health {
        match &*self.shared.state.borrow() {
            State::Up => Health::Up,
            State::Connecting => Health::Degraded("connecting to Redis".into()),
            State::Down(reason) => Health::Degraded(format!("Redis: {reason}")),
        }
    }

    /// One PUBLISH on the node's signal topic, which every node's pub/sub connection
    /// listens to (this one's too).
    async fn signal(&self, signal: Signal) -> Result<(), Error> {
        let Some(mut conn) = self.shared.conn() else {
            return Err(Error::Unavailable(
                "not connected to Redis (reconnecting)".into(),
            ));
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.shared.signal_topic()).arg(signal.encode());
        let t = self.shared.timeout;
        let reason = match tokio::time::timeout(t, publish.query_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("Redis did not answer within {t:?}"),
        };
        self.shared.command_failed(&reason);
        Err(Error::Unavailable(format!("Redis: {reason}")))
    }
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("url", &self.url)
            .field("prefix", &self.shared.prefix)
            .field("retention", &self.retention)
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(epoch: &str, offset: u64) -> Vec<u8> {
        format!("{epoch} {offset} 1 t message c\nx").into_bytes()
    }

    fn reply(head: u64, oldest: u64, offsets: &[u64]) -> Vec<Vec<u8>> {
        let mut r = vec![
            b"ab".to_vec(),
            head.to_string().into(),
            oldest.to_string().into(),
        ];
        r.extend(offsets.iter().map(|&o| msg("ab", o)));
        r
    }

    fn offsets(read: &Read) -> (Vec<u64>, bool) {
        match &read.since {
            Since::Events { events, more } => (events.iter().map(|e| e.offset()).collect(), *more),
            Since::Gap { .. } => panic!("unexpected gap: {read:?}"),
        }
    }

    #[test]
    fn reads_mean_what_history_since_means() {
        let r = since(&reply(5, 3, &[3, 4]), 2, 2).unwrap();
        assert_eq!(r.epoch, Epoch(0xab));
        assert_eq!(offsets(&r), (vec![3, 4], true));
        assert_eq!(
            offsets(&since(&reply(5, 3, &[5]), 4, 9).unwrap()),
            (vec![5], false)
        );
        assert_eq!(
            offsets(&since(&reply(5, 3, &[]), 5, 9).unwrap()),
            (vec![], false)
        );
        assert!(offsets(&since(&reply(5, 3, &[]), 3, 0).unwrap()).1);
        for after in [0, 1, 6] {
            assert_eq!(
                since(&reply(5, 3, &[]), after, 9).unwrap().since,
                Since::Gap { head: 5, oldest: 3 },
                "after {after}"
            );
        }
        // Nothing retained.
        assert_eq!(
            since(&reply(5, 6, &[]), 4, 9).unwrap().since,
            Since::Gap { head: 5, oldest: 6 }
        );
    }

    fn ch(name: &str) -> Channel {
        Channel::new(name).unwrap()
    }

    #[test]
    fn splits_a_join_reply_per_channel() {
        let asked = [
            (ch("a"), ReadFrom::After(2)),
            (ch("b"), ReadFrom::Nothing),
            (ch("c"), ReadFrom::Earliest),
        ];
        let mut r = vec![b"ab".to_vec()];
        r.extend([
            b"5".to_vec(),
            b"3".to_vec(),
            b"2".to_vec(),
            msg("ab", 3),
            msg("ab", 4),
        ]);
        r.extend([b"7".to_vec(), b"1".to_vec(), b"0".to_vec()]);
        r.extend([b"9".to_vec(), b"9".to_vec(), b"1".to_vec(), msg("ab", 9)]);
        let answers = joined(&r, &asked, 2).unwrap();
        let retained: Vec<u64> = answers.iter().map(|(n, _)| *n).collect();
        assert_eq!(retained, [3, 7, 1]);
        let [(_, a), (_, b), (_, c)] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert_eq!((a.epoch, a.head, a.after), (Epoch(0xab), 5, 2));
        let read = |h: &ChannelHead| Read {
            epoch: h.epoch,
            since: h.page.clone().unwrap(),
        };
        assert_eq!(offsets(&read(a)), (vec![3, 4], true));
        assert_eq!((b.head, b.after, &b.page), (7, 7, &None));
        assert_eq!((c.head, c.after), (9, 8));
        assert_eq!(offsets(&read(c)), (vec![9], false));
    }

    #[test]
    fn refuses_inconsistent_join_replies() {
        let asked = [(ch("a"), ReadFrom::After(0)), (ch("b"), ReadFrom::Nothing)];
        let one = [b"1".to_vec(), b"1".to_vec(), b"1".to_vec(), msg("ab", 1)];
        let none = [b"0".to_vec(), b"1".to_vec(), b"0".to_vec()];
        let reply = |parts: &[&[Vec<u8>]]| {
            let mut r = vec![b"ab".to_vec()];
            for p in parts {
                r.extend_from_slice(p);
            }
            r
        };
        assert!(joined(&reply(&[&one, &none]), &asked, 9).is_ok());
        assert!(
            joined(&reply(&[&one]), &asked, 9).is_err(),
            "a channel short"
        );
        assert!(
            joined(&reply(&[&one, &none, &none]), &asked, 9).is_err(),
            "a channel too many"
        );
        let counted_too_many = [b"1".to_vec(), b"1".to_vec(), b"5".to_vec(), msg("ab", 1)];
        assert!(joined(&reply(&[&counted_too_many, &none]), &asked, 9).is_err());
        assert!(joined(&[b"zz".to_vec()], &asked, 9).is_err());
    }

    #[test]
    fn refuses_inconsistent_replies() {
        assert!(since(&reply(5, 1, &[2, 4]), 1, 9).is_err());
        assert!(since(&[b"zz".to_vec()], 0, 0).is_err());
        let mut r = reply(2, 1, &[]);
        r.push(b"garbage".to_vec());
        assert!(since(&r, 0, 9).is_err());
    }
}
