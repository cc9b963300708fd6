//! How the hub calls its backplane: never under the hub's own locks (a backplane may call the
//! sink from anywhere, even from inside `unwatch`), and never with a re-join's `watch` ahead of
//! the `unwatch` that preceded it.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
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
        self.inner.read(channel, after, limit).await
    }
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        self.inner.head(channel).await
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
