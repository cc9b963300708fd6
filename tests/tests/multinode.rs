//! Several real `rt-server` processes on one real Redis: one stream per channel across nodes,
//! exact resume on any node with any transport, one order under concurrent publishers.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use cluster::{enc, nodes, open_sse, poll, position, publish, ws_recv, ws_subscribe};
use http::StatusCode;

#[tokio::test]
async fn websocket_and_sse_on_two_nodes_get_what_a_third_publishes() {
    let url = rt_tests::redis_url();
    let n = nodes(3, &url, "mn-fanout").await;
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

#[tokio::test]
async fn sse_cut_from_one_node_resumes_on_another_and_poll_cursors_travel() {
    let url = rt_tests::redis_url();
    let n = nodes(3, &url, "mn-resume").await;
    let (a, b, c) = (&n[0], &n[1], &n[2]);

    let mut sse = open_sse(a, "channel=news", None).await;
    assert_eq!(sse.event().await.event.unwrap(), "rt.open");
    for i in 1..=5 {
        assert_eq!(publish(c, "news", &format!("n{i}")).await.0, StatusCode::OK);
    }
    let mut last_id = String::new();
    for i in 1..=5 {
        let block = sse.event().await;
        assert_eq!(block.data.as_deref().unwrap(), format!("n{i}"));
        last_id = block.id.clone().unwrap();
    }
    // Node A's connection is cut; events go on meanwhile.
    drop(sse);
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
    assert_eq!(publish(a, "news", "n11").await.0, StatusCode::OK);
    assert_eq!(sse.event().await.data.unwrap(), "n11");

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
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(publish(c, "news", "n12").await.0, StatusCode::OK);
    let (status, _, body) = tokio::time::timeout(cluster::T, held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let second: serde_json::Value = serde_json::from_slice(&body).unwrap();
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
        (serde_json::json!(true), 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_every_node_give_one_order() {
    let url = rt_tests::redis_url();
    let n = std::sync::Arc::new(nodes(3, &url, "mn-order").await);
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
    // Each publisher's events keep the order it published them in.
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

#[tokio::test]
async fn nodes_reach_redis_over_tls() {
    let redis = cluster::TlsRedis::start();
    let url = format!("rediss://localhost:{}", redis.port);
    let ca = redis.ca();
    let prefix = rt_tests::unique("mn-tls");
    let args = [
        "--backplane",
        &url,
        "--redis-prefix",
        &prefix,
        "--redis-tls-ca",
        ca.to_str().unwrap(),
    ];
    let a = rt_tests::Server::start(&args).await;
    let b = rt_tests::Server::start(&args).await;
    cluster::wait_health(&a, "ok").await;
    cluster::wait_health(&b, "ok").await;
    let (mut ws, _) = ws_subscribe(&a, &["secure"], None).await;
    let (status, ack) = publish(&b, "secure", "over TLS").await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let e = ws_recv(&mut ws).await;
    assert_eq!(
        (e["data"].as_str(), e["offset"].as_u64()),
        (Some("over TLS"), Some(1))
    );

    // Without the CA, the server's certificate is not trusted: the node stays degraded.
    let untrusted =
        rt_tests::Server::start(&["--backplane", &url, "--redis-prefix", &prefix]).await;
    let health = cluster::health(&untrusted).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let (status, _) = publish(&untrusted, "secure", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
