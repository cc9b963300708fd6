//! The seam, fed every interleaving of "a publish happens", "a history page is read" and "a
//! live event is taken", with a model of the backplane (a [`History`] per channel) and of the
//! live queues (bounded, dropping the oldest and reporting a lag, as tokio's broadcast does).
//!
//! Small cases are explored exhaustively; proptest draws longer schedules, with backplane
//! catch-up signals and lost histories (a new epoch) thrown in. Every complete run must hand
//! out, per channel, one run of offsets without a hole or a repeat except where a resync says
//! so, keep the cursor equal to what was handed out, and end with everything published: a
//! lane whose live queue overflowed catches up from history, and a resync is only allowed
//! where history was trimmed or lost.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::event::{Payload, Position};
use crate::history::{History, Retention};
use crate::name::EventName;

const NAMES: [&str; 3] = ["a", "b", "c"];

fn channel(k: usize) -> Channel {
    Channel::new(NAMES[k]).unwrap()
}

/// The knobs of one world.
#[derive(Clone, Copy, Debug)]
struct Config {
    channels: usize,
    /// Live queue capacity.
    queue: usize,
    /// Retained events per channel.
    retention: usize,
    page: usize,
    /// Whether the join answer carries the first pages (else the seam asks for them).
    join_pages: bool,
}

impl Config {
    fn retention(&self) -> Retention {
        Retention {
            max_len: self.retention,
            max_age: Duration::from_secs(3600),
        }
    }
}

/// A lane's live receiver: bounded; on overflow the oldest goes and the next take is a lag.
#[derive(Clone, Debug, Default)]
struct Queue {
    items: VecDeque<Arrival>,
    lagged: bool,
}

impl Queue {
    fn push(&mut self, arrival: Arrival, capacity: usize) {
        if self.items.len() == capacity {
            self.items.pop_front();
            self.lagged = true;
        }
        self.items.push_back(arrival);
    }

    fn take(&mut self) -> Option<Arrival> {
        if std::mem::take(&mut self.lagged) {
            return Some(Arrival::Lagged);
        }
        self.items.pop_front()
    }
}

/// Where the subscriber (the driver) is.
#[derive(Clone, Debug)]
enum Phase {
    /// `begin_add` done; the live receivers are not created yet.
    Receivers,
    /// Receivers created; the backplane's join answer not read yet.
    Answer,
    /// Asking the seam for first pages.
    JoinReads,
    /// A read sent during the join, not answered yet.
    JoinReading(usize, Channel, u64),
    /// Polling the seam.
    Run,
    /// A read sent (its receiver renewed when asked), not answered yet.
    Reading(usize, Channel, u64),
    /// The seam said the subscription ended.
    Done,
}

#[derive(Clone, Debug)]
struct World {
    config: Config,
    epoch: Epoch,
    histories: Vec<History>,
    queues: Vec<Option<Queue>>,
    seam: Seam,
    phase: Phase,
    start: Start,
    /// The heads the join answer saw, and the oldest retained offsets then.
    joined_at: Vec<(u64, u64)>,
    joined_epoch: Epoch,
    joined: Option<(Joined, Cursor)>,
    /// Everything handed out, with the cursor right after it.
    log: Vec<(Delivery, Cursor)>,
    steps: usize,
}

impl World {
    /// A world where `before[k]` events were published on channel `k` before subscribing.
    fn new(config: Config, before: &[u64], start: Start) -> World {
        let mut w = World {
            config,
            epoch: Epoch(7),
            histories: (0..config.channels).map(|_| History::new()).collect(),
            queues: vec![None; config.channels],
            seam: Seam::default(),
            phase: Phase::Receivers,
            start: start.clone(),
            joined_at: Vec::new(),
            joined_epoch: Epoch(0),
            joined: None,
            log: Vec::new(),
            steps: 0,
        };
        for (k, n) in before.iter().enumerate() {
            for _ in 0..*n {
                w.publish(k);
            }
        }
        let channels = (0..config.channels).map(channel).collect();
        w.seam.begin_add(channels, start);
        w
    }

    fn publish(&mut self, k: usize) {
        self.publish_to(k, true);
    }

    /// A publish; `live: false` is one the backplane stored but failed to deliver live (a
    /// lost pub/sub message): only a later event's offset tells the lane it missed one.
    fn publish_to(&mut self, k: usize, live: bool) {
        let history = &mut self.histories[k];
        let event = Arc::new(Event::new(
            channel(k),
            Position {
                epoch: self.epoch,
                offset: history.next_offset(),
            },
            EventName::message(),
            Payload::text("x"),
            1,
        ));
        history.push(event.clone(), self.config.retention(), 1);
        if let (Some(q), true) = (&mut self.queues[k], live) {
            q.push(Arrival::Event(event), self.config.queue);
        }
    }

    /// The backplane says it may have missed live events of channel `k`.
    fn catch_up(&mut self, k: usize) {
        if let Some(q) = &mut self.queues[k] {
            q.push(Arrival::CatchUp, self.config.queue);
        }
    }

    /// History is lost: a new epoch, offsets from 1 again; the backplane tells every lane
    /// to catch up, as one that reconnects does.
    fn lose_history(&mut self) {
        self.epoch = Epoch(self.epoch.0 + 1);
        for h in &mut self.histories {
            *h = History::new();
        }
        for k in 0..self.config.channels {
            self.catch_up(k);
        }
    }

    fn read(&self, k: usize, after: u64) -> Read {
        Read {
            epoch: self.epoch,
            since: self.histories[k].since(after, self.config.page),
        }
    }

    /// What `MemoryBackplane::join` answers now.
    fn answer(&self, asked: &[ReadFrom]) -> Vec<ChannelHead> {
        let mut answers: Vec<ChannelHead> = asked
            .iter()
            .enumerate()
            .map(|(k, from)| self.histories[k].join(self.epoch, *from, self.config.page))
            .collect();
        if !self.config.join_pages {
            answers.iter_mut().for_each(|a| a.page = None);
        }
        answers
    }

    fn record(&mut self, d: Delivery) {
        let cursor = self.seam.cursor();
        self.log.push((d, cursor));
    }

    /// Every world one step of the subscriber can lead to; empty when it waits (or ended).
    fn subscriber_steps(&self) -> Vec<World> {
        let mut next = self.clone();
        next.steps += 1;
        match self.phase.clone() {
            Phase::Receivers => {
                next.queues = vec![Some(Queue::default()); self.config.channels];
                next.phase = Phase::Answer;
            }
            Phase::Answer => {
                let asked = match &self.start {
                    Start::Live => vec![ReadFrom::Nothing; self.config.channels],
                    Start::Earliest => vec![ReadFrom::Earliest; self.config.channels],
                    Start::Cursor(c) => (0..self.config.channels)
                        .map(|k| {
                            c.offset(&channel(k))
                                .map_or(ReadFrom::Nothing, ReadFrom::After)
                        })
                        .collect(),
                };
                next.joined_epoch = self.epoch;
                next.joined_at = self
                    .histories
                    .iter()
                    .map(|h| match h.since(0, 1) {
                        Since::Gap { head, oldest } => (head, oldest),
                        Since::Events { .. } => (h.head(), 1),
                    })
                    .collect();
                next.seam.on_join(next.answer(&asked)).unwrap();
                next.phase = Phase::JoinReads;
            }
            Phase::JoinReads => match next.seam.join_read() {
                Some((i, ch, after)) => next.phase = Phase::JoinReading(i, ch, after),
                None => {
                    let joined = next.seam.end_add();
                    next.joined = Some((joined, next.seam.cursor()));
                    next.phase = Phase::Run;
                }
            },
            Phase::JoinReading(i, ch, after) => {
                assert_eq!(ch, channel(i));
                let read = next.read(i, after);
                next.seam.on_page(i, read);
                next.phase = Phase::JoinReads;
            }
            Phase::Reading(i, ch, after) => {
                assert_eq!(ch, channel(i));
                let read = next.read(i, after);
                next.seam.on_page(i, read);
                next.phase = Phase::Run;
            }
            Phase::Done => return Vec::new(),
            Phase::Run => match next.seam.poll() {
                Action::Deliver(d) => next.record(d),
                Action::End => next.phase = Phase::Done,
                Action::Read {
                    lane,
                    channel,
                    after,
                    rejoin,
                } => {
                    if rejoin {
                        next.queues[lane] = Some(Queue::default());
                    }
                    next.phase = Phase::Reading(lane, channel, after);
                }
                Action::Live => {
                    // Any non-empty queue may be the one the driver takes from.
                    let mut worlds = Vec::new();
                    for i in 0..self.config.channels {
                        let mut w = next.clone();
                        let Some(arrival) = w.queues[i].as_mut().and_then(Queue::take) else {
                            continue;
                        };
                        if let Some(d) = w.seam.on_live(i, arrival) {
                            w.record(d);
                        }
                        worlds.push(w);
                    }
                    return worlds;
                }
            },
        }
        vec![next]
    }

    /// Checks a run that is over: nothing left to publish, the subscriber waits or ended.
    fn check(&self) {
        let ctx = || format!("{:?} from {:?}", self.config, self.start);
        let (joined, first) = self.joined.as_ref().expect("the add completed");
        let channels = self.config.channels;
        // Where each channel starts.
        for k in 0..channels {
            let c = channel(k);
            let (head, oldest) = self.joined_at[k];
            let resynced = joined.resynced.contains(&c);
            match &self.start {
                Start::Live => {
                    assert!(!resynced, "{}", ctx());
                    assert_eq!(first.offset(&c), Some(head), "{}", ctx());
                }
                Start::Earliest => assert!(!resynced, "{}", ctx()),
                Start::Cursor(cursor) => {
                    let o = cursor.offset(&c).unwrap();
                    let covered = o <= head && (o == head || o + 1 >= oldest);
                    if covered && cursor.epoch() == self.joined_epoch {
                        assert_eq!(first.offset(&c), Some(o), "{}", ctx());
                    }
                }
            }
        }
        // One run of offsets per channel; a resync is the only way to skip. With `earliest`,
        // a channel starts at whatever history holds when its first event is read.
        let mut at: Vec<Option<u64>> = (0..channels).map(|k| first.offset(&channel(k))).collect();
        if matches!(self.start, Start::Earliest) {
            at = vec![None; channels];
        }
        let mut resyncs = 0;
        for (d, cursor) in &self.log {
            match d {
                Delivery::Event(e) => {
                    let k = NAMES
                        .iter()
                        .position(|n| *n == e.channel().as_str())
                        .unwrap();
                    if let Some(o) = at[k] {
                        assert_eq!(
                            e.offset(),
                            o + 1,
                            "hole or repeat; {}: {:?}",
                            ctx(),
                            self.log
                        );
                    }
                    at[k] = Some(e.offset());
                    assert_eq!(cursor.epoch(), e.epoch(), "{}", ctx());
                }
                Delivery::Resync { channels } => {
                    resyncs += 1;
                    for c in channels {
                        let k = NAMES.iter().position(|n| *n == c.as_str()).unwrap();
                        at[k] = cursor.offset(c);
                    }
                }
                // The seam never hands these out: signals are the subscription's, and this
                // model sends no join or leave events.
                Delivery::Unsubscribed { .. }
                | Delivery::Disconnected { .. }
                | Delivery::Presence(_) => {
                    panic!("a signal out of the seam: {d:?}")
                }
            }
            for (k, o) in at.iter().enumerate() {
                if o.is_some() {
                    assert_eq!(cursor.offset(&channel(k)), *o, "cursor; {}", ctx());
                }
            }
        }
        // A lag never ends the subscription: everything is handed out in the end.
        assert!(matches!(self.phase, Phase::Run), "{}", ctx());
        for k in 0..channels {
            let o = self.seam.cursor().offset(&channel(k));
            let head = self.histories[k].head();
            assert_eq!(o, Some(head), "all delivered; {}: {:?}", ctx(), self.log);
            if let Some(at) = at[k] {
                assert_eq!(o, Some(at), "cursor; {}", ctx());
            }
        }
        assert_eq!(self.seam.cursor().epoch(), self.epoch, "{}", ctx());
        // History that never trims (and a cursor of this epoch) leaves nothing to resync.
        let never_trimmed = self
            .histories
            .iter()
            .all(|h| h.head() as usize <= self.config.retention);
        let foreign = matches!(&self.start, Start::Cursor(c) if c.epoch() != self.epoch);
        if never_trimmed && !foreign && joined.recovered() && self.epoch == Epoch(7) {
            assert_eq!(resyncs, 0, "{}: {:?}", ctx(), self.log);
        }
    }
}

/// Runs every interleaving of the subscriber's steps with publishes on `publishes` (in that
/// order; a channel index over 10 is channel `k - 10` published without live delivery);
/// returns how many complete runs were checked.
fn explore(w: World, publishes: &[usize]) -> usize {
    assert!(w.steps < 200, "the seam does not settle: {:?}", w.log);
    let subs = w.subscriber_steps();
    let mut runs = 0;
    if let Some((&k, rest)) = publishes.split_first() {
        let mut p = w.clone();
        p.publish_to(k % 10, k < 10);
        runs += explore(p, rest);
    } else if subs.is_empty() {
        w.check();
        return 1;
    }
    for s in subs {
        runs += explore(s, publishes);
    }
    runs
}

fn cursor_at(epoch: Epoch, offsets: &[u64]) -> Start {
    let mut c = Cursor::new(epoch);
    for (k, o) in offsets.iter().enumerate() {
        c.set(channel(k), *o);
    }
    Start::Cursor(c)
}

#[test]
fn one_channel_every_interleaving() {
    let mut runs = 0;
    for queue in [1, 2, 8] {
        for retention in [2, 8] {
            for page in [1, 3] {
                for join_pages in [true, false] {
                    let config = Config {
                        channels: 1,
                        queue,
                        retention,
                        page,
                        join_pages,
                    };
                    let mut starts = vec![Start::Live, Start::Earliest];
                    starts.extend((0..=4).map(|o| cursor_at(Epoch(7), &[o])));
                    starts.push(cursor_at(Epoch(3), &[1]));
                    for start in starts {
                        for publishes in [[0, 0, 0], [0, 10, 0]] {
                            let w = World::new(config, &[3], start.clone());
                            runs += explore(w, &publishes);
                        }
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "{runs} runs");
}

#[test]
fn two_channels_every_interleaving() {
    let mut runs = 0;
    for queue in [1, 4] {
        for retention in [1, 8] {
            for page in [1, 2] {
                let config = Config {
                    channels: 2,
                    queue,
                    retention,
                    page,
                    join_pages: true,
                };
                for start in [
                    Start::Live,
                    Start::Earliest,
                    cursor_at(Epoch(7), &[1, 0]),
                    cursor_at(Epoch(7), &[2, 1]),
                ] {
                    for publishes in [[0, 1, 0], [11, 1, 0], [10, 0, 1]] {
                        let w = World::new(config, &[2, 1], start.clone());
                        runs += explore(w, &publishes);
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "{runs} runs");
}

/// One move of a drawn schedule.
#[derive(Clone, Debug)]
enum Move {
    Publish(usize),
    /// Stored, not delivered live.
    Silent(usize),
    CatchUp(usize),
    LoseHistory,
    /// A subscriber step; the number picks among its possible steps.
    Subscriber(usize),
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        8 => (0..3usize).prop_map(Move::Publish),
        1 => (0..3usize).prop_map(Move::Silent),
        1 => (0..3usize).prop_map(Move::CatchUp),
        1 => Just(Move::LoseHistory),
        12 => (0..3usize).prop_map(Move::Subscriber),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn drawn_schedules(
        channels in 1..=3usize,
        queue in 1..6usize,
        retention in 1..12usize,
        page in 1..5usize,
        join_pages: bool,
        before in proptest::collection::vec(0..6u64, 3),
        start in 0..4u8,
        schedule in proptest::collection::vec(moves(), 0..80),
        loses in 0..2u8,
    ) {
        let config = Config { channels, queue, retention, page, join_pages };
        let start = match start {
            0 => Start::Live,
            1 => Start::Earliest,
            2 => cursor_at(Epoch(7), &before.iter().map(|n| n / 2).collect::<Vec<_>>()),
            _ => cursor_at(Epoch(7), &before.iter().map(|n| n + 1).collect::<Vec<_>>()),
        };
        let mut w = World::new(config, &before[..channels], start);
        let mut lost = 0;
        for m in schedule {
            match m {
                Move::Publish(k) => w.publish(k % channels),
                Move::Silent(k) => w.publish_to(k % channels, false),
                Move::CatchUp(k) => w.catch_up(k % channels),
                Move::LoseHistory if lost < loses => {
                    lost += 1;
                    w.lose_history();
                }
                Move::LoseHistory => {}
                Move::Subscriber(pick) => {
                    let mut next = w.subscriber_steps();
                    if !next.is_empty() {
                        let n = next.len();
                        w = next.swap_remove(pick % n);
                    }
                }
            }
        }
        // A last event per channel tells about a missed one (as it does in production);
        // then nothing more is published: the subscriber runs until it waits.
        for k in 0..channels {
            w.publish(k);
        }
        loop {
            prop_assert!(w.steps < 2000, "the seam does not settle: {:?}", w.log);
            let mut next = w.subscriber_steps();
            if next.is_empty() {
                break;
            }
            w = next.swap_remove(0);
        }
        w.check();
    }
}
