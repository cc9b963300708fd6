//! A network service the tests need (Redis, NATS), found or started the one way for all of
//! them: at `$ENV_URL`, else on its default port on 127.0.0.1, else a shared server of this
//! target directory, started once under a file lock (its port recorded under `target/`) and
//! reused by the next test processes while it answers. And the servers a test owns, which it
//! can stop and start again on the same port. A service module only describes its service
//! ([`Service`]) and how its server is run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, target_dir};

/// What the tests need to know of a service.
#[derive(Debug)]
pub(crate) struct Service {
    /// Its name in messages: `Redis`.
    pub(crate) name: &'static str,
    /// The program of its server: `redis-server`.
    pub(crate) program: &'static str,
    /// The variable naming the instance to use: `REDIS_URL`.
    pub(crate) env: &'static str,
    /// Its URL scheme: `redis`.
    pub(crate) scheme: &'static str,
    /// The machine's own instance, tried when `env` is unset: 6379.
    pub(crate) default_port: u16,
    /// Where the servers started here keep their files, under `target/`: `rt-tests-redis`.
    pub(crate) dir: &'static str,
    /// What a client sends first to see that the server answers (may be empty)...
    pub(crate) hello: &'static [u8],
    /// ...and the first bytes the server then answers.
    pub(crate) reply: &'static [u8],
    /// What the wait for it names in its panic: `answer PING`.
    pub(crate) awaited: &'static str,
    /// Starts the shared server on `port`, with its files in `dir`, so that it outlives this
    /// test process; [`Service::url`] then waits until it answers.
    pub(crate) start_shared: fn(&Service, port: u16, dir: &Path),
    /// The URL once found.
    pub(crate) url: OnceLock<String>,
}

impl Service {
    /// Whether the service answers at `127.0.0.1:port`.
    pub(crate) fn answers(&self, port: u16) -> bool {
        let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = vec![0u8; self.reply.len()];
        s.write_all(self.hello).is_ok() && s.read_exact(&mut buf).is_ok() && buf == self.reply
    }

    /// `scheme://127.0.0.1:port`.
    pub(crate) fn url_of(&self, port: u16) -> String {
        format!("{}://127.0.0.1:{port}", self.scheme)
    }

    /// The path of the server program (see `tests/system-packages.txt`).
    pub(crate) fn binary(&self) -> PathBuf {
        crate::system::binary(self.program)
    }

    /// `target/<dir>`, created.
    pub(crate) fn dir(&self) -> PathBuf {
        let dir = target_dir().join(self.dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create target/{}: {e}", self.dir));
        dir
    }

    /// Waits until the server on `port` answers; panics after 10 s.
    pub(crate) fn wait_until_up(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "{} on port {port} did not {} within 10 s",
            self.program, self.awaited
        );
    }

    /// Spawns `cmd` (the server program) with no stdin, stdout or stderr.
    pub(crate) fn spawn(&self, cmd: &mut Command) -> Child {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program))
    }

    /// The URL tests share: `$env` if set, else the machine's own on the default port if it
    /// answers, else this target directory's shared server. Never skips: a test that needs
    /// the service and cannot have it fails.
    pub(crate) fn url(&self) -> String {
        self.url
            .get_or_init(|| {
                if let Ok(url) = std::env::var(self.env) {
                    if !url.is_empty() {
                        return url;
                    }
                }
                if self.answers(self.default_port) {
                    return self.url_of(self.default_port);
                }
                self.url_of(self.shared_server())
            })
            .clone()
    }

    /// The port of this target directory's shared server, started when none answers. Test
    /// binaries run side by side, so the check and the start are under a file lock.
    fn shared_server(&self) -> u16 {
        let dir = self.dir();
        let lock = std::fs::File::create(dir.join("shared.lock"))
            .unwrap_or_else(|e| panic!("create {} lock file: {e}", self.name));
        lock.lock()
            .unwrap_or_else(|e| panic!("lock the shared {}: {e}", self.name));
        let port_file = dir.join("shared.port");
        let known = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(port) = known.filter(|&p| self.answers(p)) {
            return port;
        }
        let port = free_port();
        (self.start_shared)(self, port, &dir);
        self.wait_until_up(port);
        std::fs::write(&port_file, port.to_string())
            .unwrap_or_else(|e| panic!("write target/{}/shared.port: {e}", self.dir));
        port
    }
}

/// A server a test owns, on its own port and with its own directory under `target/<dir>`:
/// started by [`Owned::run`], killed by [`Owned::stop`] and when dropped (its directory
/// then removed).
#[derive(Debug)]
pub(crate) struct Owned {
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    child: Option<Child>,
    service: &'static Service,
}

impl Owned {
    /// A free port and a fresh, empty directory for a server of `service`; nothing runs yet.
    pub(crate) fn new(service: &'static Service) -> Owned {
        let port = free_port();
        let dir = service.dir().join(format!("{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create the {} directory: {e}", service.name));
        Owned {
            port,
            dir,
            child: None,
            service,
        }
    }

    /// `scheme://127.0.0.1:port`.
    pub(crate) fn url(&self) -> String {
        self.service.url_of(self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server with `kill`; panics when it is not
    /// running or the signal cannot be sent.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.service.name));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.service.name);
    }

    /// Kills the server (like a crash).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `cmd` (killing the server first if it runs) and waits until it answers.
    pub(crate) fn run(&mut self, cmd: &mut Command) {
        self.stop();
        self.child = Some(self.service.spawn(cmd));
        self.service.wait_until_up(self.port);
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
