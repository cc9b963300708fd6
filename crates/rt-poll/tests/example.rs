//! The crate's example runs and does what its docs say.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn poll_server_example_demo_runs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["run", "-q", "-p", "rt-poll", "--example", "poll_server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // With an address (argument or `ADDR`) the example keeps serving instead.
        .env_remove("ADDR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Building may wait for other cargo processes; the demo itself takes well under a second.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the example did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("long poll answer: {\"events\":[{"), "{out}");
    assert!(out.contains("\"data\":\"hello\""), "{out}");
}
