//! [`NatsBackplane`]: rt-core's [`Backplane`] on NATS JetStream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_nats::connection::State as Conn;
use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use rt_core::{
    now_ms, Backplane, Channel, ChannelHead, Epoch, Error, Event, EventName, Health, NewEvent,
    Payload, Position, Presence, Published, Read, ReadFrom, Retention, Signal, Since, Sink, Text,
};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::config::{redacted, NatsConfig};
use crate::presence::NatsPresence;

const OFFSET: &str = "Rt-Offset";
const NAME: &str = "Rt-Name";
const KIND: &str = "Rt-Kind";
const TIME: &str = "Rt-Time";
/// How often the stream is checked while connected (health, and a new epoch if the stream
/// was recreated).
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Messages per fetch when reading history.
const BATCH: usize = 256;
/// Channels read (by a join) or re-watched (after a reconnect) at the same time.
const JOIN_CONCURRENCY: usize = 32;
/// Publish attempts lost to concurrent publishers on the same channel before giving up.
const MAX_ATTEMPTS: usize = 64;

/// A [`Backplane`] on NATS JetStream: several rt nodes share one stream, with dense per-channel
/// offsets and exact resume on any node. See the crate docs for the mapping.
///
/// Must be created inside a Tokio runtime (it spawns a supervisor task, stopped when the
/// backplane is dropped).
pub struct NatsBackplane {
    shared: Arc<Shared>,
    supervisor: AbortHandle,
    /// Hands the signals every node sends to the sink.
    signals: AbortHandle,
    /// Presence and the active-channel registry, in a key-value bucket.
    presence: NatsPresence,
    url: String,
}

/// The link's state, as `health()` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Up,
    Down(String),
}

struct Shared {
    js: Context,
    client: async_nats::Client,
    prefix: String,
    timeout: Duration,
    retention: Retention,
    stream_config: stream::Config,
    /// A handle on the stream (no request is made to get it).
    stream: jetstream::stream::Stream<()>,
    state: watch::Sender<State>,
    /// The epoch of the stream as last seen (derived from its creation time).
    epoch: Mutex<Option<Epoch>>,
    sink: OnceLock<Arc<dyn Sink>>,
    /// One live consumer task per watched channel.
    watched: Mutex<HashMap<Channel, AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps and values: a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("NATS: {what}"))
}

/// The subject token of a channel: `.` separates subject tokens, so it becomes `~`, which no
/// channel name contains (every other channel character is valid in a subject token).
fn token(channel: &Channel) -> String {
    channel.as_str().replace('.', "~")
}

/// The epoch of a stream created at `created_ns` (Unix nanoseconds): the same on every node,
/// another one when the stream is recreated. SplitMix64, never zero.
fn epoch_of(name: &str, created_ns: i128) -> Epoch {
    let mut x = created_ns as u64 ^ (created_ns >> 64) as u64;
    for b in name.bytes() {
        x = x.rotate_left(8) ^ u64::from(b);
    }
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    Epoch(x.max(1))
}

fn header_u64(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// Decodes a stored message; `None` when it is not an rt event.
fn decode(
    prefix: &str,
    epoch: Epoch,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &Bytes,
) -> Option<Arc<Event>> {
    let token = subject.strip_prefix(prefix)?.strip_prefix(".ch.")?;
    let channel = Channel::new(&token.replace('~', ".")).ok()?;
    let offset = header_u64(headers, OFFSET)?;
    let time_ms = header_u64(headers, TIME)?;
    let name = EventName::new(headers?.get(NAME)?.as_str()).ok()?;
    let payload = match headers?.get(KIND)?.as_str() {
        "t" => Payload::Text(Text::from_utf8(payload.clone()).ok()?),
        "b" => Payload::Binary(payload.clone()),
        _ => return None,
    };
    Some(Arc::new(Event::new(
        channel,
        Position { epoch, offset },
        name,
        payload,
        time_ms,
    )))
}

/// A page after the head: nothing to read.
fn up_to_date() -> Since {
    Since::Events {
        events: Vec::new(),
        more: false,
    }
}

fn malformed() -> Error {
    unavailable("a message in the stream is not an rt event; is another program publishing under this prefix?")
}

impl Shared {
    /// The core NATS subject of signals: outside the stream's `P.ch.>`, so never stored.
    fn signal_subject(&self) -> String {
        format!("{}.signal", self.prefix)
    }

    fn subject(&self, channel: &Channel) -> String {
        format!("{}.ch.{}", self.prefix, token(channel))
    }

    fn stream(&self) -> jetstream::stream::Stream<()> {
        self.stream.clone()
    }

    /// Fails fast when the connection or the stream is not up.
    fn ready(&self) -> Result<Epoch, Error> {
        if self.client.connection_state() != Conn::Connected {
            return Err(unavailable("not connected (reconnecting)"));
        }
        match (&*self.state.borrow(), *lock(&self.epoch)) {
            (State::Up, Some(epoch)) => Ok(epoch),
            (State::Down(reason), _) => Err(unavailable(reason)),
            _ => Err(unavailable("setting up the stream")),
        }
    }

    async fn within<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format_args!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The channel's last stored message: `(stream sequence, offset)`, `None` when it has none.
    async fn last(&self, subject: &str) -> Result<Option<(u64, u64)>, Error> {
        let stream = self.stream();
        let got = tokio::time::timeout(
            self.timeout,
            stream.direct_get_last_for_subject(subject.to_owned()),
        )
        .await
        .map_err(|_| unavailable("no answer to a direct get"))?;
        match got {
            Ok(m) => {
                let offset = header_u64(Some(&m.headers), OFFSET).ok_or_else(malformed)?;
                Ok(Some((m.sequence, offset)))
            }
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Creates or updates the stream and returns its epoch.
    async fn setup(&self) -> Result<Epoch, String> {
        let info = tokio::time::timeout(
            self.timeout * 2,
            self.js.create_or_update_stream(self.stream_config.clone()),
        )
        .await
        .map_err(|_| "JetStream did not answer in time".to_owned())?
        .map_err(|e| format!("cannot create or update the stream: {e}"))?;
        Ok(epoch_of(
            &self.stream_config.name,
            info.created.unix_timestamp_nanos(),
        ))
    }

    /// Starts a live consumer of `channel` that delivers to the sink, in place of its previous
    /// one. `again`: the channel is already watched and is re-watched only if it still is
    /// (the hub may unwatch it meanwhile).
    async fn watch(self: &Arc<Self>, channel: &Channel, again: bool) -> Result<(), Error> {
        let epoch = self.ready()?;
        let subject = self.subject(channel);
        // Everything after the channel's current last message is live from here on.
        let start = self.last(&subject).await?.map_or(0, |(seq, _)| seq) + 1;
        let consumer: Consumer<pull::OrderedConfig> = self
            .within(self.stream().create_consumer(pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            }))
            .await?;
        let mut messages = self.within(consumer.messages()).await?;
        let sink = self.sink.get().cloned();
        let prefix = self.prefix.clone();
        let shared_epoch = self.clone();
        let name = channel.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        // The ordered consumer recreates itself; after a reconnect the
                        // supervisor replaces it and catches up.
                        tracing::debug!(channel = %name, error = %e, "live consumer interrupted");
                        continue;
                    }
                };
                let epoch = (*lock(&shared_epoch.epoch)).unwrap_or(epoch);
                match decode(&prefix, epoch, &message.subject, message.headers.as_ref(), &message.payload) {
                    Some(event) => {
                        if let Some(sink) = &sink {
                            sink.deliver(event);
                        }
                    }
                    None => tracing::warn!(subject = %message.subject, "ignored a message that is not an rt event"),
                }
            }
        })
        .abort_handle();
        let mut watched = lock(&self.watched);
        if again && !watched.contains_key(channel) {
            task.abort();
        } else if let Some(old) = watched.insert(channel.clone(), task) {
            old.abort();
        }
        Ok(())
    }

    /// Replaces the live consumer of every watched channel (as many at once as a join
    /// reads); false if one could not be.
    async fn rewatch_all(self: &Arc<Self>) -> bool {
        let channels: Vec<Channel> = lock(&self.watched).keys().cloned().collect();
        // Boxed: the supervisor's future must be Send for every lifetime of the borrows.
        let watches: Vec<futures_util::future::BoxFuture<'_, bool>> = channels
            .iter()
            .map(|channel| {
                Box::pin(async move {
                    let watched = self.watch(channel, true).await;
                    if let Err(e) = &watched {
                        tracing::warn!(%channel, error = %e, "cannot restart live delivery, retrying");
                    }
                    watched.is_ok()
                }) as _
            })
            .collect();
        futures_util::stream::iter(watches)
            .buffer_unordered(JOIN_CONCURRENCY)
            .fold(true, |all, ok| async move { all && ok })
            .await
    }

    /// Asks the hub to re-read every watched channel from history.
    fn catch_up_all(&self) {
        if let Some(sink) = self.sink.get() {
            let channels: Vec<Channel> = lock(&self.watched).keys().cloned().collect();
            for channel in &channels {
                sink.catch_up(channel);
            }
        }
    }

    /// The channel's retained events after `after` (up to `limit`) and its head, with the
    /// meaning of [`rt_core::History::since`].
    async fn since(
        &self,
        epoch: Epoch,
        channel: &Channel,
        after: u64,
        limit: usize,
    ) -> Result<Since, Error> {
        let subject = self.subject(channel);
        let last = self.last(&subject).await?;
        Ok(self
            .page(epoch, &subject, last, Some(after), limit)
            .await?
            .1)
    }

    /// One channel of [`Backplane::join`]: its head and first page from one direct get, and
    /// one scan when history must be read.
    async fn join(
        &self,
        epoch: Epoch,
        channel: &Channel,
        from: ReadFrom,
        limit: usize,
    ) -> Result<ChannelHead, Error> {
        let subject = self.subject(channel);
        let last = self.last(&subject).await?;
        let head = last.map_or(0, |(_, offset)| offset);
        // The page's start: `None` for none, `Some(None)` for the oldest retained event.
        let start = match from {
            ReadFrom::Nothing => None,
            ReadFrom::Earliest => Some(None),
            ReadFrom::After(after) => Some(Some(after)),
        };
        let (after, page) = match start {
            None => (head, None),
            Some(after) => {
                let (after, page) = self.page(epoch, &subject, last, after, limit).await?;
                (after, Some(page))
            }
        };
        Ok(ChannelHead {
            epoch,
            head,
            after,
            page,
        })
    }

    /// The page after `after` (`None`: from the oldest retained event) of the channel whose
    /// last message is `last`, and the offset the page follows.
    async fn page(
        &self,
        epoch: Epoch,
        subject: &str,
        last: Option<(u64, u64)>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(u64, Since), Error> {
        let Some((last_seq, head)) = last else {
            let after = after.unwrap_or(0);
            let page = if after == 0 {
                Since::Events {
                    events: Vec::new(),
                    more: false,
                }
            } else {
                Since::Gap { head: 0, oldest: 1 }
            };
            return Ok((after, page));
        };
        if after == Some(head) {
            return Ok((head, up_to_date()));
        }
        self.scan(epoch, subject, last_seq, head, after, limit)
            .await
    }

    /// Reads the channel's messages up to stream sequence `last_seq` with a short-lived
    /// consumer: the first retained one (within the history age and count) is the oldest,
    /// those after `after` (`None`: before the oldest) are the page.
    async fn scan(
        &self,
        epoch: Epoch,
        subject: &str,
        last_seq: u64,
        head: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(u64, Since), Error> {
        let cutoff = now_ms()
            .saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let min_by_count = (head + 1).saturating_sub(self.retention.max_len as u64);
        let stream = self.stream();
        let consumer: Consumer<pull::Config> = self
            .within(stream.create_consumer(pull::Config {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            }))
            .await?;
        let name = consumer.cached_info().name.clone();
        let result = self
            .collect(
                epoch,
                &consumer,
                last_seq,
                head,
                after,
                limit,
                cutoff,
                min_by_count,
            )
            .await;
        // Not waited for: it also goes away by itself once inactive.
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn collect(
        &self,
        epoch: Epoch,
        consumer: &Consumer<pull::Config>,
        last_seq: u64,
        head: u64,
        mut after: Option<u64>,
        limit: usize,
        cutoff: u64,
        min_by_count: u64,
    ) -> Result<(u64, Since), Error> {
        let mut oldest = None;
        let mut events = Vec::new();
        'fetching: loop {
            let mut batch = self
                .within(consumer.fetch().max_messages(BATCH).messages())
                .await?;
            let mut got = 0;
            while let Some(message) = self
                .within(async { Ok::<_, Error>(batch.next().await) })
                .await?
            {
                let message = message.map_err(unavailable)?;
                got += 1;
                let seq = message.info().map_err(unavailable)?.stream_sequence;
                let event = decode(
                    &self.prefix,
                    epoch,
                    &message.subject,
                    message.headers.as_ref(),
                    &message.payload,
                )
                .ok_or_else(malformed)?;
                let offset = event.offset();
                let retained = event.time_ms() >= cutoff && offset >= min_by_count;
                if retained && oldest.is_none() {
                    oldest = Some(offset);
                    let after = *after.get_or_insert(offset.saturating_sub(1));
                    if after > head || after + 1 < offset {
                        break 'fetching;
                    }
                }
                if let Some(after) = after.filter(|&a| retained && offset > a) {
                    if events.len() < limit {
                        if offset != after + 1 + events.len() as u64 {
                            return Err(unavailable("history out of order"));
                        }
                        events.push(event);
                    }
                }
                if seq >= last_seq || (oldest.is_some() && events.len() >= limit) {
                    break 'fetching;
                }
            }
            if got == 0 {
                break;
            }
        }
        let oldest = oldest.unwrap_or(head + 1);
        // Nothing retained and no offset asked for: the page starts at the head.
        let after = after.unwrap_or(head);
        if after > head || after + 1 < oldest {
            return Ok((after, Since::Gap { head, oldest }));
        }
        if after == head {
            return Ok((after, up_to_date()));
        }
        if events.is_empty() && limit > 0 {
            return Ok((after, Since::Gap { head, oldest }));
        }
        let more = events.last().is_none_or(|e| e.offset() < head);
        Ok((after, Since::Events { events, more }))
    }

    /// Stores `new` at the channel's next offset; see the crate docs.
    async fn publish(&self, epoch: Epoch, new: NewEvent) -> Result<Published, Error> {
        let subject = self.subject(&new.channel);
        for _ in 0..MAX_ATTEMPTS {
            let last = self.last(&subject).await?;
            let (last_seq, offset) = match last {
                Some((seq, offset)) => (seq, offset + 1),
                None => (0, 1),
            };
            let time_ms = now_ms();
            let mut headers = HeaderMap::new();
            headers.insert(OFFSET, offset.to_string().as_str());
            headers.insert(NAME, new.name.as_str());
            headers.insert(KIND, if new.payload.is_binary() { "b" } else { "t" });
            headers.insert(TIME, time_ms.to_string().as_str());
            headers.insert(
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                last_seq.to_string().as_str(),
            );
            if let Some(id) = &new.idempotency_key {
                // The duplicate window is the stream's: ids are per channel, so the channel
                // is part of the id (neither contains a space).
                headers.insert(
                    NATS_MESSAGE_ID,
                    format!("{} {}", new.channel.as_str(), id.as_str()).as_str(),
                );
            }
            let ack = self
                .within(self.js.publish_with_headers(
                    subject.clone(),
                    headers,
                    new.payload.bytes().clone(),
                ))
                .await?;
            match tokio::time::timeout(self.timeout, ack).await {
                Err(_) => return Err(unavailable("no publish acknowledgement in time")),
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
                Ok(Err(e)) => return Err(unavailable(e)),
                Ok(Ok(ack)) if ack.duplicate => {
                    let stored = self
                        .within(self.stream().direct_get(ack.sequence))
                        .await
                        .map_err(|_| {
                            unavailable(
                                "the first publish of this message id is no longer in history",
                            )
                        })?;
                    let event = decode(
                        &self.prefix,
                        epoch,
                        &stored.subject,
                        Some(&stored.headers),
                        &stored.payload,
                    )
                    .ok_or_else(malformed)?;
                    return Ok(Published {
                        event,
                        duplicate: true,
                    });
                }
                Ok(Ok(_)) => {
                    let event = Arc::new(Event::new(
                        new.channel,
                        Position { epoch, offset },
                        new.name,
                        new.payload,
                        time_ms,
                    ));
                    return Ok(Published {
                        event,
                        duplicate: false,
                    });
                }
            }
        }
        Err(unavailable(
            "too many concurrent publishers on this channel; try again",
        ))
    }
}

impl NatsBackplane {
    /// Checks `config`, connects to NATS and sets up the stream, waiting up to
    /// `config.timeout`. An unreachable NATS is not an error: the backplane starts degraded
    /// and keeps trying, so a node can start before its NATS.
    pub async fn connect(config: NatsConfig) -> Result<Self, crate::Error> {
        let servers = config.servers()?;
        let (events, mut event_rx) = mpsc::unbounded_channel();
        let (min, max) = (config.reconnect_min, config.reconnect_max);
        let mut options = match &config.credentials {
            Some(creds) => async_nats::ConnectOptions::with_credentials(creds)
                .map_err(|e| crate::Error::Credentials(e.to_string()))?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(seed) = &config.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&config.tls_client_cert, &config.tls_client_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let client = options
            .name("rt")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(config.timeout)
            .request_timeout(Some(config.timeout))
            .reconnect_delay_callback(move |attempts| backoff(attempts, min, max))
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            })
            .connect(servers)
            .await
            .map_err(|e| crate::Error::InvalidUrl(e.to_string()))?;
        let js = jetstream::new(client.clone());
        let stream_config = stream::Config {
            name: config.prefix.clone(),
            subjects: vec![format!("{}.ch.>", config.prefix)],
            // At least one per channel: the last message is the channel's head.
            max_messages_per_subject: i64::try_from(config.retention.max_len.max(1))
                .unwrap_or(i64::MAX),
            discard: DiscardPolicy::Old,
            duplicate_window: config.idempotency_window,
            allow_direct: true,
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let stream = js
            .get_stream_no_info(&config.prefix)
            .await
            .map_err(|_| crate::Error::InvalidPrefix(config.prefix.clone()))?;
        let presence = NatsPresence::start(
            js.clone(),
            client.clone(),
            &config.prefix,
            config.presence_ttl,
            config.replicas,
            config.timeout,
        )
        .await?;
        let shared = Arc::new(Shared {
            stream,
            js,
            client,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            retention: config.retention,
            stream_config,
            state: watch::Sender::new(State::Connecting),
            epoch: Mutex::new(None),
            sink: OnceLock::new(),
            watched: Mutex::new(HashMap::new()),
        });
        // The client subscribes again by itself after a reconnect.
        let mut signals = shared
            .client
            .subscribe(shared.signal_subject())
            .await
            .map_err(|e| crate::Error::Signals(e.to_string()))?;
        let task = shared.clone();
        let supervisor = tokio::spawn(async move {
            supervise(&task, &mut event_rx, (min, max)).await;
        })
        .abort_handle();
        let task = shared.clone();
        let signals = tokio::spawn(async move {
            while let Some(message) = signals.next().await {
                match Signal::decode(&message.payload) {
                    Ok(signal) => {
                        if let Some(sink) = task.sink.get() {
                            sink.signal(signal);
                        }
                    }
                    // Sent by a newer node, or by another program under our prefix.
                    Err(e) => tracing::debug!(error = %e, "ignored a signal"),
                }
            }
        })
        .abort_handle();
        let backplane = NatsBackplane {
            shared,
            supervisor,
            signals,
            presence,
            url: redacted(&config.url),
        };
        backplane.wait_until_up(config.timeout).await;
        Ok(backplane)
    }

    /// Waits up to `within` for NATS and the stream to be up; returns whether they are.
    pub async fn wait_until_up(&self, within: Duration) -> bool {
        let mut state = self.shared.state.subscribe();
        tokio::time::timeout(within, state.wait_for(|s| *s == State::Up))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Exponential backoff from `min` to `max`, each delay between half and all of it.
fn backoff(attempts: usize, min: Duration, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).min(16)).unwrap_or(16);
    let d = min.saturating_mul(1 << exp).min(max);
    d / 2 + d.mul_f64(fastrand::f64() / 2.0)
}

/// Keeps the stream set up and the state current: on every (re)connect it creates or updates
/// the stream, reads its epoch and catches up every watched channel; while connected it checks
/// the stream every few seconds.
async fn supervise(
    shared: &Arc<Shared>,
    events: &mut mpsc::UnboundedReceiver<async_nats::Event>,
    (min, max): (Duration, Duration),
) {
    let mut attempts = 0;
    // Whether watched channels may have missed events since the last successful setup.
    let mut missed = false;
    loop {
        if shared.client.connection_state() == Conn::Connected {
            match shared.setup().await {
                Ok(epoch) => {
                    attempts = 0;
                    let changed = lock(&shared.epoch).replace(epoch) != Some(epoch);
                    if *shared.state.borrow() != State::Up {
                        tracing::info!(prefix = %shared.prefix, %epoch, "NATS JetStream backplane up");
                    }
                    shared.state.send_replace(State::Up);
                    if missed || changed {
                        // The live consumers may be gone with the server, or point past the
                        // end of a recreated stream: new ones first, so that what the hub
                        // then re-reads from history meets live delivery.
                        missed = !shared.rewatch_all().await;
                        shared.catch_up_all();
                    }
                }
                Err(reason) => {
                    attempts += 1;
                    tracing::warn!(%reason, "NATS JetStream stream not ready, retrying");
                    shared.state.send_replace(State::Down(reason));
                    missed = true;
                }
            }
        }
        let wait = if *shared.state.borrow() == State::Up {
            CHECK_EVERY
        } else {
            backoff(attempts.max(1), min, max)
        };
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                event = events.recv() => match event {
                    None => return,
                    Some(async_nats::Event::Connected) => break,
                    Some(async_nats::Event::Disconnected) => {
                        tracing::warn!("lost the connection to NATS, reconnecting");
                        shared.state.send_replace(State::Down("disconnected, reconnecting".into()));
                        missed = true;
                    }
                    Some(async_nats::Event::Closed) => {
                        shared.state.send_replace(State::Down("the connection was closed".into()));
                        return;
                    }
                    Some(other) => tracing::debug!(event = %other, "NATS event"),
                },
            }
        }
    }
}

#[async_trait]
impl Backplane for NatsBackplane {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.shared.sink.set(sink);
    }

    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        let epoch = self.shared.ready()?;
        self.shared.publish(epoch, event).await
    }

    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        let epoch = self.shared.ready()?;
        let since = self.shared.since(epoch, channel, after, limit).await?;
        Ok(Read { epoch, since })
    }

    /// Every channel's direct get and scan run concurrently (up to 32 at a time): JetStream
    /// has no request that reads several subjects' histories at once, but a subscribe to many
    /// channels then waits about one channel's round trips, not their sum.
    async fn join(
        &self,
        channels: &[(Channel, ReadFrom)],
        limit: usize,
    ) -> Result<Vec<ChannelHead>, Error> {
        let epoch = self.shared.ready()?;
        let shared = &*self.shared;
        // Boxed: async-trait's future must be Send for every lifetime of the borrowed items.
        let reads: Vec<futures_util::future::BoxFuture<'_, Result<ChannelHead, Error>>> = channels
            .iter()
            .map(|(channel, from)| Box::pin(shared.join(epoch, channel, *from, limit)) as _)
            .collect();
        futures_util::stream::iter(reads)
            .buffered(JOIN_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        let epoch = self.shared.ready()?;
        let last = self.shared.last(&self.shared.subject(channel)).await?;
        Ok((epoch, last.map_or(0, |(_, offset)| offset)))
    }

    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        self.shared.watch(channel, false).await
    }

    fn unwatch(&self, channel: &Channel) {
        if let Some(task) = lock(&self.shared.watched).remove(channel) {
            task.abort();
        }
    }

    fn health(&self) -> Health {
        if self.shared.client.connection_state() != Conn::Connected {
            return Health::Degraded("NATS: not connected (reconnecting)".into());
        }
        match &*self.shared.state.borrow() {
            State::Up => Health::Up,
            State::Connecting => Health::Degraded("connecting to NATS".into()),
            State::Down(reason) => Health::Degraded(format!("NATS: {reason}")),
        }
    }

    /// A core NATS publish (not JetStream) on the signal subject, flushed so that `Ok` means
    /// NATS has it.
    async fn signal(&self, signal: Signal) -> Result<(), Error> {
        let shared = &self.shared;
        if shared.client.connection_state() != Conn::Connected {
            return Err(unavailable("not connected (reconnecting)"));
        }
        let subject = shared.signal_subject();
        shared
            .within(shared.client.publish(subject, signal.encode().into()))
            .await?;
        shared.within(shared.client.flush()).await
    }

    /// Kept in the key-value bucket `<prefix>-presence`; see the crate docs.
    fn presence(&self) -> Option<&dyn Presence> {
        Some(&self.presence)
    }
}

impl Drop for NatsBackplane {
    fn drop(&mut self) {
        self.supervisor.abort();
        self.signals.abort();
        for (_, task) in lock(&self.shared.watched).drain() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for NatsBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackplane")
            .field("url", &self.url)
            .field("prefix", &self.shared.prefix)
            .field("retention", &self.shared.retention)
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_map_to_one_subject_token_each() {
        let c = Channel::new("a.b:c/d@e-f_g").unwrap();
        assert_eq!(token(&c), "a~b:c/d@e-f_g");
        let mut headers = HeaderMap::new();
        headers.insert(OFFSET, "7");
        headers.insert(TIME, "12");
        headers.insert(NAME, "message");
        headers.insert(KIND, "t");
        let e = decode(
            "rt",
            Epoch(1),
            "rt.ch.a~b:c/d@e-f_g",
            Some(&headers),
            &Bytes::from_static(b"hi"),
        )
        .unwrap();
        assert_eq!(e.channel(), &c);
        assert_eq!(e.offset(), 7);
        assert!(decode("rt", Epoch(1), "other.ch.a", Some(&headers), &Bytes::new()).is_none());
    }

    #[test]
    fn epochs_are_stable_per_stream_identity() {
        assert_eq!(epoch_of("rt", 5), epoch_of("rt", 5));
        assert_ne!(epoch_of("rt", 5), epoch_of("rt", 6));
        assert_ne!(epoch_of("rt", 5).0, 0);
    }
}
