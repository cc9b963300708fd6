//! A real NATS with JetStream for tests, the one implementation for the workspace (rt-tests
//! and rt-backplane-nats' tests): `NATS_URL`, the machine's own on 4222, or a
//! `nats-server -js` started here. `nats-server` is a system package that `cargo xtask test`
//! installs; when it is needed and missing, the test fails saying so (tests never skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::service::{Owned, Service};

/// NATS: a server greets with `INFO`; its stores are under `target/rt-tests-nats`.
static NATS: Service = Service {
    name: "NATS",
    program: "nats-server",
    env: "NATS_URL",
    scheme: "nats",
    default_port: 4222,
    dir: "rt-tests-nats",
    hello: b"",
    reply: b"INFO",
    awaited: "answer",
    start_shared: |nats, port, dir| {
        // Not killed when this process ends: the next test processes reuse it.
        std::mem::forget(nats.spawn(&mut command(port, &dir.join("shared-store"))));
    },
    url: OnceLock::new(),
};

/// The NATS URL tests share: `NATS_URL` if set, else the machine's NATS on 4222 if it
/// answers, else a `nats-server -js` of this target directory, started by the first test
/// process that needs it and reused by the next ones while it answers. Never skips. Tests
/// sharing it keep apart by prefix ([`crate::unique`], with `_` for `-`).
pub fn nats_url() -> String {
    NATS.url()
}

/// `nats-server -js` on `port` with its store in `store`.
fn command(port: u16, store: &Path) -> Command {
    let mut cmd = Command::new(NATS.binary());
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store);
    cmd
}

/// A `nats-server -js` owned by a test, which it can stop and start again on the same port
/// with the same store (so JetStream data survives), or with its store wiped; optionally with
/// a configuration file (authorization, TLS). Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    server: Owned,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a fresh `nats-server -js` on a free port and waits until it answers.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None)
    }

    /// Starts a fresh `nats-server -js -c <file>` whose configuration file holds `config`
    /// (e.g. `authorization { token: "t" }`, or a `tls { ... }` block), on a free port.
    pub fn start_with_config(config: &str) -> NatsServer {
        NatsServer::start_with(Some(config))
    }

    fn start_with(config: Option<&str>) -> NatsServer {
        let server = Owned::new(&NATS);
        let config = config.map(|text| {
            let file = server.dir.join("nats.conf");
            std::fs::write(&file, text).expect("write the NATS configuration file");
            file
        });
        let mut server = NatsServer { server, config };
        server.resume();
        server
    }

    /// `nats://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Kills the server (like a crash).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same port with the same store.
    pub fn resume(&mut self) {
        let mut cmd = command(self.server.port, &self.store());
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        self.server.run(&mut cmd);
    }

    /// Kills the server, deletes its store (all JetStream data) and starts it again.
    pub fn wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.store());
        self.resume();
    }

    /// Its JetStream store, in its own directory.
    fn store(&self) -> PathBuf {
        self.server.dir.join("store")
    }
}
