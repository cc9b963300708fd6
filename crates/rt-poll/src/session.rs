//! Poll sessions: a polling client is one presence member across its polls, and hears the
//! joins and leaves of its channels between them.
//!
//! A session is made by the first poll that names a channel keeping presence (or names a
//! session), and its id goes back in every answer; later polls echo it as `session`. While a
//! poll of the session is held, and for [`Config::session_grace`] after the last one ended,
//! the session holds an [`rt_core::Membership`] of the channels of its latest poll: no join or
//! leave per poll. Join/leave batches of those channels, for sessions whose latest token may
//! read their presence, are buffered until the next answer, at most
//! [`Config::presence_buffer`] members (the oldest batches go first, and the answer says so).
//! Sessions live in the node's memory: a poll that lands on another node starts a new one
//! there, and the old one leaves when its grace ends.
//!
//! A session also hears the application's signals about its subject (`POST /api/disconnect`,
//! `POST /api/unsubscribe`) between polls: it acts on them at once (leaves every channel, or
//! the one channel), and remembers them for its next poll, which answers with them as a held
//! poll would have. A session told to disconnect with `reconnect: false` stays, empty, until
//! its grace ends, and answers every poll with the same disconnect, so that a client that
//! missed the answer cannot go on polling as if nothing happened.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rt_core::{
    Changes, Channel, Hub, Membership, Permissions, PresenceChanges, Signal, SubjectSignals,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Config;

/// A session's id: 32 hex digits, drawn at random, never shown in presence (where the
/// member's own client id is), so reading presence does not let anyone poll as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionId(u128);

impl SessionId {
    /// A fresh, unguessable id.
    fn random() -> Self {
        use std::hash::BuildHasher;
        // Each RandomState has keys drawn from the OS (per thread, then incremented); two
        // keyed hashes make 128 bits nobody outside can predict.
        let half = || std::collections::hash_map::RandomState::new().hash_one(rt_core::now_ms());
        SessionId((u128::from(half()) << 64) | u128::from(half()))
    }

    /// Parses the `session` parameter: exactly 32 hex digits.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The sessions of one polling endpoint on this node. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sessions {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    grace: Duration,
    buffer: usize,
    /// The task that routes join/leave batches to sessions and ends idle sessions, started
    /// with the first session (a runtime exists by then).
    task: OnceLock<()>,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<SessionId, Session>,
    /// The sessions holding each channel that keeps presence, for routing its batches.
    by_channel: HashMap<Channel, HashSet<SessionId>>,
}

struct Session {
    membership: Membership,
    /// The permissions of the latest poll: a batch is buffered only if they may read its
    /// channel's presence.
    permissions: Permissions,
    buffer: VecDeque<Arc<Changes>>,
    /// Members (joins plus leaves) in `buffer`.
    buffered: usize,
    /// Batches were dropped since the last answer.
    lost: bool,
    /// Polls of this session being held now: a session is never ended during one.
    polls: usize,
    /// When the last poll ended.
    last_seen: Instant,
    wake: Arc<Notify>,
    /// The application ended the subject's connections: every poll answers with this, and the
    /// session holds no channel.
    disconnect: Option<Disconnect>,
    /// Channels the application took from the session that no answer reported yet; at most
    /// the channels the session held.
    unsubscribed: Vec<Channel>,
}

/// `POST /api/disconnect`, as a session remembers it and an answer's `"disconnect"` says it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Disconnect {
    pub(crate) reconnect: bool,
    pub(crate) reason: String,
}

/// The signals a poll answers with, taken from its session.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    pub(crate) disconnect: Option<Disconnect>,
    pub(crate) unsubscribed: Vec<Channel>,
}

/// What an answer takes from its session.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) batches: Vec<Arc<Changes>>,
    pub(crate) lost: bool,
}

impl Sessions {
    pub(crate) fn new(config: &Config) -> Self {
        Sessions {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                grace: config.session_grace,
                buffer: config.presence_buffer.max(1),
                task: OnceLock::new(),
            }),
        }
    }

    /// Attaches a poll of `channels` to the session `id` (a new one when `id` is `None`,
    /// unknown here, expired, or another subject's), which then holds exactly `channels`
    /// until its next poll. The session is not ended while the returned guard lives.
    pub(crate) fn attach(
        &self,
        hub: &Hub,
        id: Option<SessionId>,
        permissions: &Permissions,
        channels: &[Channel],
    ) -> Attached {
        self.shared.task.get_or_init(|| {
            // Listening starts here, not in the task, so that nothing heard after this first
            // session exists is missed.
            let heard = (hub.presence_changes(), hub.subject_signals());
            tokio::spawn(run(Arc::downgrade(&self.shared), hub.clone(), heard));
        });
        let mut table = self.shared.table();
        let known = id.filter(|id| {
            table
                .sessions
                .get(id)
                .is_some_and(|s| s.membership.member().subject.as_deref() == permissions.subject())
        });
        let id = known.unwrap_or_else(SessionId::random);
        let Table {
            sessions,
            by_channel,
        } = &mut *table;
        let session = sessions.entry(id).or_insert_with(|| Session {
            membership: hub.membership(Some(permissions)),
            permissions: permissions.clone(),
            buffer: VecDeque::new(),
            buffered: 0,
            lost: false,
            polls: 0,
            last_seen: Instant::now(),
            wake: Arc::new(Notify::new()),
            disconnect: None,
            unsubscribed: Vec::new(),
        });
        session.permissions = permissions.clone();
        session.polls += 1;
        let attached = Attached {
            sessions: self.clone(),
            id,
            wake: session.wake.clone(),
        };
        if session.disconnect.is_some() {
            // Disconnected: it joins nothing again; this poll answers with the disconnect.
            return attached;
        }
        // Channels taken by the application stay out, until an answer has said so.
        let channels: Vec<Channel> = channels
            .iter()
            .filter(|c| !session.unsubscribed.contains(c))
            .cloned()
            .collect();
        let gone: Vec<Channel> = session
            .membership
            .channels()
            .iter()
            .filter(|c| !channels.contains(c))
            .cloned()
            .collect();
        for channel in &gone {
            unindex(by_channel, channel, id);
        }
        for channel in channels.iter().filter(|c| hub.presence_enabled(c)) {
            by_channel.entry(channel.clone()).or_default().insert(id);
        }
        session.membership.hold(&channels);
        attached
    }
}

fn unindex(
    by_channel: &mut HashMap<Channel, HashSet<SessionId>>,
    channel: &Channel,
    id: SessionId,
) {
    if let Some(ids) = by_channel.get_mut(channel) {
        ids.remove(&id);
        if ids.is_empty() {
            by_channel.remove(channel);
        }
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buffers `changes` for every session holding its channel whose permissions may read it.
    fn route(&self, changes: &Arc<Changes>) {
        let mut table = self.table();
        let Table {
            sessions,
            by_channel,
        } = &mut *table;
        let Some(ids) = by_channel.get(&changes.channel) else {
            return;
        };
        for id in ids {
            let Some(session) = sessions.get_mut(id) else {
                continue;
            };
            if session
                .permissions
                .check_presence(&changes.channel)
                .is_err()
            {
                continue;
            }
            session.buffer.push_back(changes.clone());
            session.buffered += changes.joins.len() + changes.leaves.len();
            // The newest batch always stays, whatever its size.
            while session.buffered > self.buffer && session.buffer.len() > 1 {
                if let Some(old) = session.buffer.pop_front() {
                    session.buffered -= old.joins.len() + old.leaves.len();
                    session.lost = true;
                }
            }
            session.wake.notify_one();
        }
    }

    /// Acts on a signal about a subject for each of its sessions (signals are rare: a scan of
    /// the sessions is cheaper than keeping an index by subject).
    fn signal(&self, signal: &Signal) {
        let mut table = self.table();
        let Some(subject) = signal.subject() else {
            return;
        };
        let ids: Vec<SessionId> = table
            .sessions
            .iter()
            .filter(|(_, s)| s.membership.member().subject.as_deref() == Some(subject))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            match signal {
                Signal::Disconnect {
                    reconnect, reason, ..
                } => table.disconnect(
                    id,
                    Disconnect {
                        reconnect: *reconnect,
                        reason: reason.clone(),
                    },
                ),
                Signal::Unsubscribe { channel, .. } => table.unsubscribe(id, channel),
                _ => {}
            }
        }
    }

    /// This node missed batches: every session may have.
    fn lost_all(&self) {
        for session in self.table().sessions.values_mut() {
            session.lost = true;
            session.wake.notify_one();
        }
    }

    /// Ends the sessions that no poll holds and that saw none for the grace period: their
    /// memberships leave.
    fn sweep(&self, now: Instant) {
        let mut table = self.table();
        let expired: Vec<SessionId> = table
            .sessions
            .iter()
            .filter(|(_, s)| s.polls == 0 && now.duration_since(s.last_seen) >= self.grace)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            table.end(id);
        }
    }
}

impl Table {
    /// The session leaves every channel now and remembers `disconnect` for its polls.
    fn disconnect(&mut self, id: SessionId, disconnect: Disconnect) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        for channel in session.membership.channels() {
            unindex(&mut self.by_channel, channel, id);
        }
        session.membership.hold(&[]);
        session.buffer.clear();
        session.buffered = 0;
        session.lost = false;
        session.unsubscribed.clear();
        session.disconnect = Some(disconnect);
        session.wake.notify_one();
    }

    /// The session leaves `channel` now, if it holds it, and remembers it for its next answer.
    fn unsubscribe(&mut self, id: SessionId, channel: &Channel) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if !session.membership.channels().contains(channel) {
            return;
        }
        session.membership.leave(channel);
        unindex(&mut self.by_channel, channel, id);
        session.unsubscribed.push(channel.clone());
        session.wake.notify_one();
    }

    fn end(&mut self, id: SessionId) {
        if let Some(session) = self.sessions.remove(&id) {
            for channel in session.membership.channels() {
                unindex(&mut self.by_channel, channel, id);
            }
            // Dropping the membership leaves its channels.
        }
    }
}

/// Routes this node's join/leave batches and signals about subjects to the sessions and ends
/// idle sessions, until the endpoint is dropped; ends every session when the server shuts
/// down.
async fn run(shared: Weak<Shared>, hub: Hub, heard: (PresenceChanges, SubjectSignals)) {
    let (mut changes, mut signals) = heard;
    let tick = match shared.upgrade() {
        Some(s) => (s.grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        None => return,
    };
    let mut sweep = tokio::time::interval(tick);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            heard = changes.next() => {
                let Some(shared) = shared.upgrade() else { return };
                match heard {
                    Some(Ok(batch)) => shared.route(&batch),
                    Some(Err(_missed)) => shared.lost_all(),
                    None => return,
                }
            }
            heard = signals.next() => {
                let Some(shared) = shared.upgrade() else { return };
                match heard {
                    Some(Ok(signal)) => shared.signal(&signal),
                    // Signals are best effort (not stored, not replayed): the held polls
                    // still hear them from their subscriptions.
                    Some(Err(_missed)) => {}
                    None => return,
                }
            }
            now = sweep.tick() => {
                let Some(shared) = shared.upgrade() else { return };
                shared.sweep(now);
            }
            () = hub.closing() => {
                // Shutting down: every poller leaves now, as WebSocket clients do.
                if let Some(shared) = shared.upgrade() {
                    let mut table = shared.table();
                    table.by_channel.clear();
                    table.sessions.clear();
                }
                return;
            }
        }
    }
}

/// A poll attached to its session; the session's idle time starts when this is dropped.
pub(crate) struct Attached {
    sessions: Sessions,
    id: SessionId,
    wake: Arc<Notify>,
}

impl Attached {
    /// The session's id, for the answer.
    pub(crate) fn id(&self) -> SessionId {
        self.id
    }

    /// Whether join/leave batches (or the news that some were lost) wait for an answer.
    pub(crate) fn has_presence(&self) -> bool {
        self.sessions
            .shared
            .table()
            .sessions
            .get(&self.id)
            .is_some_and(|s| !s.buffer.is_empty() || s.lost)
    }

    /// Whether a signal waits for an answer.
    pub(crate) fn is_signalled(&self) -> bool {
        self.sessions
            .shared
            .table()
            .sessions
            .get(&self.id)
            .is_some_and(|s| s.disconnect.is_some() || !s.unsubscribed.is_empty())
    }

    /// Returns once join/leave batches or a signal wait for an answer. Cancel-safe.
    pub(crate) async fn news(&self) {
        loop {
            self.wake.notified().await;
            if self.has_presence() || self.is_signalled() {
                return;
            }
        }
    }

    /// The signals to answer with: the disconnect (which stays, see [`Self::disconnected`])
    /// and the channels taken from the session, of those in `channels` (the others are
    /// forgotten: the client no longer polls them).
    pub(crate) fn signals(&self, channels: &[Channel]) -> Signals {
        let mut table = self.sessions.shared.table();
        let Some(session) = table.sessions.get_mut(&self.id) else {
            return Signals::default();
        };
        Signals {
            disconnect: session.disconnect.clone(),
            unsubscribed: std::mem::take(&mut session.unsubscribed)
                .into_iter()
                .filter(|c| channels.contains(c))
                .collect(),
        }
    }

    /// Takes the waiting batches of the channels in `channels` that `permissions` may read
    /// (the session may have held others, or had another token, when they came).
    pub(crate) fn take(&self, channels: &[Channel], permissions: &Permissions) -> Taken {
        let mut table = self.sessions.shared.table();
        let Some(session) = table.sessions.get_mut(&self.id) else {
            return Taken::default();
        };
        session.buffered = 0;
        let batches = std::mem::take(&mut session.buffer)
            .into_iter()
            .filter(|c| channels.contains(&c.channel))
            .filter(|c| permissions.check_presence(&c.channel).is_ok())
            .collect();
        Taken {
            batches,
            lost: std::mem::take(&mut session.lost),
        }
    }

    /// The answer says that the application took `channel` out of this client
    /// (`POST /api/unsubscribe`): the session leaves it too, and has nothing more to say
    /// about it.
    pub(crate) fn unsubscribed(&self, channel: &Channel) {
        let mut table = self.sessions.shared.table();
        let Table {
            sessions,
            by_channel,
        } = &mut *table;
        if let Some(session) = sessions.get_mut(&self.id) {
            session.membership.leave(channel);
            session.unsubscribed.retain(|c| c != channel);
            unindex(by_channel, channel, self.id);
        }
    }

    /// The answer says that the application ended the subject's connections
    /// (`POST /api/disconnect`): the session leaves its channels now. With `reconnect` it
    /// ends; without, it stays, empty, until its grace ends, and answers every poll with the
    /// same disconnect.
    pub(crate) fn disconnected(&self, disconnect: Disconnect) {
        let mut table = self.sessions.shared.table();
        if disconnect.reconnect {
            table.end(self.id);
        } else {
            table.disconnect(self.id, disconnect);
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(session) = self.sessions.shared.table().sessions.get_mut(&self.id) {
            session.polls -= 1;
            session.last_seen = Instant::now();
        }
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("sessions", &self.shared.table().sessions.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rt_core::{ChannelPattern, HubConfig, Member, MemoryBackplane, Retention};

    fn ch(s: &str) -> Channel {
        Channel::new(s).unwrap()
    }

    fn hub() -> Hub {
        let hub = Hub::new(
            Arc::new(MemoryBackplane::new(Retention::default())),
            HubConfig::default(),
        );
        hub.enable_presence([ChannelPattern::new("room:*").unwrap()])
            .unwrap();
        hub
    }

    fn joins(channel: &str, n: usize) -> Arc<Changes> {
        Arc::new(Changes {
            channel: ch(channel),
            joins: (0..n).map(|_| Member::new(None)).collect(),
            leaves: vec![],
        })
    }

    fn can_read(patterns: &[&str]) -> Permissions {
        Permissions::new(Some("u".into()), None)
            .allow_subscribe([ChannelPattern::any()])
            .allow_presence(patterns.iter().map(|p| ChannelPattern::new(p).unwrap()))
    }

    #[tokio::test]
    async fn the_buffer_keeps_the_newest_batches_and_says_when_it_dropped_some() {
        let hub = hub();
        let sessions = Sessions::new(&Config::default().presence_buffer(5));
        let room = ch("room:1");
        let me = can_read(&["room:*"]);
        let poll = sessions.attach(&hub, None, &me, &[room.clone(), ch("other")]);
        assert!(!poll.has_presence());
        for n in [2, 2, 2] {
            sessions.shared.route(&joins("room:1", n));
        }
        // Not held: nothing routed.
        sessions.shared.route(&joins("room:2", 1));
        assert!(poll.has_presence());
        let taken = poll.take(std::slice::from_ref(&room), &me);
        assert_eq!(taken.batches.len(), 2, "4 of 6 members fit in 5");
        assert!(taken.lost);
        let again = poll.take(std::slice::from_ref(&room), &me);
        assert!(again.batches.is_empty() && !again.lost);
        // One batch larger than the buffer is kept whole.
        sessions.shared.route(&joins("room:1", 9));
        let taken = poll.take(std::slice::from_ref(&room), &me);
        assert_eq!((taken.batches.len(), taken.lost), (1, false));
    }

    #[tokio::test]
    async fn batches_go_only_to_sessions_that_may_read_them() {
        let hub = hub();
        let sessions = Sessions::new(&Config::default());
        let room = ch("room:1");
        let blind = sessions.attach(&hub, None, &can_read(&[]), std::slice::from_ref(&room));
        sessions.shared.route(&joins("room:1", 1));
        assert!(!blind.has_presence());
        // A later poll with a token that may read it gets the later batches only.
        let id = blind.id();
        drop(blind);
        let seer = can_read(&["room:1"]);
        let poll = sessions.attach(&hub, Some(id), &seer, std::slice::from_ref(&room));
        assert_eq!(poll.id(), id, "same subject: same session");
        sessions.shared.route(&joins("room:1", 1));
        assert_eq!(
            poll.take(std::slice::from_ref(&room), &seer).batches.len(),
            1
        );
        // Another subject with the id gets a session of its own.
        let other =
            Permissions::new(Some("v".into()), None).allow_subscribe([ChannelPattern::any()]);
        let theirs = sessions.attach(&hub, Some(id), &other, std::slice::from_ref(&room));
        assert_ne!(theirs.id(), id);
        assert_eq!(hub.presence_stats(&room).await.unwrap().connections, 2);
    }

    #[tokio::test]
    async fn a_session_leaves_after_the_grace_and_never_while_a_poll_is_held() {
        let hub = hub();
        let grace = Duration::from_secs(10);
        let sessions = Sessions::new(&Config::default().session_grace(grace));
        let room = ch("room:1");
        let me = can_read(&["room:*"]);
        let poll = sessions.attach(&hub, None, &me, std::slice::from_ref(&room));
        let stats = || async { hub.presence_stats(&room).await.unwrap().connections };
        assert_eq!(stats().await, 1);
        // Held far longer than the grace: still a member.
        sessions.shared.sweep(Instant::now() + grace * 3);
        assert_eq!(stats().await, 1);
        let id = poll.id();
        drop(poll);
        sessions.shared.sweep(Instant::now() + grace / 2);
        assert_eq!(stats().await, 1, "within the grace");
        // Polling again within the grace is the same member; moving to other channels leaves.
        let poll = sessions.attach(&hub, Some(id), &me, &[ch("room:2")]);
        assert_eq!(poll.id(), id);
        assert_eq!(stats().await, 0);
        drop(poll);
        sessions.shared.sweep(Instant::now() + grace);
        assert_eq!(
            hub.presence_stats(&ch("room:2")).await.unwrap().connections,
            0
        );
        assert!(sessions.shared.table().sessions.is_empty());
        assert!(sessions.shared.table().by_channel.is_empty());
    }

    #[tokio::test]
    async fn signals_between_polls_are_acted_on_at_once_and_kept_for_the_next_poll() {
        let hub = hub();
        let sessions = Sessions::new(&Config::default());
        let (a, b) = (ch("room:a"), ch("room:b"));
        let me = can_read(&["room:*"]);
        let id = sessions
            .attach(&hub, None, &me, &[a.clone(), b.clone()])
            .id();
        let stats = |c: Channel| {
            let hub = hub.clone();
            async move { hub.presence_stats(&c).await.unwrap().connections }
        };
        // Another subject's signal changes nothing; a channel not held is not remembered.
        sessions.shared.signal(&Signal::Unsubscribe {
            subject: "v".into(),
            channel: a.clone(),
        });
        sessions.shared.signal(&Signal::Unsubscribe {
            subject: "u".into(),
            channel: ch("room:c"),
        });
        sessions.shared.signal(&Signal::Unsubscribe {
            subject: "u".into(),
            channel: a.clone(),
        });
        assert_eq!((stats(a.clone()).await, stats(b.clone()).await), (0, 1));
        // The next poll still names it: it stays out, and is told once.
        let poll = sessions.attach(&hub, Some(id), &me, &[a.clone(), b.clone()]);
        assert!(poll.is_signalled());
        assert_eq!(stats(a.clone()).await, 0);
        let signals = poll.signals(&[a.clone(), b.clone()]);
        assert_eq!(
            (signals.unsubscribed, signals.disconnect),
            (vec![a.clone()], None)
        );
        assert!(!poll.is_signalled());
        drop(poll);
        let banned = Disconnect {
            reconnect: false,
            reason: "banned".into(),
        };
        sessions.shared.signal(&Signal::Disconnect {
            subject: "u".into(),
            reconnect: false,
            reason: "banned".into(),
        });
        assert_eq!(stats(b.clone()).await, 0);
        // Every poll hears it again and joins nothing.
        for _ in 0..2 {
            let poll = sessions.attach(&hub, Some(id), &me, std::slice::from_ref(&b));
            assert_eq!(poll.id(), id);
            assert_eq!(poll.signals(&[]).disconnect.as_ref(), Some(&banned));
            poll.disconnected(banned.clone());
            assert_eq!(stats(b.clone()).await, 0);
        }
        // With reconnect, the poll that says it ends the session.
        let poll = sessions.attach(&hub, Some(id), &me, std::slice::from_ref(&b));
        poll.disconnected(Disconnect {
            reconnect: true,
            reason: "moved".into(),
        });
        drop(poll);
        assert!(sessions.shared.table().sessions.is_empty());
    }

    #[test]
    fn ids_are_32_hex_digits_and_parse_back() {
        let id = SessionId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_ne!(SessionId::random(), id);
        assert_eq!(
            SessionId::parse(&"AB".repeat(16)),
            SessionId::parse(&"ab".repeat(16))
        );
        for bad in [
            "",
            "abc",
            &"0".repeat(31),
            &"0".repeat(33),
            &"g".repeat(32),
            &format!("+{}", "0".repeat(31)),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }
}
