//! docs/openapi.yaml against the real server: openapi-core (Python) validates the spec, then
//! real requests and the answers rt-server gives them (tests/python/openapi_check.py), and a
//! poll's answer with the data of a connect hook (a second server, whose `--proxy-connect`
//! backend the test serves).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use rt_tests::Server;
use serde_json::json;

#[tokio::test]
async fn the_server_api_answers_as_docs_openapi_yaml_says() {
    let root = rt_tests::workspace_root();
    let python = rt_tests::python::venv(
        "openapi",
        &root.join("tests/python/openapi-requirements.txt"),
    );
    let server = Server::start(&["--presence", "oa"]).await;
    // Two members of `oa`'s presence for the presence and channels routes to list.
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut ws = rt_tests::ws::connect(&server.ws_url("/ws"), &[]).await;
        rt_tests::ws::subscribe(&mut ws, &["oa"], None).await;
        members.push(ws);
    }
    let base = server.url("");
    let base = base.trim_end_matches('/').to_owned();
    // Everyone may use every channel, is joined to `oa:user` and is shown `{"name": "oa"}`.
    let hook = rt_tests::hook::connect_hook(|_| {
        json!({"allow": true, "subscribe": ["*"], "channels": ["oa:user"], "data": {"name": "oa"}})
    })
    .await;
    let hooked = Server::start(&["--proxy-connect", &hook]).await;
    let hooked_base = hooked.url("").trim_end_matches('/').to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(root.join("tests/python/openapi_check.py"))
            .arg(root.join("docs/openapi.yaml"))
            .arg(base)
            .arg("test-key")
            .arg(hooked_base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok presence next page: 200"), "{text}");
    assert!(
        text.contains("ok poll with the connect hook's data"),
        "{text}"
    );
    drop(members);
    assert!(text.contains("ok health: 200"), "{text}");
    assert!(
        text.contains("an answer outside the spec is refused"),
        "{text}"
    );
}
