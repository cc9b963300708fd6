//! The server API (rt-api) through the real rt-server binary: broadcast and history on one
//! node and across nodes over Redis, and bad input to every route.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use http::{Method, StatusCode};
use rt_tests::http::{get, post_json, send};
use rt_tests::Server;
use serde_json::{json, Value};

const KEY: (&str, &str) = ("x-api-key", "test-key");

async fn broadcast(server: &Server, body: &Value) -> (StatusCode, Value) {
    post_json(&server.url("/api/broadcast"), &[KEY], body).await
}

async fn history(server: &Server, query: &str) -> (StatusCode, Value) {
    let url = server.url(&format!("/api/history?{query}"));
    let (status, _, body) = send(Method::GET, &url, &[KEY], "").await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn offsets(results: &Value) -> Vec<Value> {
    let results = results["results"].as_array().unwrap();
    results.iter().map(|r| r["offset"].clone()).collect()
}

#[tokio::test]
async fn broadcast_gives_each_channel_its_own_position_and_retries_are_idempotent() {
    let server = Server::start(&[]).await;
    cluster::publish(&server, "b", "first").await;
    let body = json!({"channels":["a","b","c"],"event":"note","data":{"n":1},"id":"m-1"});
    let (status, first) = broadcast(&server, &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(offsets(&first), [json!(1), json!(2), json!(1)], "{first}");
    let channels: Vec<_> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["channel"].clone())
        .collect();
    assert_eq!(channels, [json!("a"), json!("b"), json!("c")]);

    let (_, retry) = broadcast(&server, &body).await;
    assert_eq!(offsets(&retry), offsets(&first));
    assert!(retry["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["duplicate"] == true));

    // A bad channel fails alone; the others are published.
    let (status, mixed) =
        broadcast(&server, &json!({"channels":["a","no spaces"],"data":"x"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mixed["results"][0]["offset"], 2, "{mixed}");
    assert_eq!(mixed["results"][1]["channel"], "no spaces");
    assert_eq!(mixed["results"][1]["error"]["code"], "invalid_channel");

    // What was broadcast is what history holds.
    let (_, a) = history(&server, "channel=a").await;
    let data: Vec<_> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(data, [json!("{\"n\":1}"), json!("x")], "{a}");
    assert_eq!(a["events"][0]["event"], "note");
}

#[tokio::test]
async fn history_pages_through_a_channel_and_says_when_it_cannot_continue() {
    let server = Server::start(&["--history-size", "4"]).await;
    for n in 1..=6 {
        cluster::publish(&server, "h", &format!("e{n}")).await;
    }
    // Only the last four are retained: from `earliest` they are exact.
    let (status, page) = history(&server, "channel=h&since=earliest&limit=3").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["head"], 6);
    assert_eq!(page["recovered"], true);
    assert_eq!(page["more"], true);
    let data = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(data(&page), ["e3", "e4", "e5"]);
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let (_, next) = history(&server, &format!("channel=h&since={cursor}")).await;
    assert_eq!(data(&next), ["e6"]);
    assert_eq!(
        (next["more"].clone(), next["recovered"].clone()),
        (json!(false), json!(true))
    );

    // A cursor older than what is retained: the retained events, with recovered:false.
    let epoch = cursor.split(',').next().unwrap();
    let (_, old) = history(&server, &format!("channel=h&since={epoch},h=1")).await;
    assert_eq!(old["recovered"], false, "{old}");
    assert_eq!(data(&old), ["e3", "e4", "e5", "e6"]);
    // Another epoch: the same.
    let (_, other) = history(&server, "channel=h&since=1234,h=5").await;
    assert_eq!(other["recovered"], false, "{other}");
    // A channel nobody published on: empty, at head 0.
    let (status, empty) = history(&server, "channel=quiet").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (empty["head"].clone(), empty["events"].clone()),
        (json!(0), json!([]))
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = Server::start(&[]).await;
    let too_many: Vec<String> = (0..1001).map(|n| format!("c{n}")).collect();
    let cases = [
        (json!({"channels":[],"data":"x"}), "bad_request"),
        (json!({"channels":too_many,"data":"x"}), "bad_request"),
        (json!({"channels":["a","a"],"data":"x"}), "bad_request"),
        (json!({"channel":"a","data":"x"}), "bad_request"),
        (json!({"channels":["a"]}), "bad_request"),
    ];
    for (body, code) in cases {
        let (status, v) = broadcast(&server, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
    let url = server.url("/api/broadcast");
    let (status, _, _) = send(
        Method::POST,
        &url,
        &[KEY, ("content-type", "application/json")],
        "{nope",
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for (query, status, code) in [
        ("", StatusCode::BAD_REQUEST, "bad_request"),
        ("channel=a%20b", StatusCode::BAD_REQUEST, "invalid_channel"),
        ("channel=a&limit=0", StatusCode::BAD_REQUEST, "bad_request"),
        (
            "channel=a&limit=5000",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "channel=a&limit=ten",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "channel=a&since=not-a-cursor",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
    ] {
        let (got, v) = history(&server, query).await;
        assert_eq!(got, status, "{query}: {v}");
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }

    // No key, a wrong key, a wrong method: refused on every route.
    for route in ["/api/broadcast", "/api/history?channel=a"] {
        let (status, _, body) = get(&server.url(route)).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let want = if route.contains("history") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        assert_eq!(status, want, "{route}: {v}");
    }
    let (status, v) = post_json(
        &url,
        &[("x-api-key", "wrong")],
        &json!({"channels":["a"],"data":"x"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );
}

#[tokio::test]
async fn publish_and_broadcast_on_one_node_are_history_on_the_others_over_redis() {
    let nodes = cluster::nodes(3, &rt_tests::redis_url(), "server-api").await;
    let (status, sent) = broadcast(&nodes[0], &json!({"channels":["x","y"],"data":"hello"})).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let url = nodes[2].url("/api/publish");
    let (status, published) = post_json(&url, &[KEY], &json!({"channel":"x","data":"again"})).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert_eq!(published["offset"], 2, "{published}");
    for node in &nodes[1..] {
        for (channel, data) in [("x", vec!["hello", "again"]), ("y", vec!["hello"])] {
            let (status, read) = history(node, &format!("channel={channel}&since=earliest")).await;
            assert_eq!(status, StatusCode::OK, "{read}");
            let got: Vec<&str> = read["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["data"].as_str().unwrap())
                .collect();
            assert_eq!(got, data, "{read}");
            assert_eq!(read["epoch"], sent["results"][0]["epoch"]);
        }
    }
}
