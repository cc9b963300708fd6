//! The hub through its public API: replay, live, the seam between them, lag, resync, cleanup.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use rt_core::*;

fn hub_with(retention: Retention, config: HubConfig) -> Hub {
    Hub::new(Arc::new(MemoryBackplane::new(retention)), config)
}

fn hub() -> Hub {
    hub_with(Retention::default(), HubConfig::default())
}

fn ch(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

async fn publish(hub: &Hub, channel: &Channel, text: &str) -> Arc<Event> {
    hub.publish(NewEvent::new(
        channel.clone(),
        Payload::text(text.to_owned()),
    ))
    .await
    .unwrap()
    .event
}

async fn next_event(sub: &mut Subscription) -> Arc<Event> {
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Delivery::Event(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn live_events_arrive_in_order_with_positions() {
    let hub = hub();
    let c = ch("c");
    let mut sub = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    for i in 1..=3 {
        publish(&hub, &c, &format!("m{i}")).await;
    }
    for i in 1..=3u64 {
        let e = next_event(&mut sub).await;
        assert_eq!(e.offset(), i);
        assert_eq!(e.payload(), &Payload::text(format!("m{i}")));
    }
    assert_eq!(sub.cursor().offset(&c), Some(3));
}

#[tokio::test]
async fn resume_from_cursor_replays_exactly_what_was_missed() {
    let hub = hub();
    let (a, b) = (ch("a"), ch("b"));
    let mut sub = hub
        .subscribe([a.clone(), b.clone()], Start::Live)
        .await
        .unwrap();
    publish(&hub, &a, "a1").await;
    publish(&hub, &b, "b1").await;
    next_event(&mut sub).await;
    next_event(&mut sub).await;
    let cursor = sub.cursor();
    drop(sub);

    publish(&hub, &a, "a2").await;
    publish(&hub, &b, "b2").await;
    publish(&hub, &a, "a3").await;

    let text = cursor.to_string();
    let mut sub = hub
        .subscribe([a.clone(), b.clone()], Start::parse(Some(&text)).unwrap())
        .await
        .unwrap();
    publish(&hub, &b, "b3").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = next_event(&mut sub).await;
        got.push(format!("{}{}", e.channel(), e.offset()));
    }
    got.sort();
    assert_eq!(got, ["a2", "a3", "b2", "b3"]);
    assert!(sub.try_next().is_none(), "nothing more, nothing repeated");
}

#[tokio::test]
async fn cursor_older_than_history_is_a_resync_not_a_silent_gap() {
    let hub = hub_with(
        Retention {
            max_len: 2,
            max_age: Duration::from_secs(60),
        },
        HubConfig::default(),
    );
    let c = ch("c");
    let sub = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let cursor = sub.cursor();
    drop(sub);
    for i in 0..5 {
        publish(&hub, &c, &i.to_string()).await;
    }
    let mut sub = hub.empty_subscription();
    let joined = sub.add([c.clone()], Start::Cursor(cursor)).await.unwrap();
    assert!(!joined.recovered());
    assert_eq!(joined.resynced, vec![c.clone()]);
    match sub.next().await {
        Some(Delivery::Resync { channels }) => assert_eq!(channels, vec![c.clone()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sub.cursor().offset(&c),
        Some(5),
        "continues live from the head"
    );
    publish(&hub, &c, "after").await;
    assert_eq!(next_event(&mut sub).await.offset(), 6);
}

#[tokio::test]
async fn cursor_from_another_epoch_is_not_recovered() {
    let hub = hub();
    let c = ch("c");
    publish(&hub, &c, "x").await;
    let mut foreign = Cursor::new(Epoch(12345));
    foreign.set(c.clone(), 1);
    let mut sub = hub.empty_subscription();
    let joined = sub.add([c.clone()], Start::Cursor(foreign)).await.unwrap();
    assert!(!joined.recovered());
    assert_ne!(sub.cursor().epoch(), Epoch(12345));
    assert_eq!(sub.cursor().offset(&c), Some(1));
}

#[tokio::test]
async fn earliest_starts_at_the_oldest_retained_event() {
    let hub = hub_with(
        Retention {
            max_len: 3,
            max_age: Duration::from_secs(60),
        },
        HubConfig::default(),
    );
    let c = ch("c");
    for i in 0..5 {
        publish(&hub, &c, &i.to_string()).await;
    }
    let mut sub = hub.empty_subscription();
    assert!(sub
        .add([c.clone()], Start::Earliest)
        .await
        .unwrap()
        .recovered());
    for offset in 3..=5 {
        assert_eq!(next_event(&mut sub).await.offset(), offset);
    }
}

#[tokio::test]
async fn long_replay_is_paged_and_complete() {
    let hub = hub_with(
        Retention {
            max_len: 5000,
            max_age: Duration::from_secs(60),
        },
        HubConfig {
            page_size: 7,
            ..HubConfig::default()
        },
    );
    let c = ch("c");
    for i in 0..1000 {
        publish(&hub, &c, &i.to_string()).await;
    }
    let mut sub = hub.subscribe([c.clone()], Start::Earliest).await.unwrap();
    for offset in 1..=1000 {
        assert_eq!(next_event(&mut sub).await.offset(), offset);
    }
}

/// Issue #17, part 3: a subscriber that falls more than the queue capacity behind is not
/// closed. It reads what it missed from history, on the same subscription, and rejoins the
/// live stream; publishers never wait for it.
#[tokio::test]
async fn slow_subscriber_catches_up_in_place_and_publishers_never_wait() {
    let hub = hub_with(
        Retention::default(),
        HubConfig {
            queue_capacity: 4,
            page_size: 3,
            ..HubConfig::default()
        },
    );
    let c = ch("c");
    let mut slow = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    let mut fast = hub.subscribe([c.clone()], Start::Live).await.unwrap();
    for i in 0..20 {
        // Never blocks, although `slow` reads nothing.
        tokio::time::timeout(Duration::from_secs(1), publish(&hub, &c, &i.to_string()))
            .await
            .unwrap();
        next_event(&mut fast).await;
    }
    for offset in 1..=20 {
        assert_eq!(next_event(&mut slow).await.offset(), offset);
    }
    assert_eq!(slow.try_next(), None, "nothing repeated");
    // Back on the live stream.
    publish(&hub, &c, "live").await;
    assert_eq!(next_event(&mut slow).await.offset(), 21);
    assert_eq!(slow.cursor().offset(&c), Some(21));
}

/// A subscriber that falls behind further than history reaches is resynced in place: told
/// which channel has a hole, then live from the head.
#[tokio::test]
async fn slow_subscriber_beyond_history_is_resynced_in_place() {
    let hub = hub_with(
        Retention {
            max_len: 8,
            max_age: Duration::from_secs(60),
        },
        HubConfig {
            queue_capacity: 4,
            ..HubConfig::default()
        },
    );
    let (a, b) = (ch("a"), ch("b"));
    let mut slow = hub
        .subscribe([a.clone(), b.clone()], Start::Live)
        .await
        .unwrap();
    for i in 0..20 {
        publish(&hub, &a, &i.to_string()).await;
    }
    publish(&hub, &b, "b1").await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
            Ok(Some(Delivery::Resync { channels })) => {
                assert_eq!(channels, vec![a.clone()], "only the channel with a hole");
                break;
            }
            Ok(Some(Delivery::Event(e))) => got.push((e.channel().clone(), e.offset())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        slow.cursor().offset(&a),
        Some(20),
        "continues from the head"
    );
    while let Some(Delivery::Event(e)) = slow.try_next() {
        got.push((e.channel().clone(), e.offset()));
    }
    assert_eq!(got, vec![(b.clone(), 1)], "b never lagged");
    publish(&hub, &a, "after").await;
    assert_eq!(next_event(&mut slow).await.offset(), 21);
}

#[tokio::test]
async fn idle_channels_and_subscriptions_are_cleaned_up() {
    let hub = hub();
    let (a, b) = (ch("a"), ch("b"));
    let s1 = hub
        .subscribe([a.clone(), b.clone()], Start::Live)
        .await
        .unwrap();
    let mut s2 = hub.subscribe([a.clone()], Start::Live).await.unwrap();
    assert_eq!(
        hub.stats(),
        HubStats {
            channels: 2,
            subscriptions: 2
        }
    );
    drop(s1);
    assert_eq!(
        hub.stats(),
        HubStats {
            channels: 1,
            subscriptions: 1
        }
    );
    s2.remove(&a);
    assert_eq!(hub.stats().channels, 0);
    assert_eq!(s2.next().await, None, "a subscription with no channel ends");
    drop(s2);
    assert_eq!(
        hub.stats(),
        HubStats {
            channels: 0,
            subscriptions: 0
        }
    );
}

#[tokio::test]
async fn idempotent_publish_returns_the_first_position() {
    let hub = hub();
    let c = ch("c");
    let mut e = NewEvent::new(c.clone(), Payload::text("x"));
    e.idempotency_key = Some(MessageId::new("m-1").unwrap());
    let first = hub.publish(e.clone()).await.unwrap();
    let again = hub.publish(e.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.event.position(), again.event.position());
    e.idempotency_key = Some(MessageId::new("m-2").unwrap());
    assert_eq!(hub.publish(e).await.unwrap().event.offset(), 2);
}

#[tokio::test]
async fn oversized_payloads_and_bad_requests_are_refused() {
    let hub = hub_with(
        Retention::default(),
        HubConfig {
            max_payload: 4,
            max_channels: 2,
            ..HubConfig::default()
        },
    );
    let err = hub
        .publish(NewEvent::new(ch("c"), Payload::text("12345")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
    let err = hub
        .subscribe([ch("a"), ch("b"), ch("c")], Start::Live)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "too_many_channels");
    assert_eq!(
        hub.subscribe(Vec::new(), Start::Live).await.unwrap_err(),
        Error::NoChannels
    );
    assert_eq!(hub.stats().subscriptions, 0);
    assert_eq!(hub.stats().channels, 0);
}

/// Publishes race subscribes that resume from a cursor: every subscriber must see one
/// contiguous run of offsets, from right after its cursor, with no hole and no repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_live_seam_hammer() {
    const PUBLISHES: u64 = 4000;
    let hub = hub_with(
        Retention {
            max_len: 10_000,
            max_age: Duration::from_secs(60),
        },
        HubConfig {
            page_size: 16,
            ..HubConfig::default()
        },
    );
    let c = ch("seam");
    let publisher = {
        let hub = hub.clone();
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..PUBLISHES {
                publish(&hub, &c, &i.to_string()).await;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut checkers = Vec::new();
    for k in 0..40u64 {
        let hub = hub.clone();
        let c = c.clone();
        checkers.push(tokio::spawn(async move {
            // Start at a cursor somewhere behind the moving head.
            tokio::time::sleep(Duration::from_micros(k * 150)).await;
            let (epoch, head) = {
                let probe = hub.subscribe([c.clone()], Start::Live).await.unwrap();
                let cur = probe.cursor();
                (cur.epoch(), cur.offset(&c).unwrap())
            };
            let from = head.saturating_sub(k * 7);
            let mut cursor = Cursor::new(epoch);
            cursor.set(c.clone(), from);
            let mut sub = hub
                .subscribe([c.clone()], Start::Cursor(cursor))
                .await
                .unwrap();
            let mut expect = from + 1;
            while expect <= PUBLISHES {
                match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                    Ok(Some(Delivery::Event(e))) => {
                        assert_eq!(e.offset(), expect, "subscriber {k} from {from}");
                        expect += 1;
                    }
                    other => panic!("subscriber {k}: {other:?} while expecting {expect}"),
                }
            }
        }));
    }
    publisher.await.unwrap();
    for c in checkers {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn shutdown_is_signalled_to_every_waiter() {
    let hub = hub();
    let waiter = tokio::spawn(hub.closing());
    assert!(!hub.is_closing());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished());
    hub.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(hub.is_closing());
    // Late waiters resolve at once.
    tokio::time::timeout(Duration::from_millis(10), hub.closing())
        .await
        .unwrap();
}

/// Issue #16, item 1: a subscription never grows a cursor that could not be sent back, however
/// its channels are added (at once, or a few at a time as WebSocket clients do).
#[tokio::test]
async fn channel_sets_whose_cursor_could_not_come_back_are_refused() {
    let hub = hub();
    let names: Vec<Channel> = (0..41)
        .map(|i| ch(&format!("{i:03}{}", "n".repeat(125))))
        .collect();
    let Err(err) = hub.subscribe(names.clone(), Start::Live).await else {
        panic!("41 channels of 128 bytes were accepted");
    };
    assert_eq!(err.code(), "too_many_channels");
    let mut sub = hub
        .subscribe(names[..40].to_vec(), Start::Live)
        .await
        .unwrap();
    let err = sub.add([names[40].clone()], Start::Live).await.unwrap_err();
    assert_eq!(err.code(), "too_many_channels");
    assert_eq!(sub.channels().count(), 40);
    let cursor = sub.cursor().to_string();
    assert_eq!(cursor.parse::<Cursor>().unwrap(), sub.cursor());
}

fn as_subject(subject: &str) -> Permissions {
    Permissions::new(Some(subject.to_owned()), None).allow_subscribe([ChannelPattern::any()])
}

async fn next(sub: &mut Subscription) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no delivery in time")
}

#[tokio::test]
async fn signals_reach_the_subscriptions_of_their_subject_only() {
    let hub = hub();
    let (a, b) = (ch("a"), ch("b"));
    let mut alice = hub
        .subscribe_as(&as_subject("alice"), [a.clone(), b.clone()], Start::Live)
        .await
        .unwrap();
    let mut bob = hub
        .subscribe_as(&as_subject("bob"), [a.clone()], Start::Live)
        .await
        .unwrap();
    // No channel yet, but a subject: a disconnect still reaches it.
    let mut idle = hub
        .empty_subscription()
        .with_permissions(as_subject("alice"));
    let unsubscribe = Signal::Unsubscribe {
        subject: "alice".into(),
        channel: a.clone(),
    };
    hub.signal(unsubscribe).await.unwrap();
    assert_eq!(
        next(&mut alice).await,
        Some(Delivery::Unsubscribed { channel: a.clone() })
    );
    assert_eq!(alice.channels().collect::<Vec<_>>(), [&b]);

    publish(&hub, &a, "for bob").await;
    publish(&hub, &b, "for alice").await;
    assert_eq!(next_event(&mut alice).await.channel(), &b);
    assert_eq!(next_event(&mut bob).await.channel(), &a);

    let bye = Signal::Disconnect {
        subject: "alice".into(),
        reconnect: false,
        reason: "banned".into(),
    };
    hub.signal(bye).await.unwrap();
    let disconnected = Some(Delivery::Disconnected {
        reconnect: false,
        reason: "banned".into(),
    });
    assert_eq!(next(&mut alice).await, disconnected);
    assert_eq!(next(&mut idle).await, disconnected);
    assert!(bob.try_next().is_none(), "bob heard nothing");
    // Without a subject, an empty subscription has ended.
    assert_eq!(next(&mut hub.empty_subscription()).await, None);
}

#[tokio::test]
async fn subscriptions_join_and_leave_presence_where_it_is_enabled() {
    let hub = hub();
    hub.enable_presence(ChannelPattern::parse_list("chat:*").unwrap())
        .unwrap();
    assert_eq!(
        hub.enable_presence([ChannelPattern::any()])
            .unwrap_err()
            .code(),
        "unsupported",
        "presence is enabled once"
    );
    let alice = Permissions::new(Some("alice".into()), None)
        .allow_subscribe([ChannelPattern::any()])
        .with_info(Some(serde_json::json!({"name": "Alice"})));
    let mut a = hub
        .subscribe_as(&alice, [ch("chat:1"), ch("news")], Start::Live)
        .await
        .unwrap();
    let b = hub.subscribe([ch("chat:1")], Start::Live).await.unwrap();
    let stats = hub.presence_stats(&ch("chat:1")).await.unwrap();
    assert_eq!((stats.connections, stats.subjects), (2, 1));
    let page = hub.presence(&ch("chat:1"), None, 10).await.unwrap();
    let named: Vec<_> = page
        .members
        .iter()
        .filter(|m| m.subject.is_some())
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].info, Some(serde_json::json!({"name": "Alice"})));
    assert_eq!(
        hub.presence(&ch("news"), None, 10)
            .await
            .unwrap_err()
            .code(),
        "presence_disabled"
    );
    // The registry counts every channel, presence or not.
    let all = hub
        .channels(&ChannelPattern::any(), None, 10)
        .await
        .unwrap();
    let counts: Vec<_> = all
        .channels
        .iter()
        .map(|c| (c.channel.as_str(), c.subscribers))
        .collect();
    assert_eq!(counts, [("chat:1", 2), ("news", 1)]);

    a.remove(&ch("chat:1"));
    let stats = hub.presence_stats(&ch("chat:1")).await.unwrap();
    assert_eq!((stats.connections, stats.subjects), (1, 0));
    drop((a, b));
    let all = hub
        .channels(&ChannelPattern::any(), None, 10)
        .await
        .unwrap();
    assert!(all.channels.is_empty(), "{all:?}");
    assert_eq!(
        hub.presence_stats(&ch("chat:1")).await.unwrap(),
        PresenceStats::default()
    );
}
