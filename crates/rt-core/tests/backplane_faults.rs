//! The hub over a backplane that loses live deliveries or its whole history, as a Redis
//! backplane can: subscriptions must refill holes from history and report lost continuity.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rt_core::*;

/// Wraps a memory backplane; can drop chosen live deliveries and can lose everything
/// (a new epoch), like a flushed Redis.
#[derive(Debug)]
struct Flaky {
    inner: Mutex<Arc<MemoryBackplane>>,
    sink: Arc<Filter>,
}

struct Filter {
    hub: Mutex<Option<Arc<dyn Sink>>>,
    drop_offsets: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

impl Sink for Filter {
    fn deliver(&self, event: Arc<Event>) {
        if self.drop_offsets.lock().unwrap().contains(&event.offset()) {
            return;
        }
        if let Some(hub) = self.hub.lock().unwrap().as_ref() {
            hub.deliver(event);
        }
    }
    fn catch_up(&self, channel: &Channel) {
        if let Some(hub) = self.hub.lock().unwrap().as_ref() {
            hub.catch_up(channel);
        }
    }
}

impl Flaky {
    fn new() -> Arc<Self> {
        let sink = Arc::new(Filter {
            hub: Mutex::new(None),
            drop_offsets: Mutex::new(HashSet::new()),
        });
        let inner = Arc::new(MemoryBackplane::new(Retention::default()));
        inner.attach(sink.clone());
        Arc::new(Flaky {
            inner: Mutex::new(inner),
            sink,
        })
    }

    fn current(&self) -> Arc<MemoryBackplane> {
        self.inner.lock().unwrap().clone()
    }

    /// Everything stored is gone; a new epoch begins.
    fn lose_history(&self) {
        let fresh = Arc::new(MemoryBackplane::new(Retention::default()));
        fresh.attach(self.sink.clone());
        *self.inner.lock().unwrap() = fresh;
    }
}

#[async_trait]
impl Backplane for Flaky {
    fn attach(&self, sink: Arc<dyn Sink>) {
        *self.sink.hub.lock().unwrap() = Some(sink);
    }
    async fn publish(&self, event: NewEvent) -> Result<Published, Error> {
        self.current().publish(event).await
    }
    async fn read(&self, channel: &Channel, after: u64, limit: usize) -> Result<Read, Error> {
        self.current().read(channel, after, limit).await
    }
    async fn head(&self, channel: &Channel) -> Result<(Epoch, u64), Error> {
        self.current().head(channel).await
    }
    async fn watch(&self, channel: &Channel) -> Result<(), Error> {
        self.current().watch(channel).await
    }
    fn unwatch(&self, channel: &Channel) {
        self.current().unwatch(channel)
    }
    fn health(&self) -> Health {
        Health::Up
    }
}

async fn publish(hub: &Hub, c: &Channel, text: &str) -> Arc<Event> {
    hub.publish(NewEvent::new(c.clone(), Payload::text(text.to_owned())))
        .await
        .unwrap()
        .event
}

async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the subscription is still open")
}

#[tokio::test]
async fn a_missed_live_event_is_refilled_from_history_in_order() {
    let backplane = Flaky::new();
    let hub = Hub::new(backplane.clone(), HubConfig::default());
    let c = Channel::new("c").unwrap();
    let mut sub = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    backplane.sink.drop_offsets.lock().unwrap().insert(2);
    for i in 1..=3 {
        publish(&hub, &c, &i.to_string()).await;
    }
    for offset in 1..=3 {
        match next(&mut sub).await {
            Delivery::Event(e) => assert_eq!(e.offset(), offset),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn catch_up_signal_rereads_history() {
    let backplane = Flaky::new();
    let hub = Hub::new(backplane.clone(), HubConfig::default());
    let c = Channel::new("c").unwrap();
    let mut sub = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    // The backplane "was disconnected" for two publishes, then tells the hub to catch up.
    backplane.sink.drop_offsets.lock().unwrap().extend([1, 2]);
    publish(&hub, &c, "a").await;
    publish(&hub, &c, "b").await;
    backplane.sink.catch_up(&c);
    for offset in 1..=2 {
        match next(&mut sub).await {
            Delivery::Event(e) => assert_eq!(e.offset(), offset),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sub.cursor().offset(&c), Some(2));
}

#[tokio::test]
async fn lost_history_is_a_resync_then_the_new_epoch_from_its_start() {
    let backplane = Flaky::new();
    let hub = Hub::new(backplane.clone(), HubConfig::default());
    let (a, b) = (Channel::new("a").unwrap(), Channel::new("b").unwrap());
    let mut sub = hub
        .subscribe([a.clone(), b.clone()], Start::Live)
        .await
        .unwrap();
    publish(&hub, &a, "old").await;
    assert!(matches!(next(&mut sub).await, Delivery::Event(_)));
    let old_epoch = sub.cursor().epoch();

    backplane.lose_history();
    // Two events land in the new epoch; the live hand-over only sees the second.
    backplane.sink.drop_offsets.lock().unwrap().insert(1);
    publish(&hub, &a, "new1").await;
    backplane.sink.drop_offsets.lock().unwrap().clear();
    publish(&hub, &a, "new2").await;

    match next(&mut sub).await {
        Delivery::Resync { mut channels } => {
            channels.sort();
            assert_eq!(channels, vec![a.clone(), b.clone()]);
        }
        other => panic!("expected a resync first, got {other:?}"),
    }
    for offset in 1..=2 {
        match next(&mut sub).await {
            Delivery::Event(e) => {
                assert_eq!(e.offset(), offset);
                assert_ne!(e.epoch(), old_epoch);
            }
            other => panic!("{other:?}"),
        }
    }
    let cursor = sub.cursor();
    assert_ne!(cursor.epoch(), old_epoch);
    assert_eq!(cursor.offset(&a), Some(2));

    // A client resuming with a cursor of the lost epoch is told, not silently served.
    let mut stale = Cursor::new(old_epoch);
    stale.set(a.clone(), 1);
    let mut again = hub.empty_subscription();
    assert!(!again
        .add([a], Start::Cursor(stale))
        .await
        .unwrap()
        .recovered());
}
