//! How the hub calls its backplane: never under the hub's own locks (a backplane may call the
//! sink from anywhere, even from inside `unwatch`), never with a re-join's `watch` ahead of the
//! `unwatch` that preceded it, and one `join` per subscribe for heads and first pages.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rt_core::*;

/// A memory backplane that records watch and unwatch calls, and whose `unwatch` can call the
/// sink or block until the test lets it go.
struct Recorder {
    inner: MemoryBackplane,
    sink: OnceLock<Arc<dyn Sink>>,
    log: Mutex<Vec<String>>,
    /// What the backplane delivers, as it would end up after applying the calls in order.
    watched: Mutex<HashSet<Channel>>,
    catch_up_in_unwatch: AtomicBool,
    hold_unwatch: Mutex<Option<mpsc::Receiver<()>>>,
    /// Calls of head, read and join.
    heads: AtomicUsize,
    reads: AtomicUsize,
    joins: AtomicUsize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("log", &self.log).finish()
    }
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Recorder {
            inner: MemoryBackplane::new(Retention::default()),
            sink: OnceLock::new(),
            log: Mutex::new(Vec::new()),
            watched: Mutex::new(HashSet::new()),
            catch_up_in_unwatch: AtomicBool::new(false),
            hold_unwatch: Mutex::new(None),
            heads: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            joins: AtomicUsize::new(0),
        })
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn is_watched(&self, channel: &Channel) -> bool {
        self.watched.lock().unwrap().contains(channel)
    }
}

#[async_trait]
impl Backplane for Recorder {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink.clone());
        self.inner.attach(sink);
    }
    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        self.inner.publish(event).await
    }
    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(channel, after, limit).await
    }
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head(channel).await
    }
    async fn join(
        &self,
        channels: &[(Channel, ReadFrom)],
        limit: usize,
    ) -> Result<Vec<ChannelHead>, Error> {
        self.joins.fetch_add(1, Ordering::Relaxed);
        self.inner.join(channels, limit).await
    }
    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        self.log.lock().unwrap().push(format!("watch {channel}"));
        self.watched.lock().unwrap().insert(channel.clone());
        Ok(())
    }
    fn unwatch(&self, channel: &Channel) {
        self.log.lock().unwrap().push(format!("unwatch {channel}"));
        let hold = self.hold_unwatch.lock().unwrap().take();
        if let Some(hold) = hold {
            let _ = hold.recv();
        }
        if self.catch_up_in_unwatch.load(Ordering::Relaxed) {
            if let Some(sink) = self.sink.get() {
                sink.catch_up(channel);
            }
        }
        self.watched.lock().unwrap().remove(channel);
    }
    fn health(&self) -> Health {
        Health::Up
    }
}

fn ch(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

async fn next_offset(sub: &mut Subscription) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Delivery::Event(e))) => e.offset(),
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_backplane_may_call_the_sink_from_inside_unwatch() {
    let bp = Recorder::new();
    bp.catch_up_in_unwatch.store(true, Ordering::Relaxed);
    let hub = Hub::new(bp.clone(), HubConfig::default());
    let sub = hub.subscribe([ch("c")], Start::Live).await.unwrap();
    // Had the hub kept its lock across `unwatch`, the sink call would wait on it forever: run
    // the drop on a thread of its own so that a regression fails instead of hanging.
    let (done, dropped) = mpsc::channel();
    std::thread::spawn(move || {
        drop(sub);
        let _ = done.send(());
    });
    dropped
        .recv_timeout(Duration::from_secs(5))
        .expect("dropping the last subscriber deadlocked in unwatch");
    assert_eq!(bp.log(), ["watch c", "unwatch c"]);
    assert_eq!(hub.stats().channels, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_during_unwatch_watches_again_after_it() {
    let bp = Recorder::new();
    let hub = Hub::new(bp.clone(), HubConfig::default());
    let c = ch("c");
    let first = hub.subscribe([c.clone()], Start::Live).await.unwrap();

    // The last subscriber leaves, and the unwatch it causes is slow to reach the backplane...
    let (go_on, hold) = mpsc::channel();
    *bp.hold_unwatch.lock().unwrap() = Some(hold);
    let leaving = std::thread::spawn(move || drop(first));
    wait_for("the unwatch to start", || bp.log().len() == 2).await;

    // ...while a new subscriber joins: its watch must not overtake the unwatch.
    let rejoin = tokio::spawn({
        let (hub, c) = (hub.clone(), c.clone());
        async move { hub.subscribe([c], Start::Live).await }
    });
    // And one that comes and goes meanwhile changes nothing.
    let passing = tokio::spawn({
        let (hub, c) = (hub.clone(), c.clone());
        async move { drop(hub.subscribe([c], Start::Live).await) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!rejoin.is_finished(), "the re-join waits for the unwatch");
    assert_eq!(bp.log(), ["watch c", "unwatch c"]);

    go_on.send(()).unwrap();
    leaving.join().unwrap();
    let mut sub = rejoin.await.unwrap().unwrap();
    passing.await.unwrap();
    assert_eq!(bp.log(), ["watch c", "unwatch c", "watch c"]);
    assert!(bp.is_watched(&c), "a channel with a subscriber is watched");
    assert_eq!(hub.stats().channels, 1);

    let p = hub
        .publish(NewEvent::new(c.clone(), Payload::text("x")))
        .await
        .unwrap();
    assert_eq!(next_offset(&mut sub).await, p.event.offset());
    drop(sub);
    assert!(!bp.is_watched(&c));
    assert_eq!(hub.stats().channels, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_end_watched_exactly_when_subscribed() {
    let bp = Recorder::new();
    let hub = Hub::new(bp.clone(), HubConfig::default());
    let c = ch("c");
    for _ in 0..50 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (hub, c) = (hub.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                let sub = hub.subscribe([c], Start::Live).await.unwrap();
                tokio::task::yield_now().await;
                drop(sub);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!bp.is_watched(&c), "nobody is left: {:?}", bp.log());
        let sub = hub.subscribe([c.clone()], Start::Live).await.unwrap();
        assert!(bp.is_watched(&c), "a subscriber is left: {:?}", bp.log());
        drop(sub);
    }
    assert_eq!(hub.stats().channels, 0);
}

/// A memory backplane with the trait's default `join`.
#[derive(Debug)]
struct Plain(Arc<MemoryBackplane>);

#[async_trait]
impl Backplane for Plain {
    fn attach(&self, sink: Arc<dyn Sink>) {
        self.0.attach(sink);
    }
    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        self.0.publish(event).await
    }
    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        self.0.read(channel, after, limit).await
    }
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        self.0.head(channel).await
    }
    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        self.0.watch(channel).await
    }
    fn unwatch(&self, channel: &Channel) {
        self.0.unwatch(channel);
    }
    fn health(&self) -> Health {
        Health::Up
    }
}

fn page_offsets(answer: &ChannelHead) -> (Vec<u64>, bool) {
    match &answer.page {
        Some(Since::Events { events, more }) => {
            (events.iter().map(|e| e.offset()).collect(), *more)
        }
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test]
async fn the_memory_join_answers_as_head_and_read_do() {
    let memory = Arc::new(MemoryBackplane::new(Retention {
        max_len: 3,
        max_age: Duration::from_secs(60),
    }));
    let plain = Plain(memory.clone());
    let (a, b) = (ch("a"), ch("b"));
    for i in 1..=5 {
        memory
            .publish(NewEvent::new(a.clone(), Payload::text(format!("{i}"))))
            .await
            .unwrap();
    }
    let asked = [
        (a.clone(), ReadFrom::Nothing),
        (a.clone(), ReadFrom::Earliest),
        (a.clone(), ReadFrom::After(1)),
        (a.clone(), ReadFrom::After(3)),
        (a.clone(), ReadFrom::After(5)),
        (a.clone(), ReadFrom::After(9)),
        (b.clone(), ReadFrom::Nothing),
        (b.clone(), ReadFrom::Earliest),
        (b.clone(), ReadFrom::After(0)),
    ];
    let batched = memory.join(&asked, 2).await.unwrap();
    assert_eq!(batched, plain.join(&asked, 2).await.unwrap());

    assert!(batched.iter().all(|h| h.epoch == memory.epoch()));
    let heads: Vec<u64> = batched.iter().map(|h| h.head).collect();
    assert_eq!(heads, [5, 5, 5, 5, 5, 5, 0, 0, 0]);
    assert_eq!((batched[0].after, &batched[0].page), (5, &None));
    // Offsets 3 to 5 are retained: earliest reads from 3.
    assert_eq!(batched[1].after, 2);
    assert_eq!(page_offsets(&batched[1]), (vec![3, 4], true));
    assert_eq!(
        batched[2].page,
        Some(Since::Gap { head: 5, oldest: 3 }),
        "1 is no longer covered"
    );
    assert_eq!(page_offsets(&batched[3]), (vec![4, 5], false));
    assert_eq!(page_offsets(&batched[4]), (vec![], false));
    assert_eq!(batched[5].page, Some(Since::Gap { head: 5, oldest: 3 }));
    assert_eq!((batched[6].after, &batched[6].page), (0, &None));
    assert_eq!(page_offsets(&batched[7]), (vec![], false));
    assert_eq!(page_offsets(&batched[8]), (vec![], false));
}

#[tokio::test]
async fn subscribing_to_many_channels_asks_the_backplane_once() {
    let bp = Recorder::new();
    let hub = Hub::new(bp.clone(), HubConfig::default());
    let channels: Vec<Channel> = (0..50).map(|i| ch(&format!("c{i}"))).collect();
    for c in &channels {
        for i in 1..=3 {
            hub.publish(NewEvent::new(c.clone(), Payload::text(format!("{i}"))))
                .await
                .unwrap();
        }
    }
    let mut cursor = Cursor::new(bp.inner.epoch());
    for c in &channels {
        cursor.set(c.clone(), 1);
    }
    let mut sub = hub
        .subscribe(channels.clone(), Start::Cursor(cursor))
        .await
        .unwrap();
    assert_eq!(bp.joins.load(Ordering::Relaxed), 1);
    assert_eq!(bp.heads.load(Ordering::Relaxed), 0);
    assert_eq!(
        bp.reads.load(Ordering::Relaxed),
        0,
        "every page came with the join"
    );
    let mut seen = HashSet::new();
    for _ in 0..channels.len() * 2 {
        match sub.try_next() {
            Some(Delivery::Event(e)) => assert!(seen.insert((e.channel().clone(), e.offset()))),
            other => panic!("expected a replayed event ready at once, got {other:?}"),
        }
    }
    for c in &channels {
        assert!(seen.contains(&(c.clone(), 2)) && seen.contains(&(c.clone(), 3)));
        assert_eq!(sub.cursor().offset(c), Some(3));
    }
    assert_eq!(sub.try_next(), None);
}
