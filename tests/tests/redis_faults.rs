//! Redis goes away under two real `rt-server` nodes while a publisher is running: publishes
//! fail with `503` (never reported as published), health degrades, subscribers stay
//! connected; Redis comes back empty and the nodes recover by themselves, telling subscribers
//! and resuming clients that continuity was lost (`recovered: false`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{enc, nodes, open_sse, poll, publish, wait_health, ws_recv, ws_subscribe};
use futures_util::SinkExt;
use http::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Waits until `check` holds on the publisher's record.
async fn wait_record(
    record: &Mutex<Vec<(StatusCode, Value)>>,
    what: &str,
    check: impl Fn(&[(StatusCode, Value)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check(&record.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_then_nodes_recover_and_clients_learn_of_the_gap() {
    // Our own Redis, which this test stops and starts again (without persistence).
    let mut redis = rt_tests::RedisServer::start();
    let n = Arc::new(nodes(2, &redis.url(), "faults").await);
    let (a, b) = (&n[0], &n[1]);
    let (mut ws, _) = ws_subscribe(a, &["live"], None).await;
    let mut sse = open_sse(b, "channel=live", None).await;
    assert_eq!(sse.event().await.event.unwrap(), "rt.open");

    // A steady publish stream through node B, recording every answer.
    let record: Arc<Mutex<Vec<(StatusCode, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (n, record, stop) = (n.clone(), record.clone(), stop.clone());
        async move {
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = publish(&n[1], "live", &format!("m{i}")).await;
                record.lock().unwrap().push(answer);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let ok = |r: &[(StatusCode, Value)]| r.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    wait_record(&record, "publishes before the outage", |r| ok(r) >= 10).await;
    let cursor_before = a_cursor(&n[0]).await;

    redis.stop();
    let failures =
        |r: &[(StatusCode, Value)]| r.iter().filter(|(s, _)| *s != StatusCode::OK).count();
    wait_record(&record, "failed publishes", |r| failures(r) >= 5).await;
    wait_health(a, "degraded").await;
    wait_health(b, "degraded").await;
    let (status, err) = publish(a, "live", "while down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("Redis"),
        "{err}"
    );
    // Subscribers are not dropped: the WebSocket still answers.
    // (Events already on their way are kept for the checks below.)
    let mut early = std::collections::VecDeque::new();
    ws.send(Message::text(json!({"type":"ping","id":7}).to_string()))
        .await
        .unwrap();
    loop {
        let m = ws_recv(&mut ws).await;
        if m["type"] == "pong" {
            break;
        }
        early.push_back(m);
    }

    // Redis is back (empty): the nodes reconnect by themselves and publishes succeed again.
    redis.resume();
    wait_health(a, "ok").await;
    wait_health(b, "ok").await;
    let before_recovery = record.lock().unwrap().len();
    wait_record(&record, "publishes after recovery", |r| {
        r[before_recovery..]
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .count()
            >= 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();

    // Every answer was either stored (200, contiguous offsets) or a clear 503: first a run of
    // successes in the old epoch, then failures, then successes in a new epoch from offset 1.
    let record = record.lock().unwrap().clone();
    let mut phases: Vec<Vec<&Value>> = vec![Vec::new(), Vec::new()];
    let mut phase = 0;
    let mut failed = 0;
    for (status, answer) in &record {
        match *status {
            StatusCode::OK => {
                if failed > 0 {
                    phase = 1;
                }
                phases[phase].push(answer);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(phase, 0, "a failure after recovery: {answer}");
                assert_eq!(answer["error"]["code"], "unavailable");
                failed += 1;
            }
            other => panic!("unexpected answer {other}: {answer}"),
        }
    }
    let (old, new) = (&phases[0], &phases[1]);
    assert!(old.len() >= 10 && new.len() >= 5 && failed >= 5);
    for (answers, label) in [(old, "old"), (new, "new")] {
        for (i, ack) in answers.iter().enumerate() {
            assert_eq!(
                ack["offset"],
                i as u64 + 1,
                "{label} epoch offsets are contiguous"
            );
            assert_eq!(ack["epoch"], answers[0]["epoch"]);
        }
    }
    assert_ne!(
        old[0]["epoch"], new[0]["epoch"],
        "lost history must start a new epoch"
    );

    // The WebSocket subscriber on node A got every stored event of the old epoch, then a
    // resync, then the new epoch's events: no silent gap.
    let mut next = async || match early.pop_front() {
        Some(m) => m,
        None => ws_recv(&mut ws).await,
    };
    for ack in old.iter() {
        let e = next().await;
        assert_eq!(
            (&e["type"], &e["offset"], &e["epoch"]),
            (&json!("event"), &ack["offset"], &ack["epoch"]),
            "{e}"
        );
    }
    let resync = next().await;
    assert_eq!(resync["type"], "resync", "{resync}");
    assert_eq!(resync["channels"], json!(["live"]));
    for ack in new.iter() {
        let e = next().await;
        assert_eq!(
            (&e["offset"], &e["epoch"]),
            (&ack["offset"], &ack["epoch"]),
            "{e}"
        );
    }
    // Same on the SSE subscriber of node B.
    for _ in old.iter() {
        let block = sse.event().await;
        assert_eq!(block.event, None, "{block:?}");
    }
    assert_eq!(sse.event().await.event.unwrap(), "rt.resync");
    for ack in new.iter() {
        let block = sse.event().await;
        assert_eq!(
            cluster::position(block.id.as_deref().unwrap(), "live"),
            (
                ack["epoch"].as_str().unwrap().to_owned(),
                ack["offset"].as_u64().unwrap()
            )
        );
    }

    // A client resuming with a cursor from before the outage learns it was not recovered...
    let stale = poll(
        b,
        &format!("channel=live&timeout=0&cursor={}", enc(&cursor_before)),
    )
    .await;
    assert_eq!(stale["recovered"], false, "{stale}");
    assert_eq!(stale["resynced"], json!(["live"]));
    // ...while a cursor of the new epoch resumes exactly, on either node.
    let fresh = format!("{},live=1", new[0]["epoch"].as_str().unwrap());
    let resumed = poll(a, &format!("channel=live&timeout=0&cursor={}", enc(&fresh))).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["events"].as_array().unwrap().len(), new.len() - 1);
}

/// A cursor of node A at the current head, from a short poll.
async fn a_cursor(a: &rt_tests::Server) -> String {
    let answer = poll(a, "channel=live&timeout=0").await;
    answer["cursor"].as_str().unwrap().to_owned()
}
