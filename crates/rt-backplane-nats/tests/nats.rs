//! The NATS JetStream backplane against a real nats-server: positions, history, idempotency,
//! several nodes, NATS restarting and losing its data.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use rt_backplane_nats::{NatsBackplane, NatsConfig};
use rt_core::{
    Backplane, Channel, Delivery, Error, Health, Hub, HubConfig, MessageId, NewEvent, Payload,
    ReadFrom, Since, Start, Subscription,
};
use rt_tests::{nats_url, NatsServer};

const WAIT: Duration = Duration::from_secs(15);

/// A prefix (stream name) no other test uses, so tests can share one NATS.
fn prefix(test: &str) -> String {
    rt_tests::unique(test)
        .replace('-', "_")
        .chars()
        .take(32)
        .collect()
}

struct Node {
    hub: Hub,
    backplane: Arc<NatsBackplane>,
}

async fn node(config: NatsConfig) -> Node {
    let backplane = Arc::new(NatsBackplane::connect(config).await.unwrap());
    assert!(backplane.wait_until_up(WAIT).await, "could not reach NATS");
    let hub = Hub::new(backplane.clone(), HubConfig::default());
    Node { hub, backplane }
}

fn ch(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

fn text(s: impl Into<String>) -> Payload {
    Payload::text(s.into())
}

fn offsets(since: &Since) -> (Vec<u64>, bool) {
    match since {
        Since::Events { events, more } => (events.iter().map(|e| e.offset()).collect(), *more),
        Since::Gap { .. } => panic!("unexpected gap {since:?}"),
    }
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

#[tokio::test]
async fn positions_history_and_idempotency() {
    let n = node(NatsConfig::new(nats_url()).prefix(prefix("basics"))).await;
    let bp = &n.backplane;
    let c = ch("prices.eu");
    let (epoch, head) = bp.head(&c).await.unwrap();
    assert_eq!(head, 0);
    assert_eq!(
        bp.read(&c, 0, 10).await.unwrap().since,
        Since::Events {
            events: vec![],
            more: false
        }
    );
    for i in 1..=5u64 {
        let p = bp
            .publish(NewEvent::new(c.clone(), text(format!("p{i}"))))
            .await
            .unwrap();
        assert_eq!(
            (p.event.epoch(), p.event.offset(), p.duplicate),
            (epoch, i, false)
        );
    }
    assert_eq!(bp.head(&c).await.unwrap(), (epoch, 5));
    let r = bp.read(&c, 0, 2).await.unwrap();
    assert_eq!(r.epoch, epoch);
    assert_eq!(offsets(&r.since), (vec![1, 2], true));
    let r = bp.read(&c, 2, 10).await.unwrap();
    assert_eq!(offsets(&r.since), (vec![3, 4, 5], false));
    match &r.since {
        Since::Events { events, .. } => {
            assert_eq!(events[0].payload(), &text("p3"));
            assert_eq!(events[0].channel(), &c);
        }
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
    // A channel whose name differs only where `.` is escaped has its own offsets.
    let other = bp
        .publish(NewEvent::new(ch("prices:eu"), text("t")))
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
    assert_eq!(bp.health(), Health::Up);
}

#[tokio::test]
async fn history_is_bounded_by_count_and_age() {
    let n = node(
        NatsConfig::new(nats_url())
            .prefix(prefix("bounded"))
            .history(3, Duration::from_millis(600)),
    )
    .await;
    let bp = &n.backplane;
    let c = ch("c");
    for i in 1..=5 {
        bp.publish(NewEvent::new(c.clone(), text(format!("{i}"))))
            .await
            .unwrap();
    }
    let epoch = bp.head(&c).await.unwrap().0;
    assert_eq!(
        bp.read(&c, 1, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 3 }
    );
    assert_eq!(
        offsets(&bp.read(&c, 2, 10).await.unwrap().since),
        (vec![3, 4, 5], false)
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Aged out: nothing retained, but the head (and so the next offset) is kept.
    assert_eq!(
        bp.read(&c, 4, 10).await.unwrap().since,
        Since::Gap { head: 5, oldest: 6 }
    );
    assert_eq!(bp.head(&c).await.unwrap(), (epoch, 5));
    let p = bp
        .publish(NewEvent::new(c.clone(), text("6")))
        .await
        .unwrap();
    assert_eq!(p.event.offset(), 6, "offsets are never reused");
    assert_eq!(
        offsets(&bp.read(&c, 5, 10).await.unwrap().since),
        (vec![6], false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_one_order_and_resume_anywhere() {
    let config = NatsConfig::new(nats_url()).prefix(prefix("nodes"));
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
            let mut offsets = Vec::new();
            for i in 0..20 {
                let ack = hub
                    .publish(NewEvent::new(room.clone(), text(format!("{name}{i}"))))
                    .await
                    .unwrap();
                offsets.push(ack.event.offset());
            }
            offsets
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=60).collect::<Vec<u64>>(),
        "dense, each offset once"
    );
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    let mut cursor_after_40 = None;
    for i in 1..=60u64 {
        let ea = next_event(&mut on_a).await;
        let eb = next_event(&mut on_b).await;
        assert_eq!(ea.offset(), i);
        assert_eq!(eb.offset(), i);
        seen_a.push(ea.payload().clone());
        seen_b.push(eb.payload().clone());
        if i == 40 {
            cursor_after_40 = Some(on_a.cursor());
        }
    }
    assert_eq!(seen_a, seen_b, "both nodes see one order");
    // Resume on the third node from a cursor of the first: exactly 41..=60.
    let mut resumed = c.hub.empty_subscription();
    let joined = resumed
        .add([room.clone()], Start::Cursor(cursor_after_40.unwrap()))
        .await
        .unwrap();
    assert!(joined.recovered());
    for (i, expected) in (41..=60u64).zip(&seen_a[40..]) {
        let e = next_event(&mut resumed).await;
        assert_eq!((e.offset(), e.payload()), (i, expected));
    }
}

#[tokio::test]
async fn restart_loses_nothing_acknowledged_and_fails_fast_while_down() {
    let mut nats = NatsServer::start();
    let config = NatsConfig::new(nats.url())
        .prefix("restart")
        .reconnect(Duration::from_millis(50), Duration::from_millis(300));
    let a = node(config.clone()).await;
    let b = node(config).await;
    let c = ch("feed");
    let mut sub = a.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let epoch = a.backplane.head(&c).await.unwrap().0;

    // A publisher that keeps going across the restart; what it got acknowledged must arrive.
    let hub = b.hub.clone();
    let feed = c.clone();
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failed = 0;
        for i in 0..200 {
            match hub
                .publish(NewEvent::new(feed.clone(), text(format!("{i}"))))
                .await
            {
                Ok(ack) => acked.push(ack.event.offset()),
                Err(Error::Unavailable(_)) => failed += 1,
                Err(e) => panic!("{e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (acked, failed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.stop();
    let started = std::time::Instant::now();
    let down = a
        .backplane
        .publish(NewEvent::new(c.clone(), text("x")))
        .await;
    assert!(matches!(down, Err(Error::Unavailable(_))), "{down:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(a.backplane.health(), Health::Degraded(_)));
    nats.resume();
    assert!(a.backplane.wait_until_up(WAIT).await);
    let (acked, failed) = publisher.await.unwrap();
    assert!(failed > 0, "some publishes met the outage");
    assert!(!acked.is_empty());
    assert_eq!(
        a.backplane.head(&c).await.unwrap().0,
        epoch,
        "same stream, same epoch"
    );
    // Every acknowledged event arrives, in order, with no hole.
    let last = *acked.last().unwrap();
    let mut expected = 1;
    while expected <= last {
        match next(&mut sub).await {
            Delivery::Event(e) => {
                assert_eq!(e.offset(), expected);
                expected += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(a.backplane.health(), Health::Up);
}

#[tokio::test]
async fn lost_stream_starts_a_new_epoch() {
    let mut nats = NatsServer::start();
    let config = NatsConfig::new(nats.url())
        .prefix("lost")
        .reconnect(Duration::from_millis(50), Duration::from_millis(300));
    let n = node(config).await;
    let c = ch("c");
    for _ in 0..3 {
        n.backplane
            .publish(NewEvent::new(c.clone(), text("x")))
            .await
            .unwrap();
    }
    let mut sub = n.hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let before = n.backplane.head(&c).await.unwrap().0;
    nats.wipe();
    // Up again once the stream is recreated, in a new epoch.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok((epoch, head)) = n.backplane.head(&c).await {
            if epoch != before {
                assert_eq!(head, 0);
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no new epoch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = n
        .backplane
        .publish(NewEvent::new(c.clone(), text("y")))
        .await
        .unwrap();
    assert_eq!(p.event.offset(), 1);
    // The subscriber is told that continuity was lost.
    loop {
        match next(&mut sub).await {
            Delivery::Resync { .. } => break,
            Delivery::Event(e) if e.epoch() != before => panic!("new epoch without a resync"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn join_answers_every_channel_of_a_subscribe_at_once() {
    let n = node(
        NatsConfig::new(nats_url())
            .prefix(prefix("join"))
            .history(3, Duration::from_secs(300)),
    )
    .await;
    let bp = &n.backplane;
    let (a, b, c) = (ch("a"), ch("b"), ch("c"));
    for (channel, count) in [(&a, 5), (&c, 2)] {
        for i in 0..count {
            let new = NewEvent::new(channel.clone(), text(format!("{i}")));
            bp.publish(new).await.unwrap();
        }
    }
    let epoch = bp.head(&a).await.unwrap().0;
    let asked = [
        (a.clone(), ReadFrom::Earliest),
        (a.clone(), ReadFrom::After(1)),
        (a.clone(), ReadFrom::After(4)),
        (a.clone(), ReadFrom::Nothing),
        (b.clone(), ReadFrom::Earliest),
        (b.clone(), ReadFrom::After(2)),
        (c.clone(), ReadFrom::After(0)),
        (c.clone(), ReadFrom::Earliest),
    ];
    let answers = bp.join(&asked, 2).await.unwrap();
    let seen: Vec<_> = answers
        .iter()
        .map(|h| {
            assert_eq!(h.epoch, epoch);
            let page = h.page.as_ref().map(|p| match p {
                Since::Gap { head, oldest } => Err((*head, *oldest)),
                events => Ok(offsets(events)),
            });
            (h.head, h.after, page)
        })
        .collect();
    assert_eq!(
        seen,
        [
            // History keeps the last 3 of 5: it starts after 2.
            (5, 2, Some(Ok((vec![3, 4], true)))),
            (5, 1, Some(Err((5, 3)))),
            (5, 4, Some(Ok((vec![5], false)))),
            (5, 5, None),
            (0, 0, Some(Ok((vec![], false)))),
            (0, 2, Some(Err((0, 1)))),
            (2, 0, Some(Ok((vec![1, 2], false)))),
            (2, 0, Some(Ok((vec![1, 2], false)))),
        ]
    );
    // Each answer is what read would say.
    for ((channel, _), answer) in asked.iter().zip(&answers) {
        if let Some(page) = &answer.page {
            assert_eq!(
                &bp.read(channel, answer.after, 2).await.unwrap().since,
                page
            );
        }
    }
}

#[tokio::test]
async fn signals_reach_every_node_including_the_sender() {
    let config = NatsConfig::new(nats_url()).prefix(prefix("signals"));
    let (a, b) = (
        NatsBackplane::connect(config.clone()).await.unwrap(),
        NatsBackplane::connect(config).await.unwrap(),
    );
    assert!(a.wait_until_up(WAIT).await && b.wait_until_up(WAIT).await);
    rt_tests::signals_reach_every_node(&a, &b, WAIT).await;
}

/// Every member of `channel`, `limit` at a time; the pages must chain, each in id order.
async fn all_members(p: &dyn rt_core::Presence, channel: &Channel, limit: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = p.members(channel, after.as_deref(), limit).await.unwrap();
        assert!(page.members.len() <= limit);
        ids.extend(page.members.into_iter().map(|m| m.client));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), ids.last(), "the cursor is the page's last id");
                after = Some(next);
            }
            None => return ids,
        }
    }
}

/// Waits until `channel`'s counts are `(connections, subjects)`.
async fn stats_become(p: &dyn rt_core::Presence, channel: &Channel, want: (u64, u64)) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = p.stats(channel).await;
        if let Ok(s) = &stats {
            if (s.connections, s.subjects) == want {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel}: {stats:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_pages_every_size_of_channel_in_id_order_across_nodes() {
    let prefix = prefix("presence_pages");
    let config = || {
        NatsConfig::new(nats_url())
            .prefix(prefix.as_str())
            .presence_ttl(Duration::from_secs(5))
    };
    let (a, b) = (node(config()).await, node(config()).await);
    let (pa, pb) = (
        a.backplane.presence().unwrap(),
        b.backplane.presence().unwrap(),
    );
    // Ids spread over every chunk, as real (hashed) ids are.
    let id = |i: u64| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let member = |i: u64, subject: Option<String>| rt_core::Member {
        client: id(i),
        subject,
        info: None,
    };
    // Read whole (small), by sixteenths (mid) and by 256ths (big); names a key cannot hold.
    let small = ch("t:small.1@x");
    let mid = ch("t:mid");
    let big = ch("t:big");
    for i in 0..10 {
        pa.join(&small, &member(i, Some("alice".into())));
    }
    for i in 0..3000 {
        let node = if i % 2 == 0 { pa } else { pb };
        node.join(&mid, &member(i, Some(format!("u{}", i % 100))));
    }
    for i in 0..18_000 {
        let node = if i % 3 == 0 { pb } else { pa };
        node.join(&big, &member(i, None));
    }
    pa.count(&big, 12_000);
    pb.count(&big, 6_000);
    pb.count(&mid, 3_000);
    pa.count(&small, 10);
    stats_become(pb, &small, (10, 1)).await;
    stats_become(pb, &mid, (3000, 100)).await;
    stats_become(pa, &big, (18_000, 0)).await;
    for (channel, n, limit) in [(&small, 10, 3), (&mid, 3000, 1000), (&big, 18_000, 1000)] {
        let ids = all_members(pa, channel, limit).await;
        assert_eq!(ids.len(), n, "{channel}");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{channel}: not in id order"
        );
        let mut want: Vec<String> = (0..n as u64).map(id).collect();
        want.sort();
        assert_eq!(ids, want, "{channel}");
    }
    // A cursor that is no member's id still pages from where it sorts.
    let half = pb.members(&big, Some("8"), 5).await.unwrap();
    assert!(half.members.iter().all(|m| m.client.as_str() > "8"));
    assert_eq!(half.members.len(), 5);

    let pattern: rt_core::ChannelPattern = "t:*".parse().unwrap();
    let page = pb.channels(&pattern, None, 2).await.unwrap();
    let counts: Vec<(&str, u64)> = page
        .channels
        .iter()
        .map(|c| (c.channel.as_str(), c.subscribers))
        .collect();
    assert_eq!(counts, [("t:big", 18_000), ("t:mid", 3_000)]);
    let rest = pb.channels(&pattern, page.next.as_ref(), 2).await.unwrap();
    assert_eq!(rest.channels[0].channel, small);
    assert_eq!(rest.next, None);

    // Leaves are written as they happen; the channel's keys go with its last member.
    for i in 0..10 {
        pa.leave(&small, &member(i, Some("alice".into())));
    }
    for i in (0..3000).filter(|i| i % 2 == 0) {
        pa.leave(&mid, &member(i, Some(format!("u{}", i % 100))));
    }
    pa.count(&small, -10);
    stats_become(pb, &small, (0, 0)).await;
    stats_become(pb, &mid, (1500, 50)).await;
    assert_eq!(all_members(pb, &small, 10).await.len(), 0);
    assert_eq!(all_members(pb, &mid, 700).await.len(), 1500);
    let gone = pb
        .channels(&small.as_str().parse().unwrap(), None, 5)
        .await
        .unwrap();
    assert_eq!(gone.channels, []);
}
