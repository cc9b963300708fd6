//! The multi-node scenarios, written once and run on every distributed backplane
//! (tests/tests/multinode.rs and redis_faults.rs on Redis, tests/tests/nats.rs on NATS
//! JetStream): each takes the backplane's URL, or the backplane server it stops.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use http::StatusCode;
use rt_tests::Server;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{
    enc, nodes, nodes_with, open_sse, poll, position, publish, publish_json, wait_health, ws_recv,
    ws_subscribe, T,
};

/// WebSocket on one node and SSE on another receive, in order and in one epoch, what a third
/// node publishes.
pub async fn fanout(url: &str) {
    let n = nodes(3, url, "fanout").await;
    let (a, b, c) = (&n[0], &n[1], &n[2]);

    let (mut ws, _) = ws_subscribe(a, &["room"], None).await;
    let mut sse = open_sse(b, "channel=room", None).await;
    assert_eq!(sse.event().await.event.unwrap(), "rt.open");

    let mut acks = Vec::new();
    for i in 1..=20 {
        let (status, ack) = publish(c, "room", &format!("e{i}")).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["offset"], i);
        acks.push(ack);
    }
    let epoch = acks[0]["epoch"].as_str().unwrap().to_owned();
    assert!(acks.iter().all(|a| a["epoch"] == epoch.as_str()));
    for i in 1..=20u64 {
        let e = ws_recv(&mut ws).await;
        assert_eq!(e["type"], "event", "{e}");
        assert_eq!(
            (e["offset"].as_u64(), e["epoch"].as_str()),
            (Some(i), Some(epoch.as_str()))
        );
        assert_eq!(e["data"], format!("e{i}"));
        let block = sse.event().await;
        assert_eq!(block.data.as_deref().unwrap(), format!("e{i}"), "{block:?}");
        assert_eq!(
            position(block.id.as_deref().unwrap(), "room"),
            (epoch.clone(), i)
        );
    }
}

/// A WebSocket and an SSE stream cut from one node resume on another with their cursors:
/// exactly the missed events, nothing twice; long-poll cursors travel between nodes too.
pub async fn resume(url: &str) {
    resume_with(&["--backplane", url]).await;
}

/// [`resume`] on nodes started with `backplane` (`--backplane URL` and the options it needs).
pub async fn resume_with(backplane: &[&str]) {
    let n = nodes_with(3, backplane, "resume").await;
    let (a, b, c) = (&n[0], &n[1], &n[2]);

    let mut sse = open_sse(a, "channel=news", None).await;
    assert_eq!(sse.event().await.event.unwrap(), "rt.open");
    let (mut ws, _) = ws_subscribe(b, &["news"], None).await;
    for i in 1..=5 {
        assert_eq!(publish(c, "news", &format!("n{i}")).await.0, StatusCode::OK);
    }
    let mut last_id = String::new();
    for i in 1..=5 {
        let block = sse.event().await;
        assert_eq!(block.data.as_deref().unwrap(), format!("n{i}"));
        last_id = block.id.clone().unwrap();
    }
    let mut ws_cursor = String::new();
    for i in 1..=3u64 {
        let e = ws_recv(&mut ws).await;
        assert_eq!(e["offset"], i, "{e}");
        ws_cursor = format!("{},news={i}", e["epoch"].as_str().unwrap());
    }
    // Both connections are cut (the WebSocket after reading 3 of 5); events go on meanwhile.
    drop(sse);
    drop(ws);
    for i in 6..=10 {
        assert_eq!(publish(c, "news", &format!("n{i}")).await.0, StatusCode::OK);
    }
    // The browser reconnects to node B with Last-Event-ID: exactly the missed events.
    let mut sse = open_sse(b, "channel=news", Some(&last_id)).await;
    let open = sse.event().await;
    assert_eq!(open.event.as_deref().unwrap(), "rt.open", "{open:?}");
    for i in 6..=10u64 {
        let block = sse.event().await;
        assert_eq!(block.event, None, "{block:?}");
        assert_eq!(block.data.as_deref().unwrap(), format!("n{i}"));
        assert_eq!(position(block.id.as_deref().unwrap(), "news").1, i);
    }
    // The WebSocket client resumes on node C from the last event it read.
    let (mut ws, subscribed) = ws_subscribe(c, &["news"], Some(&ws_cursor)).await;
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    for i in 4..=10u64 {
        let e = ws_recv(&mut ws).await;
        assert_eq!(
            (e["offset"].as_u64(), e["data"].as_str()),
            (Some(i), Some(format!("n{i}").as_str())),
            "{e}"
        );
    }
    assert_eq!(publish(a, "news", "n11").await.0, StatusCode::OK);
    assert_eq!(sse.event().await.data.unwrap(), "n11");
    let e = ws_recv(&mut ws).await;
    assert_eq!(
        (e["offset"].as_u64(), e["data"].as_str()),
        (Some(11), Some("n11"))
    );

    // A long-poll cursor from node A works on node B, and node B's on node C.
    let first = poll(
        a,
        &format!("channel=news&timeout=0&cursor={}", enc(&last_id)),
    )
    .await;
    assert_eq!(first["recovered"], true);
    let data: Vec<_> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(data, (6..=11).map(|i| format!("n{i}")).collect::<Vec<_>>());
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let held = tokio::spawn({
        let query = format!("channel=news&timeout=20&cursor={}", enc(&cursor));
        let url = b.url(&format!("/poll?{query}"));
        async move { rt_tests::http::get(&url).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(publish(c, "news", "n12").await.0, StatusCode::OK);
    let (status, _, body) = tokio::time::timeout(T, held).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    let second: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(second["recovered"], true);
    assert_eq!(second["events"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["events"][0]["data"], "n12");
    assert_eq!(second["events"][0]["offset"], 12);
    let third = poll(
        c,
        &format!(
            "channel=news&timeout=0&cursor={}",
            enc(second["cursor"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(
        (
            third["recovered"].clone(),
            third["events"].as_array().unwrap().len()
        ),
        (json!(true), 0)
    );
}

/// Publishers on every node at once: every node's subscribers see one order, with contiguous
/// offsets, and each publisher's events in the order it published them.
pub async fn order(url: &str) {
    let n = Arc::new(nodes(3, url, "order").await);
    let mut subscribers = Vec::new();
    for node in n.iter() {
        subscribers.push(ws_subscribe(node, &["ticks"], None).await.0);
    }
    const EACH: usize = 40;
    let mut publishers = Vec::new();
    for k in 0..3 {
        let n = n.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let (status, ack) = publish(&n[k], "ticks", &format!("{k}-{i}")).await;
                assert_eq!(status, StatusCode::OK, "{ack}");
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut orders = Vec::new();
    for ws in &mut subscribers {
        let mut order = Vec::new();
        for expected in 1..=(3 * EACH) as u64 {
            let e = ws_recv(ws).await;
            assert_eq!(e["offset"], expected, "offsets are contiguous: {e}");
            order.push(e["data"].as_str().unwrap().to_owned());
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1], "nodes A and B saw different orders");
    assert_eq!(orders[0], orders[2], "nodes A and C saw different orders");
    for k in 0..3 {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|d| d.starts_with(&format!("{k}-")))
            .cloned()
            .collect();
        assert_eq!(
            mine,
            (0..EACH).map(|i| format!("{k}-{i}")).collect::<Vec<_>>()
        );
    }
}

/// A publish retried with its message id on other nodes, one after the other and all at
/// once, is stored once: every answer names the first position, subscribers get it once.
pub async fn idempotent_retry(url: &str) {
    let n = Arc::new(nodes(3, url, "idem").await);
    let (mut ws, _) = ws_subscribe(&n[2], &["orders"], None).await;
    let body = |id: &str, data: &str| json!({"channel": "orders", "data": data, "id": id});

    let (status, first) = publish_json(&n[0], &body("m-1", "first")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (&first["offset"], &first["duplicate"]),
        (&json!(1), &json!(false))
    );
    for node in [&n[1], &n[2], &n[0]] {
        // The retry's data is ignored: the id alone identifies the publish.
        let (status, again) = publish_json(node, &body("m-1", "retried")).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(
            (&again["offset"], &again["epoch"], &again["duplicate"]),
            (&first["offset"], &first["epoch"], &json!(true)),
            "a retry on {} was not recognised",
            node.addr()
        );
    }
    // Three nodes race to publish a new id: one stores it, the others answer its position.
    let racers: Vec<_> = (0..3)
        .map(|k| {
            let n = n.clone();
            tokio::spawn(async move { publish_json(&n[k], &body("m-2", "raced")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        let (status, answer) = racer.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        answers.push(answer);
    }
    assert!(answers.iter().all(|a| a["offset"] == 2), "{answers:?}");
    let stored = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(stored, 1, "exactly one racer stores the event: {answers:?}");
    // The same id on another channel is another message.
    let (_, other) = publish_json(
        &n[1],
        &json!({"channel": "other", "data": "x", "id": "m-1"}),
    )
    .await;
    assert_eq!(
        (&other["offset"], &other["duplicate"]),
        (&json!(1), &json!(false))
    );

    assert_eq!(publish(&n[1], "orders", "after").await.0, StatusCode::OK);
    for (offset, data) in [(1, "first"), (2, "raced"), (3, "after")] {
        let e = ws_recv(&mut ws).await;
        assert_eq!(
            (e["offset"].as_u64(), e["data"].as_str()),
            (Some(offset), Some(data)),
            "each publish is delivered once: {e}"
        );
    }
}

/// A backplane server that [`outage`] stops and starts again.
pub trait Backplane {
    /// Its name, as `503` messages say it: `Redis`, `NATS`.
    const NAME: &'static str;
    /// Its URL, for `--backplane`.
    fn url(&self) -> String;
    /// Kills it, like a crash.
    fn stop(&mut self);
    /// Starts it again on the same port, with its data or without it ([`keeps_data`]).
    ///
    /// [`keeps_data`]: Self::keeps_data
    fn restart(&mut self);
    /// Whether what it stored survives [`stop`](Self::stop) and [`restart`](Self::restart).
    fn keeps_data(&self) -> bool;
}

type Record = Arc<Mutex<Vec<(StatusCode, Value)>>>;

/// Waits until `check` holds on the publisher's record.
async fn wait_record(record: &Record, what: &str, check: impl Fn(&[(StatusCode, Value)]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check(&record.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backplane goes away under two nodes while a publisher is running: publishes answer
/// `503` (never a `200` for what was not stored), health degrades, subscribers stay
/// connected; the backplane comes back and the nodes recover by themselves. With its data,
/// every acknowledged event is in history and delivered once, and old cursors resume
/// exactly; without it, a new epoch starts and subscribers and resuming clients learn of the
/// gap (`resync`, `recovered: false`).
pub async fn outage<B: Backplane>(backplane: &mut B) {
    let n = Arc::new(nodes(2, &backplane.url(), "outage").await);
    let (a, b) = (&n[0], &n[1]);
    let (mut ws, _) = ws_subscribe(a, &["live"], None).await;
    let mut sse = open_sse(b, "channel=live", None).await;
    assert_eq!(sse.event().await.event.unwrap(), "rt.open");

    // A steady publish stream through node B, recording every answer.
    let record: Record = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (n, record, stop) = (n.clone(), record.clone(), stop.clone());
        async move {
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let data = format!("m{i}");
                let (status, mut answer) = publish(&n[1], "live", &data).await;
                // What was sent, to check that history holds it where the answer said.
                answer["sent"] = json!(data);
                record.lock().unwrap().push((status, answer));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let ok = |r: &[(StatusCode, Value)]| r.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    wait_record(&record, "publishes before the outage", |r| ok(r) >= 10).await;
    let cursor_before = poll(a, "channel=live&timeout=0").await["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    backplane.stop();
    let failures =
        |r: &[(StatusCode, Value)]| r.iter().filter(|(s, _)| *s != StatusCode::OK).count();
    wait_record(&record, "failed publishes", |r| failures(r) >= 5).await;
    wait_health(a, "degraded").await;
    wait_health(b, "degraded").await;
    let (status, err) = publish(a, "live", "while down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains(B::NAME), "{err}");
    // Subscribers are not dropped: the WebSocket still answers. (Events already on their way
    // are kept for the checks below.)
    let mut early = VecDeque::new();
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

    backplane.restart();
    wait_health(a, "ok").await;
    wait_health(b, "ok").await;
    let before_recovery = record.lock().unwrap().len();
    wait_record(&record, "publishes after recovery", |r| {
        ok(&r[before_recovery..]) >= 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();

    // Every answer was either stored (200) or a clear 503: first a run of successes, then
    // failures, then successes only.
    let record = record.lock().unwrap().clone();
    let mut phases: Vec<Vec<&Value>> = vec![Vec::new(), Vec::new()];
    let mut failed = 0;
    for (status, answer) in &record {
        match *status {
            StatusCode::OK => phases[usize::from(failed > 0)].push(answer),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(phases[1].is_empty(), "a failure after recovery: {answer}");
                assert_eq!(answer["error"]["code"], "unavailable");
                failed += 1;
            }
            other => panic!("unexpected answer {other}: {answer}"),
        }
    }
    let (old, new) = (&phases[0], &phases[1]);
    assert!(old.len() >= 10 && new.len() >= 5 && failed >= 5);
    let mut next = async || match early.pop_front() {
        Some(m) => m,
        None => ws_recv(&mut ws).await,
    };

    if backplane.keeps_data() {
        // One epoch throughout; every acknowledged event is in history. (A publish that timed
        // out as the server died may be stored too, without a 200: history may hold more.)
        let epoch = old[0]["epoch"].as_str().unwrap();
        let acked: Vec<_> = old.iter().chain(new.iter()).collect();
        assert!(acked.iter().all(|a| a["epoch"] == epoch), "{acked:?}");
        let history = all_events(a, epoch).await;
        for ack in &acked {
            let stored = &history[ack["offset"].as_u64().unwrap() as usize - 1];
            assert_eq!(stored["data"], ack["sent"], "{ack} is not in history");
        }
        // Subscribers on both nodes got all of it once, in order, without a resync.
        for stored in &history {
            let e = next().await;
            assert_eq!(
                (&e["type"], &e["offset"], &e["epoch"], &e["data"]),
                (
                    &json!("event"),
                    &stored["offset"],
                    &json!(epoch),
                    &stored["data"]
                ),
                "{e}"
            );
            let block = sse.event().await;
            assert_eq!(block.data.as_deref(), stored["data"].as_str(), "{block:?}");
        }
        // A cursor from before the outage resumes exactly.
        let resumed = poll(
            b,
            &format!("channel=live&timeout=0&cursor={}", enc(&cursor_before)),
        )
        .await;
        assert_eq!(resumed["recovered"], true, "{resumed}");
        let (_, at) = position(&cursor_before, "live");
        assert_eq!(resumed["events"][0]["offset"], at + 1, "{resumed}");
        return;
    }

    // The data is gone: successes in the old epoch, then in a new epoch from offset 1.
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
            position(block.id.as_deref().unwrap(), "live"),
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

/// Every event of channel `live` in `epoch`, read by short polls from offset 0: offsets 1 to
/// the head, each once.
async fn all_events(server: &Server, epoch: &str) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut cursor = format!("{epoch},live=0");
    loop {
        let page = poll(
            server,
            &format!("channel=live&timeout=0&cursor={}", enc(&cursor)),
        )
        .await;
        assert_eq!(page["recovered"], true, "{page}");
        let got = page["events"].as_array().unwrap();
        if got.is_empty() {
            return events;
        }
        for e in got {
            assert_eq!(e["offset"], events.len() + 1, "history is contiguous: {e}");
            events.push(e.clone());
        }
        cursor = page["cursor"].as_str().unwrap().to_owned();
    }
}
