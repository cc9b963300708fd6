//! A real Redis for tests, the one implementation for the workspace (rt-tests and
//! rt-backplane's tests): `REDIS_URL`, the machine's own, or a `redis-server` started here.
//! `redis-server` is a system package that `cargo xtask test` installs; when it is needed and
//! missing, the test fails saying so (in CI and out of it: tests never skip for want of Redis).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::free_port;
use crate::service::{Owned, Service};

/// Redis: a server answers PING; its files are under `target/rt-tests-redis`.
static REDIS: Service = Service {
    name: "Redis",
    program: "redis-server",
    env: "REDIS_URL",
    scheme: "redis",
    default_port: 6379,
    dir: "rt-tests-redis",
    hello: b"PING\r\n",
    reply: b"+PONG\r\n",
    awaited: "answer PING",
    start_shared: |redis, port, dir| {
        // Daemonized: it outlives this test process (and a crashed test) for the next ones.
        let status = Command::new(redis.binary())
            .args(server_args(port))
            .args(["--appendonly", "no", "--daemonize", "yes", "--pidfile"])
            .arg(dir.join("shared.pid"))
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .expect("start redis-server");
        assert!(status.success(), "redis-server --daemonize failed");
    },
    url: OnceLock::new(),
};

/// The Redis URL tests share: `REDIS_URL` if set, else the machine's Redis on 6379 if it
/// answers, else a `redis-server` of this target directory, started (daemonized) by the
/// first test process that needs it and reused by the next ones while it answers. Never
/// skips: a test that needs Redis and cannot have one fails. Tests sharing it keep apart
/// by key prefix ([`crate::unique`]).
pub fn redis_url() -> String {
    REDIS.url()
}

/// The arguments every Redis started here has: `port` on 127.0.0.1, no RDB snapshots.
fn server_args(port: u16) -> [String; 6] {
    [
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
    ]
}

/// A `redis-server` owned by a test, which it can stop and start again on the same port
/// (for fault tests). Without persistence ([`RedisServer::start`]) a restart loses all data;
/// with it ([`RedisServer::start_persistent`]) the data survives. Killed when dropped (its
/// working directory, with the append-only file, then removed).
#[derive(Debug)]
pub struct RedisServer {
    server: Owned,
    persistent: bool,
}

impl RedisServer {
    /// Starts a fresh `redis-server` without persistence on a free port and waits until it
    /// answers.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// Starts a fresh `redis-server` with an append-only file synced on every write, so a
    /// kill and [`RedisServer::resume`] keep the data.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    fn launch(persistent: bool) -> RedisServer {
        let mut server = RedisServer {
            server: Owned::new(&REDIS),
            persistent,
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Whether its data survives a [`stop`](Self::stop) and [`resume`](Self::resume).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Sends one command to this server; see [`redis_cmd`].
    pub fn cmd(&self, args: &[&str]) -> String {
        redis_cmd(&self.url(), args)
    }

    /// Kills the server (like a crash: no final save).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered, as when
    /// Redis stalls (a slow fork, a swapped-out host) until [`unpause`](Self::unpause).
    pub fn pause(&self) {
        self.server.signal("STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn unpause(&self) {
        self.server.signal("CONT");
    }

    /// Starts the server again on the same port (killing it first if it runs).
    pub fn resume(&mut self) {
        let mut cmd = Command::new(REDIS.binary());
        cmd.args(server_args(self.server.port))
            .arg("--dir")
            .arg(&self.server.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"]);
        self.server.run(&mut cmd);
    }
}

/// Sends one command (its arguments as given) to the Redis at `url`
/// (`redis://[user:pass@]host:port[/db]`, no AUTH sent) and returns the raw RESP reply, read
/// to its end (a long one, such as `INFO`, may come in several reads).
pub fn redis_cmd(url: &str, args: &[&str]) -> String {
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 65536];
    while resp_len(&reply).is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{addr} closed the connection mid-reply: {reply:?}");
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The length of the complete RESP value at the start of `buf`, `None` while it is partial.
fn resp_len(buf: &[u8]) -> Option<usize> {
    let line = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&buf[1..line]).ok()?;
    let after = line + 2;
    match buf[0] {
        b'$' => match head.parse::<i64>().ok()? {
            n if n < 0 => Some(after),
            n => {
                let end = after + usize::try_from(n).ok()? + 2;
                (buf.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut end = after;
            for _ in 0..head.parse::<i64>().ok()?.max(0) {
                end += resp_len(&buf[end..])?;
            }
            Some(end)
        }
        _ => Some(after),
    }
}

/// A Redis Cluster owned by a test (or by rt-bench, which starts its own to compare shards):
/// by default 3 masters and 3 replicas, each a `redis-server --cluster-enabled yes` on free
/// ports of 127.0.0.1 (its cluster bus on another free port), joined by `redis-cli --cluster
/// create ... --cluster-replicas 1`. Every process is killed when dropped.
/// `REDIS_CLUSTER_URL` (`redis-cluster://host:port[,host:port...]`) points the tests at an
/// existing cluster instead; such a cluster is not owned (nothing is killed, and tests that
/// kill nodes need an owned one). [`RedisCluster::start_tls`] starts one that speaks only
/// TLS, to clients and between its nodes.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    url: String,
    dir: std::path::PathBuf,
    /// The certificate every node serves (and presents to the others), when over TLS.
    tls: Option<ClusterTls>,
}

/// The PEM files of a TLS [`RedisCluster`]: one self-signed certificate for 127.0.0.1,
/// which is also the CA that nodes and clients trust.
#[derive(Debug)]
struct ClusterTls {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// One `redis-server` of a [`RedisCluster`].
#[derive(Debug)]
struct ClusterNode {
    port: u16,
    bus: u16,
    child: Option<std::process::Child>,
}

/// How long a node may be unreachable before its replica takes over: short, so failover
/// tests stay bounded (Redis' default is 15 s).
const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    /// `REDIS_CLUSTER_URL`'s cluster, or a fresh one of 3 masters and 3 replicas, once every
    /// node reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        match std::env::var("REDIS_CLUSTER_URL") {
            Ok(url) if !url.is_empty() => RedisCluster {
                nodes: Vec::new(),
                url,
                dir: std::path::PathBuf::new(),
                tls: None,
            },
            _ => RedisCluster::launch(3, 1),
        }
    }

    /// A fresh cluster of 3 masters and 3 replicas speaking only TLS (`--port 0`): to clients,
    /// on the cluster bus and for replication, with a fresh self-signed certificate for
    /// 127.0.0.1 ([`ca`](Self::ca)). Its [`url`](Self::url) is `rediss-cluster://...`.
    pub fn start_tls() -> RedisCluster {
        RedisCluster::spawn(3, 1, true)
    }

    /// A fresh cluster of `masters` masters sharing the 16,384 slots, each with `replicas`
    /// replicas, once every node reports `cluster_state:ok` and every replica has synced.
    /// `redis-cli --cluster create` refuses fewer than 3 masters, so a single master is given
    /// every slot with `CLUSTER ADDSLOTSRANGE 0 16383` instead (and then cannot have
    /// replicas). Panics, saying why, when a node does not start or the cluster does not form.
    pub fn launch(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::spawn(masters, replicas, false)
    }

    /// [`launch`](Self::launch), speaking only TLS when `tls`.
    fn spawn(masters: usize, replicas: usize, tls: bool) -> RedisCluster {
        assert!(
            masters >= 3 || (masters == 1 && replicas == 0),
            "a cluster has 1 master without replicas, or at least 3 masters"
        );
        let dir = REDIS
            .dir()
            .join(format!("cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let tls = tls.then(|| {
            // The nodes announce 127.0.0.1, and clients check the address against the
            // certificate.
            let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
            let cert = rcgen::generate_simple_self_signed(names).expect("a self-signed cert");
            let tls = ClusterTls {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            };
            std::fs::write(&tls.cert, cert.cert.pem()).expect("write cert.pem");
            std::fs::write(&tls.key, cert.key_pair.serialize_pem()).expect("write key.pem");
            tls
        });
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            url: String::new(),
            dir,
            tls,
        };
        for _ in 0..masters * (1 + replicas) {
            let node = ClusterNode {
                port: free_port(),
                bus: free_port(),
                child: None,
            };
            cluster.nodes.push(node);
            let i = cluster.nodes.len() - 1;
            cluster.run(i);
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        if masters == 1 {
            let reply = cluster.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
            assert!(reply.starts_with("+OK"), "CLUSTER ADDSLOTSRANGE: {reply}");
        } else {
            let log = cluster.dir.join("create.log");
            let mut create = cluster
                .cli()
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .stdout(std::fs::File::create(&log).expect("create the log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("run redis-cli --cluster create");
            // Bounded: redis-cli waits for the nodes to join without a time limit.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = create.try_wait().expect("wait for redis-cli") {
                    break Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = create.kill();
                    let _ = create.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(
                status.is_some_and(|s| s.success()),
                "redis-cli --cluster create failed or took over 60 s ({status:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let scheme = if cluster.tls.is_some() {
            "rediss-cluster"
        } else {
            "redis-cluster"
        };
        cluster.url = format!("{scheme}://{}", addrs.join(","));
        cluster.wait_ok();
        cluster.wait_replicas_synced();
        cluster
    }

    /// Starts node `i` (again), keeping its node id and view of the cluster (its
    /// `nodes.conf`), and waits until it answers PING.
    fn run(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(REDIS.binary());
        cmd.args(server_args(node.port))
            .args(["--cluster-enabled", "yes", "--cluster-port"])
            .arg(node.bus.to_string())
            .arg("--cluster-config-file")
            .arg(format!("nodes-{}.conf", node.port))
            .arg("--cluster-node-timeout")
            .arg(CLUSTER_NODE_TIMEOUT_MS.to_string())
            .args(["--appendonly", "no", "--dbfilename"])
            .arg(format!("dump-{}.rdb", node.port))
            .arg("--dir")
            .arg(&self.dir);
        let port = node.port;
        match &self.tls {
            None => {
                node.child = Some(REDIS.spawn(&mut cmd));
                REDIS.wait_until_up(port);
            }
            Some(tls) => {
                // The last `--port` wins: no plain TCP port, TLS on the node's port.
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(port.to_string())
                    .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                    .args(["--tls-auth-clients", "no"])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.cert);
                node.child = Some(REDIS.spawn(&mut cmd));
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !self.node_cmd(port, &["PING"]).contains("PONG") {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the TLS redis-server on {port} did not answer PING within 10 s"
                    );
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        }
    }

    /// `redis-cli`, with `--tls` and the cluster's CA when it speaks TLS.
    fn cli(&self) -> Command {
        let mut cli = Command::new(crate::system::binary("redis-tools"));
        if let Some(tls) = &self.tls {
            cli.arg("--tls").arg("--cacert").arg(&tls.cert);
        }
        cli.stdin(Stdio::null());
        cli
    }

    /// Sends one command to the node on `port`: the raw RESP reply over plain TCP
    /// ([`redis_cmd`]); over TLS, `redis-cli`'s output (for a status or an integer, the bare
    /// value; for text, the text), or its error.
    fn node_cmd(&self, port: u16, args: &[&str]) -> String {
        if self.tls.is_none() {
            return redis_cmd(&format!("redis://127.0.0.1:{port}"), args);
        }
        let out = self
            .cli()
            .args(["-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The PEM file of the CA that signed a TLS cluster's certificate (for
    /// `--redis-tls-ca`); `None` for a plain cluster.
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|tls| tls.cert.as_path())
    }

    /// `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,...` (`rediss-cluster://` over TLS): every
    /// node, as rt-server's `--backplane` takes it.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The ports of the nodes (empty for a `REDIS_CLUSTER_URL` cluster).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The port of the master serving `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.cmd(&["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {slot:?}"));
        let nodes = self.cmd(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            // id addr flags master ping pong epoch link slot-range...
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').filter_map(|p| p.parse::<u16>().ok());
                match (ends.next(), ends.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if owns {
                let addr = fields[1].split('@').next().unwrap_or_default();
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("CLUSTER NODES address {addr:?}"));
            }
        }
        panic!("no master owns slot {slot}")
    }

    /// Kills the node on `port` with SIGKILL (a crash: no save, no goodbye to the cluster).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no owned node on port {port}"));
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again (after [`kill`](Self::kill)): without its data it
    /// rejoins as a replica.
    pub fn restart(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no owned node on port {port}"));
        self.run(i);
    }

    /// Waits until every running node reports `cluster_state:ok` (e.g. after a failover).
    pub fn wait_ok(&self) {
        for port in self.addresses() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let info = self.node_cmd(port, &["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster node on {port} is not ok after 30 s: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Sends one command to a node that answers; see [`redis_cmd`] (over TLS,
    /// `redis-cli`'s output).
    pub fn cmd(&self, args: &[&str]) -> String {
        self.node_cmd(self.addresses()[0], args)
    }

    /// The ports of the running nodes (or of `REDIS_CLUSTER_URL`'s).
    fn addresses(&self) -> Vec<u16> {
        if self.nodes.is_empty() {
            return self
                .url
                .split_once("://")
                .map_or("", |(_, nodes)| nodes)
                .split(',')
                .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                .collect();
        }
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Waits until every replica has finished its first sync, so a failover finds data.
    fn wait_replicas_synced(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for port in self.addresses() {
            loop {
                let info = self.node_cmd(port, &["INFO", "replication"]);
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the replica on {port} did not sync within 30 s: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.nodes.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
