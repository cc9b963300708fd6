//! The Redis backplane against a real Redis: positions, history, idempotency, several nodes,
//! lost history, and Redis going away and coming back.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rt_backplane::{RedisBackplane, RedisConfig};
use rt_core::{
    Backplane, Channel, ChannelHead, Cursor, Delivery, Health, Hub, HubConfig, MessageId, NewEvent,
    Payload, ReadFrom, Since, Start, Subscription,
};
use rt_tests::{redis_cmd, redis_url, RedisServer};

/// A key prefix no other test uses, so tests can share one Redis.
fn prefix(test: &str) -> String {
    rt_tests::unique(&format!("rt-test-{test}"))
}

const WAIT: Duration = Duration::from_secs(15);

struct Node {
    hub: Hub,
    backplane: Arc<RedisBackplane>,
}

async fn node(config: RedisConfig) -> Node {
    let backplane = Arc::new(RedisBackplane::connect(config).await.unwrap());
    assert!(
        backplane.wait_until_up(WAIT).await,
        "could not connect to Redis"
    );
    let hub = Hub::new(backplane.clone(), HubConfig::default());
    Node { hub, backplane }
}

fn ch(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

fn text(s: impl Into<String>) -> Payload {
    Payload::text(s.into())
}

async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no delivery in time")
        .expect("subscription ended")
}

async fn next_event(sub: &mut Subscription) -> Arc<rt_core::Event> {
    match next(sub).await {
        Delivery::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn offsets(since: &Since) -> (Vec<u64>, bool) {
    match since {
        Since::Events { events, more } => (events.iter().map(|e| e.offset()).collect(), *more),
        Since::Gap { .. } => panic!("unexpected gap {since:?}"),
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn positions_history_and_idempotency() {
    let redis = redis_url();
    let n = node(RedisConfig::new(redis.as_str()).prefix(prefix("basics"))).await;
    let bp = &n.backplane;
    let c = ch("prices");
    let (epoch, head) = bp.head(&c).await.unwrap();
    assert_eq!(head, 0);

    for i in 1..=5u64 {
        let p = bp
            .publish(NewEvent::new(c.clone(), text(format!("p{i}"))))
            .await
            .unwrap();
        assert_eq!(
            (p.event.epoch(), p.event.offset(), p.duplicate),
            (epoch, i, false)
        );
        assert!(p.event.time_ms() > 0);
    }
    assert_eq!(bp.head(&c).await.unwrap(), (epoch, 5));
    let r = bp.read(&c, 0, 2).await.unwrap();
    assert_eq!(r.epoch, epoch);
    assert_eq!(offsets(&r.since), (vec![1, 2], true));
    let r = bp.read(&c, 2, 10).await.unwrap();
    assert_eq!(offsets(&r.since), (vec![3, 4, 5], false));
    match &r.since {
        Since::Events { events, .. } => assert_eq!(events[0].payload(), &text("p3")),
        Since::Gap { .. } => unreachable!(),
    }
    assert_eq!(
        offsets(&bp.read(&c, 5, 10).await.unwrap().since),
        (vec![], false)
    );
    assert_eq!(
        bp.read(&c, 9, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 1 }
    );
    // Other channels have their own offsets.
    let other = bp
        .publish(NewEvent::new(ch("trades"), text("t")))
        .await
        .unwrap();
    assert_eq!(other.event.offset(), 1);

    // A retried publish with the same message id returns the first one's event.
    let mut first = NewEvent::new(c.clone(), Payload::binary(vec![0u8, 255, 10]));
    first.name = rt_core::EventName::new("bin.update").unwrap();
    first.idempotency_key = Some(MessageId::new("m-1").unwrap());
    let a = bp.publish(first.clone()).await.unwrap();
    let mut retry = first.clone();
    retry.payload = text("changed");
    let b = bp.publish(retry).await.unwrap();
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(b.event.offset(), 6);
    assert_eq!(b.event.payload(), &Payload::binary(vec![0u8, 255, 10]));
    assert_eq!(b.event.name().as_str(), "bin.update");
    assert_eq!(
        bp.head(&c).await.unwrap().1,
        6,
        "a duplicate is not stored again"
    );
    // The same id on another channel is another message.
    let mut elsewhere = first;
    elsewhere.channel = ch("trades");
    assert!(!bp.publish(elsewhere).await.unwrap().duplicate);
    match bp.read(&c, 5, 1).await.unwrap().since {
        Since::Events { events, .. } => {
            assert_eq!(events[0].payload(), &Payload::binary(vec![0u8, 255, 10]))
        }
        Since::Gap { .. } => panic!("gap"),
    }
    assert_eq!(bp.health(), Health::Up);
}

#[tokio::test]
async fn history_is_bounded_by_count_and_age() {
    let redis = redis_url();
    let config = RedisConfig::new(redis.as_str())
        .prefix(prefix("bounded"))
        .history(3, Duration::from_millis(400));
    let bp = node(config).await.backplane;
    let c = ch("c");
    for i in 1..=5 {
        bp.publish(NewEvent::new(c.clone(), text(format!("{i}"))))
            .await
            .unwrap();
    }
    assert_eq!(
        bp.read(&c, 0, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 3 }
    );
    assert_eq!(
        bp.read(&c, 1, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 3 }
    );
    assert_eq!(
        offsets(&bp.read(&c, 2, 10).await.unwrap().since),
        (vec![3, 4, 5], false)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        bp.read(&c, 4, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 6 }
    );
    assert_eq!(
        offsets(&bp.read(&c, 5, 10).await.unwrap().since),
        (vec![], false)
    );
    // The head survives expiry: offsets are never reused.
    let p = bp
        .publish(NewEvent::new(c.clone(), text("6")))
        .await
        .unwrap();
    assert_eq!(p.event.offset(), 6);
    assert_eq!(
        offsets(&bp.read(&c, 5, 10).await.unwrap().since),
        (vec![6], false)
    );
}

/// `earliest` on a channel whose history was trimmed starts at the oldest retained event, and
/// the subscription has those events ready as soon as it is made: a short poll takes only what
/// is ready, and a Redis read is never ready without waiting. When nothing is retained, the
/// cursor moves to the head, so that giving it back reports no loss.
#[tokio::test]
async fn earliest_on_trimmed_history_has_the_retained_events_ready_at_once() {
    let redis = redis_url();
    let config = RedisConfig::new(redis.as_str())
        .prefix(prefix("earliest"))
        .history(3, Duration::from_millis(500));
    let n = node(config).await;
    let c = ch("c");
    for i in 1..=5 {
        n.hub
            .publish(NewEvent::new(c.clone(), text(format!("{i}"))))
            .await
            .unwrap();
    }
    let mut sub = n.hub.subscribe([c.clone()], Start::Earliest).await.unwrap();
    let mut ready = Vec::new();
    while let Some(Delivery::Event(e)) = sub.try_next() {
        ready.push(e.offset());
    }
    assert_eq!(ready, [3, 4, 5]);
    assert_eq!(sub.cursor().offset(&c), Some(5));

    // Everything aged out: nothing to deliver, and the cursor is the head, not 0.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sub = n.hub.subscribe([c.clone()], Start::Earliest).await.unwrap();
    assert_eq!(sub.cursor().offset(&c), Some(5));
    let joined = n
        .hub
        .empty_subscription()
        .add([c.clone()], Start::Cursor(sub.cursor()))
        .await
        .unwrap();
    assert!(joined.recovered(), "the head cursor lost nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_one_order_and_resume_anywhere() {
    let redis = redis_url();
    let config = RedisConfig::new(redis.as_str()).prefix(prefix("nodes"));
    let (a, b, c) = (
        node(config.clone()).await,
        node(config.clone()).await,
        node(config).await,
    );
    let room = ch("room");
    let mut on_a = a.hub.subscribe([room.clone()], Start::Live).await.unwrap();
    let mut on_b = b.hub.subscribe([room.clone()], Start::Live).await.unwrap();

    let mut publishers = Vec::new();
    for (name, hub) in [("a", &a.hub), ("b", &b.hub), ("c", &c.hub)] {
        let hub = hub.clone();
        let room = room.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..30 {
                hub.publish(NewEvent::new(room.clone(), text(format!("{name}{i}"))))
                    .await
                    .unwrap();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    let mut cursor_after_40 = None;
    for i in 1..=90u64 {
        let ea = next_event(&mut on_a).await;
        let eb = next_event(&mut on_b).await;
        assert_eq!(ea.offset(), i, "offsets are contiguous");
        assert_eq!(ea.position(), eb.position());
        seen_a.push(ea.payload().clone());
        seen_b.push(eb.payload().clone());
        if i == 40 {
            cursor_after_40 = Some(on_a.cursor());
        }
    }
    assert_eq!(seen_a, seen_b, "every node sees one identical order");
    // Each publisher's own events keep their order.
    for name in ["a", "b", "c"] {
        let mine: Vec<String> = seen_a
            .iter()
            .map(|p| p.to_json_string().into_owned())
            .filter(|p| p.starts_with(name))
            .collect();
        let expected: Vec<String> = (0..30).map(|i| format!("{name}{i}")).collect();
        assert_eq!(mine, expected);
    }

    // A client that was on node A resumes on node C from its cursor: nothing lost or repeated.
    let cursor = cursor_after_40.unwrap();
    let mut on_c = c.hub.empty_subscription();
    let joined = on_c
        .add([room.clone()], Start::Cursor(cursor))
        .await
        .unwrap();
    assert!(joined.recovered());
    for i in 41..=90u64 {
        let e = next_event(&mut on_c).await;
        assert_eq!(e.offset(), i);
        assert_eq!(e.payload(), &seen_a[(i - 1) as usize]);
    }
    b.hub
        .publish(NewEvent::new(room.clone(), text("live")))
        .await
        .unwrap();
    assert_eq!(next_event(&mut on_c).await.offset(), 91);
    assert_eq!(next_event(&mut on_a).await.offset(), 91);
}

#[tokio::test]
async fn lost_history_starts_a_new_epoch() {
    let redis = redis_url();
    let pre = prefix("lost");
    let config = RedisConfig::new(redis.as_str()).prefix(pre.clone());
    let (a, b) = (node(config.clone()).await, node(config).await);
    let c = ch("c");
    let mut live = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let first = b
        .hub
        .publish(NewEvent::new(c.clone(), text("1")))
        .await
        .unwrap();
    b.hub
        .publish(NewEvent::new(c.clone(), text("2")))
        .await
        .unwrap();
    assert_eq!(next_event(&mut live).await.offset(), 1);
    assert_eq!(next_event(&mut live).await.offset(), 2);
    let cursor = live.cursor();

    // As if Redis had been flushed: the epoch key is gone.
    assert!(redis_cmd(&redis, &["DEL", &format!("{pre}:epoch")]).starts_with(":1"));
    let p = b
        .hub
        .publish(NewEvent::new(c.clone(), text("new")))
        .await
        .unwrap();
    assert_ne!(p.event.epoch(), first.event.epoch());
    assert_eq!(p.event.offset(), 1, "a new epoch starts at offset 1");

    // The live subscriber is told about the hole, then continues in the new epoch.
    match next(&mut live).await {
        Delivery::Resync { channels } => assert_eq!(channels, vec![c.clone()]),
        other => panic!("expected a resync, got {other:?}"),
    }
    let e = next_event(&mut live).await;
    assert_eq!((e.epoch(), e.offset()), (p.event.epoch(), 1));
    // A client resuming with a cursor of the old epoch is not recovered.
    let mut resumed = b.hub.empty_subscription();
    let joined = resumed
        .add([c.clone()], Start::Cursor(cursor))
        .await
        .unwrap();
    assert!(!joined.recovered());
}

#[tokio::test]
async fn reconnect_replays_what_was_missed() {
    // Our own Redis: killing pub/sub connections would disturb other tests on a shared one.
    let redis = RedisServer::start();
    let pre = prefix("replay");
    let a = node(
        RedisConfig::new(redis.url())
            .prefix(pre.clone())
            .reconnect(Duration::from_millis(800), Duration::from_secs(2)),
    )
    .await;
    let b = node(RedisConfig::new(redis.url()).prefix(pre)).await;
    let c = ch("c");
    let mut sub = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    for i in 1..=3 {
        b.hub
            .publish(NewEvent::new(c.clone(), text(format!("{i}"))))
            .await
            .unwrap();
    }
    for i in 1..=3 {
        assert_eq!(next_event(&mut sub).await.offset(), i);
    }
    // Cut every pub/sub connection; node A waits at least 400 ms before reconnecting.
    let killed = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(!killed.starts_with(":0"), "{killed}");
    // Node B's pub/sub connection, which listens for signals, was cut too: its publishes
    // fail until it is back, within its own shorter backoff. Retried with an id, each is
    // stored once.
    for i in 4..=6 {
        let mut event = NewEvent::new(c.clone(), text(format!("{i}")));
        event.idempotency_key = Some(MessageId::new(&format!("m-{i}")).unwrap());
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(e) = b.hub.publish(event.clone()).await {
            assert!(tokio::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Node A reconnects by itself and its subscriber gets exactly what it missed, then live.
    assert!(a.backplane.wait_until_up(WAIT).await);
    for i in 4..=6 {
        let e = next_event(&mut sub).await;
        assert_eq!((e.offset(), e.payload()), (i, &text(format!("{i}"))));
    }
    b.hub
        .publish(NewEvent::new(c.clone(), text("7")))
        .await
        .unwrap();
    assert_eq!(next_event(&mut sub).await.offset(), 7);
    assert!(sub.try_next().is_none(), "nothing repeated");
}

#[tokio::test]
async fn redis_outage_fails_fast_and_recovers() {
    let mut redis = RedisServer::start();
    let config = RedisConfig::new(redis.url())
        .prefix(prefix("outage"))
        .reconnect(Duration::from_millis(50), Duration::from_millis(500));
    let a = node(config).await;
    let c = ch("c");
    let mut sub = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let before = a
        .hub
        .publish(NewEvent::new(c.clone(), text("1")))
        .await
        .unwrap();
    assert_eq!(next_event(&mut sub).await.offset(), 1);
    let cursor = sub.cursor();

    redis.stop();
    wait_for("degraded health", || a.hub.health() != Health::Up).await;
    let err = a
        .hub
        .publish(NewEvent::new(c.clone(), text("lost")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable");
    // New subscriptions cannot start, existing ones stay.
    assert_eq!(
        a.hub
            .subscribe([ch("other")], Start::Live)
            .await
            .unwrap_err()
            .code(),
        "unavailable"
    );
    assert!(sub.try_next().is_none());

    // Redis comes back empty (no persistence): the node reconnects by itself, a new epoch
    // starts, and the subscriber is told it lost continuity rather than seeing a silent gap.
    redis.resume();
    assert!(a.backplane.wait_until_up(WAIT).await);
    let after = a
        .hub
        .publish(NewEvent::new(c.clone(), text("2")))
        .await
        .unwrap();
    assert_ne!(after.event.epoch(), before.event.epoch());
    assert!(matches!(next(&mut sub).await, Delivery::Resync { .. }));
    let e = next_event(&mut sub).await;
    assert_eq!((e.epoch(), e.offset()), (after.event.epoch(), 1));
    let mut resumed = a.hub.empty_subscription();
    assert!(!resumed
        .add([c], Start::Cursor(cursor))
        .await
        .unwrap()
        .recovered());
}

#[tokio::test]
async fn outage_with_persistence_resumes_exactly() {
    let mut redis = RedisServer::start_persistent();
    let pre = prefix("persist");
    let config = RedisConfig::new(redis.url())
        .prefix(pre)
        .reconnect(Duration::from_millis(50), Duration::from_millis(500));
    let (a, b) = (node(config.clone()).await, node(config).await);
    let c = ch("c");
    let mut sub = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    for i in 1..=3 {
        b.hub
            .publish(NewEvent::new(c.clone(), text(format!("{i}"))))
            .await
            .unwrap();
        assert_eq!(next_event(&mut sub).await.offset(), i);
    }
    let cursor_at_2 = {
        let mut c2 = sub.cursor();
        c2.set(c.clone(), 2);
        c2
    };
    redis.stop();
    wait_for("degraded health", || a.hub.health() != Health::Up).await;
    redis.resume();
    assert!(a.backplane.wait_until_up(WAIT).await);
    assert!(b.backplane.wait_until_up(WAIT).await);
    b.hub
        .publish(NewEvent::new(c.clone(), text("4")))
        .await
        .unwrap();
    // Same epoch: the subscriber just continues.
    let e = next_event(&mut sub).await;
    assert_eq!(e.offset(), 4);
    let mut resumed = b.hub.empty_subscription();
    assert!(resumed
        .add([c], Start::Cursor(cursor_at_2))
        .await
        .unwrap()
        .recovered());
    assert_eq!(next_event(&mut resumed).await.offset(), 3);
    assert_eq!(next_event(&mut resumed).await.offset(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_unwatch_races_end_subscribed() {
    let redis = redis_url();
    let config = RedisConfig::new(redis.as_str()).prefix(prefix("races"));
    let (a, b) = (node(config.clone()).await, node(config).await);
    let c = ch("c");
    for round in 0..20 {
        // Subscriptions come and go concurrently on node A...
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let hub = a.hub.clone();
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let sub = hub.subscribe([c], Start::Live).await.unwrap();
                tokio::task::yield_now().await;
                drop(sub);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // ...and whoever subscribes last still gets live events.
        let mut sub = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
        let p = b
            .hub
            .publish(NewEvent::new(c.clone(), text(format!("{round}"))))
            .await
            .unwrap();
        assert_eq!(next_event(&mut sub).await.offset(), p.event.offset());
    }
    assert_eq!(
        a.hub.stats().channels,
        0,
        "every subscription released its channel"
    );
}

#[tokio::test]
async fn bad_settings_are_refused_and_an_absent_redis_is_not_fatal() {
    let err = RedisBackplane::connect(RedisConfig::new("http://nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid Redis URL"), "{err}");
    let err = RedisBackplane::connect(RedisConfig::new("redis://127.0.0.1").prefix("a b"))
        .await
        .unwrap_err();
    assert!(matches!(err, rt_backplane::Error::InvalidPrefix(_)));

    // Nothing listens on this port: the backplane starts degraded and publishes fail at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bp = RedisBackplane::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}")).timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(matches!(bp.health(), Health::Degraded(_)));
    let err = bp
        .publish(NewEvent::new(ch("c"), text("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable");
}

/// How many connections Redis has subscribed to `topic`.
fn subscribers(redis: &str, topic: &str) -> u64 {
    let reply = redis_cmd(redis, &["PUBSUB", "NUMSUB", topic]);
    let count = reply.lines().last().unwrap();
    count.trim_start_matches(':').parse().unwrap()
}

#[tokio::test]
async fn one_redis_subscription_per_node_and_channel() {
    let redis = redis_url();
    let pre = prefix("fanout");
    let config = RedisConfig::new(redis.as_str()).prefix(pre.clone());
    let (a, b) = (node(config.clone()).await, node(config).await);
    let topic = format!("{pre}:c:room");
    assert_eq!(subscribers(&redis, &topic), 0, "no subscriber, no cost");

    let mut on_a = Vec::new();
    for _ in 0..5 {
        on_a.push(a.hub.subscribe([ch("room")], Start::Live).await.unwrap());
    }
    assert_eq!(
        subscribers(&redis, &topic),
        1,
        "five local subscribers, one subscription"
    );
    let mut on_b = b.hub.subscribe([ch("room")], Start::Live).await.unwrap();
    assert_eq!(subscribers(&redis, &topic), 2);

    let p = b
        .hub
        .publish(NewEvent::new(ch("room"), text("x")))
        .await
        .unwrap();
    for sub in on_a.iter_mut().chain([&mut on_b]) {
        assert_eq!(next_event(sub).await.offset(), p.event.offset());
    }
    drop(on_a);
    wait_for("node A to unsubscribe", || subscribers(&redis, &topic) == 1).await;
    drop(on_b);
    wait_for("node B to unsubscribe", || subscribers(&redis, &topic) == 0).await;
}

#[tokio::test]
async fn password_in_the_url() {
    let redis = RedisServer::start();
    assert!(redis
        .cmd(&["CONFIG", "SET", "requirepass", "s3cret"])
        .starts_with("+OK"));
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let good = format!("redis://:s3cret@127.0.0.1:{port}");
    let n = node(RedisConfig::new(good).prefix(prefix("auth"))).await;
    let p = n
        .hub
        .publish(NewEvent::new(ch("c"), text("x")))
        .await
        .unwrap();
    assert_eq!(p.event.offset(), 1);

    let wrong = RedisBackplane::connect(
        RedisConfig::new(format!("redis://:nope@127.0.0.1:{port}"))
            .timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    match wrong.health() {
        Health::Degraded(reason) => assert!(!reason.contains("nope"), "{reason}"),
        Health::Up => panic!("a wrong password must not connect"),
    }
    assert!(!format!("{wrong:?}").contains("nope"));
}

#[tokio::test]
async fn join_answers_as_head_and_read_do() {
    let redis = redis_url();
    let n = node(
        RedisConfig::new(redis.as_str())
            .prefix(prefix("join"))
            .history(3, Duration::from_secs(60)),
    )
    .await;
    let bp = &n.backplane;
    let (a, b) = (ch("a"), ch("b"));
    for i in 1..=5 {
        n.hub
            .publish(NewEvent::new(a.clone(), text(format!("{i}"))))
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
    let joined = bp.join(&asked, 2).await.unwrap();
    assert_eq!(joined.len(), asked.len());
    for ((channel, from), answer) in asked.iter().zip(&joined) {
        let (epoch, head) = bp.head(channel).await.unwrap();
        assert_eq!((answer.epoch, answer.head), (epoch, head), "{from:?}");
        if let Some(page) = &answer.page {
            let read = bp.read(channel, answer.after, 2).await.unwrap();
            assert_eq!((read.epoch, &read.since), (epoch, page), "{from:?}");
        }
    }
    let page = |h: &ChannelHead| offsets(h.page.as_ref().unwrap());
    assert_eq!((joined[0].after, &joined[0].page), (5, &None));
    // Offsets 3 to 5 are retained: earliest reads from 3.
    assert_eq!(joined[1].after, 2);
    assert_eq!(page(&joined[1]), (vec![3, 4], true));
    assert_eq!(joined[2].page, Some(Since::Gap { head: 5, oldest: 3 }));
    assert_eq!(page(&joined[3]), (vec![4, 5], false));
    assert_eq!(page(&joined[4]), (vec![], false));
    assert_eq!(joined[5].page, Some(Since::Gap { head: 5, oldest: 3 }));
    assert_eq!((joined[6].head, &joined[6].page), (0, &None));
    assert_eq!(page(&joined[7]), (vec![], false));
    assert_eq!(page(&joined[8]), (vec![], false));
    assert!(bp.join(&[], 2).await.unwrap().is_empty());
}

/// Publishes "1" to "n" on `channel`; returns their epoch.
async fn publish_numbered(hub: &Hub, channel: &Channel, n: u64) -> rt_core::Epoch {
    let mut epoch = None;
    for i in 1..=n {
        let p = hub
            .publish(NewEvent::new(channel.clone(), text(i.to_string())))
            .await
            .unwrap();
        epoch = Some(p.event.epoch());
    }
    epoch.unwrap()
}

/// Calls per command since the server started (`INFO commandstats`).
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    redis
        .cmd(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands that only the script runs: Redis counts them in `commandstats` too, but they cost
/// no round trip.
const RUN_BY_THE_SCRIPT: &[&str] = &[
    "get", "set", "time", "hget", "hincrby", "llen", "lindex", "lrange", "ltrim", "rpush", "xadd",
    "xrange", "xtrim", "pexpire", "publish",
];

/// The commands clients sent between two snapshots, by name.
fn sent(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| *name != "info" && !RUN_BY_THE_SCRIPT.contains(&name.as_str()))
        .map(|(name, calls)| (name.clone(), calls - before.get(name).unwrap_or(&0)))
        .filter(|(_, calls)| *calls > 0)
        .collect()
}

#[tokio::test]
async fn resuming_a_hundred_channels_costs_a_constant_number_of_round_trips() {
    // A Redis of its own: commandstats counts every client's commands.
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url()).prefix(prefix("roundtrips"));
    let (a, b) = (node(config.clone()).await, node(config).await);
    let channels: Vec<Channel> = (0..100).map(|i| ch(&format!("c{i}"))).collect();
    let mut epoch = None;
    for c in &channels {
        epoch = Some(publish_numbered(&a.hub, c, 3).await);
    }
    let mut cursor = Cursor::new(epoch.unwrap());
    for c in &channels {
        cursor.set(c.clone(), 1);
    }

    let before = command_calls(&redis);
    let mut sub = b
        .hub
        .subscribe(channels.clone(), Start::Cursor(cursor))
        .await
        .unwrap();
    let sent = sent(&before, &command_calls(&redis));
    // One SUBSCRIBE for the 100 watches and one script call for heads and first pages; a
    // ping of the link's timer may fall in between. Per channel, it was watch, head and read.
    assert_eq!(sent.get("evalsha"), Some(&1), "{sent:?}");
    assert_eq!(sent.get("subscribe"), Some(&1), "{sent:?}");
    assert!(sent.values().sum::<u64>() <= 3, "{sent:?}");

    // It resumed exactly: offsets 2 and 3 of every channel, ready at once, then live.
    let mut seen = HashSet::new();
    for _ in 0..channels.len() * 2 {
        match sub.try_next() {
            Some(Delivery::Event(e)) => assert!(seen.insert((e.channel().clone(), e.offset()))),
            other => panic!("expected a replayed event ready at once, got {other:?}"),
        }
    }
    for c in &channels {
        assert!(seen.contains(&(c.clone(), 2)) && seen.contains(&(c.clone(), 3)));
    }
    let p = a
        .hub
        .publish(NewEvent::new(channels[42].clone(), text("live")))
        .await
        .unwrap();
    assert_eq!(next_event(&mut sub).await.offset(), p.event.offset());
    assert_eq!(p.event.offset(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_from_one_cursor_shares_its_history_reads() {
    // A Redis of its own: commandstats counts every client's commands.
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url()).prefix(prefix("storm"));
    let (a, b) = (node(config.clone()).await, node(config).await);
    let c = ch("storm");
    let mut cursor = Cursor::new(publish_numbered(&a.hub, &c, 5).await);
    cursor.set(c.clone(), 2);

    // Every client of a node that went down comes back to this one with the same cursor.
    const CLIENTS: usize = 1000;
    let before = command_calls(&redis);
    let subs = futures_util::future::join_all(
        (0..CLIENTS).map(|_| b.hub.subscribe([c.clone()], Start::Cursor(cursor.clone()))),
    )
    .await;
    let after = command_calls(&redis);
    let reads = sent(&before, &after).get("evalsha").copied().unwrap_or(0);
    let all: u64 = after
        .iter()
        .filter(|(name, _)| *name != "info")
        .map(|(name, calls)| calls - before.get(name).unwrap_or(&0))
        .sum();
    eprintln!("{CLIENTS} resumes: {reads} script calls, {all} Redis commands in all");
    // One read per client was the cost without sharing.
    assert!(
        reads * 20 <= CLIENTS as u64,
        "{reads} script calls for {CLIENTS} resumes"
    );

    // Each resumed exactly: offsets 3 to 5, ready at once, then live.
    let mut subs: Vec<Subscription> = subs.into_iter().map(Result::unwrap).collect();
    for sub in &mut subs {
        for offset in 3..=5 {
            match sub.try_next() {
                Some(Delivery::Event(e)) => assert_eq!(e.offset(), offset),
                other => panic!("expected offset {offset} ready at once, got {other:?}"),
            }
        }
    }
    a.hub
        .publish(NewEvent::new(c.clone(), text("6")))
        .await
        .unwrap();
    for sub in &mut subs {
        assert_eq!(next_event(sub).await.offset(), 6);
    }
}

#[tokio::test]
async fn signals_reach_every_node_including_the_sender() {
    let redis = redis_url();
    let config = RedisConfig::new(redis.as_str()).prefix(prefix("signals"));
    let (a, b) = (
        RedisBackplane::connect(config.clone()).await.unwrap(),
        RedisBackplane::connect(config).await.unwrap(),
    );
    assert!(a.wait_until_up(WAIT).await && b.wait_until_up(WAIT).await);
    rt_tests::signals_reach_every_node(&a, &b, WAIT).await;
}
