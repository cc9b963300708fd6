//! The JavaScript client (`clients/js`): its unit tests with Node's test runner, and the
//! client in Node against the real rt-server (`tests/js/client-node.mjs`, and
//! `tests/js/client-presence.mjs` for `client.presence()`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use rt_tests::browser::run_node_script;
use rt_tests::{workspace_root, Server};

#[test]
fn client_unit_tests_pass() {
    let out = Command::new("node")
        .args(["--test", "clients/js/test/"])
        .current_dir(workspace_root())
        .output()
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Guard against a runner that found no test files.
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_in_node_against_the_server() {
    let mut server = Server::start(&[]).await;
    let out = run_node_script(
        "client-node.mjs",
        &mut server,
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert!(
        out.contains("# fail 0") && !out.contains("# pass 0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_presence_in_node_against_the_server() {
    let mut server = Server::start(&[
        "--jwt-hs256-secret",
        "presence-js-secret",
        "--presence",
        "room:*",
        "--poll-session-grace",
        "1s",
    ])
    .await;
    let out = run_node_script(
        "client-presence.mjs",
        &mut server,
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(
        out.contains("# fail 0") && out.contains("# pass 4"),
        "{out}"
    );
}
