//! The crate's example runs and does what its docs say. It runs in-process (the example's
//! file is compiled into this test), so the test needs no cargo, no build and no child
//! process; the demo checks that its long poll got the published event and fails otherwise.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../examples/poll_server.rs"]
#[allow(dead_code)] // the example's `main`: the test calls its demo directly
mod poll_server;

#[tokio::test]
async fn poll_server_example_demo_runs() {
    // The demo takes well under a second; a hang is a failure, not a stuck test run.
    tokio::time::timeout(std::time::Duration::from_secs(30), poll_server::run(None))
        .await
        .expect("the example's demo did not finish within 30 s")
        .unwrap();
}
