//! The servers under test: rt, the raw tokio-tungstenite baseline, Node `ws`, Socket.IO, and
//! nchan (the nginx pub/sub module).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};

use crate::proc::{usage, Usage};

/// A server implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// rt-server (release build, memory backplane).
    Rt,
    /// `baseline`: raw tokio-tungstenite broadcast.
    Baseline,
    /// Node `ws` broadcast server (bench/peers/ws-server.js).
    Ws,
    /// Socket.IO v4 server on Node (bench/peers/socketio-server.js).
    Socketio,
    /// nchan, the nginx pub/sub module (Debian `nginx-light` + `libnginx-mod-nchan`), two
    /// worker processes.
    Nchan,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Rt => "rt",
            Target::Baseline => "baseline",
            Target::Ws => "ws",
            Target::Socketio => "socketio",
            Target::Nchan => "nchan",
        }
    }

    /// The WebSocket path a subscriber of `channel` opens.
    pub(crate) fn ws_path(self, channel: &str) -> String {
        match self {
            Target::Rt => "/ws".into(),
            Target::Baseline | Target::Ws => "/".into(),
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket".into(),
            Target::Nchan => format!("/sub?channel={channel}"),
        }
    }

    /// The SSE (and long-polling) path of `channel`, for the servers that have one.
    pub(crate) fn sse_path(self, channel: &str) -> String {
        match self {
            Target::Nchan => format!("/sub?channel={channel}"),
            _ => format!("/sse?channel={channel}"),
        }
    }
}

/// Where the programs are.
#[derive(Clone, Debug)]
pub(crate) struct Programs {
    pub(crate) rt_server: PathBuf,
    pub(crate) baseline: PathBuf,
    pub(crate) peers: PathBuf,
    /// nginx, and the nchan module it loads.
    pub(crate) nginx: PathBuf,
    pub(crate) nchan_module: PathBuf,
    pub(crate) logs: PathBuf,
}

/// nchan's configuration: publishers on `/pub`, subscribers (WebSocket, EventSource, long
/// polling) on `/sub`, the channel in `?channel=`. Two workers, as many connections each as
/// the open-files limit allows; every path inside `dir`. Each channel keeps its last 1,024
/// messages (rt's queue length before a subscriber counts as lagging; nchan's default is
/// 10), and a long poll answers with every message since the last one it had, as rt's does.
fn nchan_config(module: &std::path::Path, dir: &std::path::Path, addr: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "load_module {module};\n\
         daemon off;\n\
         master_process on;\n\
         worker_processes 2;\n\
         worker_rlimit_nofile 20000;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 20000; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {dir}/body;\n\
         proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n\
         uwsgi_temp_path {dir}/uwsgi;\n\
         scgi_temp_path {dir}/scgi;\n\
         nchan_message_buffer_length 1024;\n\
         server {{\n\
         listen {addr};\n\
         location = /pub {{ nchan_publisher websocket http; nchan_channel_id $arg_channel; }}\n\
         location = /sub {{ nchan_subscriber; nchan_channel_id $arg_channel; \
         nchan_longpoll_multipart_response raw; }}\n\
         }}\n\
         }}\n",
        module = module.display(),
    )
}

/// A running server, killed on drop.
#[derive(Debug)]
pub(crate) struct Server {
    target: Target,
    child: Child,
    pid: u32,
    pub(crate) addr: SocketAddr,
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Server {
    /// Starts `target` on a free port (under `taskset -c cpus` when given) and waits until it
    /// accepts connections.
    pub(crate) async fn start(
        target: Target,
        programs: &Programs,
        cpus: Option<&str>,
        extra: &[String],
    ) -> Result<Server, String> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut argv: Vec<String> = match target {
            Target::Rt => vec![
                programs.rt_server.display().to_string(),
                "--listen".into(),
                addr.to_string(),
                // One publisher client sends thousands of messages per second.
                "--ws-rate-limit".into(),
                "1000000".into(),
                "--ws-rate-burst".into(),
                "1000000".into(),
                // The idle scenario holds 19,000 connections (default limit: 16,384).
                "--max-connections".into(),
                "20000".into(),
                // The bench's publisher and subscribers use channels of their own, tokenless.
                "--dev".into(),
            ],
            Target::Baseline => vec![
                programs.baseline.display().to_string(),
                "--listen".into(),
                addr.to_string(),
            ],
            Target::Ws | Target::Socketio => {
                let script = if target == Target::Ws {
                    "ws-server.js"
                } else {
                    "socketio-server.js"
                };
                vec![
                    "node".into(),
                    programs.peers.join(script).display().to_string(),
                    port.to_string(),
                ]
            }
            Target::Nchan => {
                let dir = programs.logs.join(format!("nchan-{port}"));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let dir = dir.canonicalize().map_err(|e| e.to_string())?;
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, nchan_config(&programs.nchan_module, &dir, addr))
                    .map_err(|e| format!("{}: {e}", conf.display()))?;
                vec![
                    programs.nginx.display().to_string(),
                    "-p".into(),
                    dir.display().to_string(),
                    "-e".into(),
                    dir.join("error.log").display().to_string(),
                    "-c".into(),
                    conf.display().to_string(),
                ]
            }
        };
        argv.extend(extra.iter().cloned());
        if let Some(cpus) = cpus {
            argv.splice(0..0, ["taskset".to_string(), "-c".into(), cpus.into()]);
        }
        std::fs::create_dir_all(&programs.logs).map_err(|e| e.to_string())?;
        let log_path = programs.logs.join(format!("{}.log", target.name()));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv.join(" ")))?;
        let pid = child.id().ok_or("server exited at once")?;
        let mut server = Server {
            target,
            child,
            pid,
            addr,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited with {status}; see {}",
                    target.name(),
                    log_path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "{} did not listen on {addr} within 10 s; see {}",
            target.name(),
            log_path.display()
        ))
    }

    pub(crate) fn usage(&self) -> Usage {
        usage(self.pid)
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if self.target == Target::Nchan {
            // nginx's workers outlive a killed master: it is asked to stop them first.
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A Redis or NATS server for the backplane scenario: the one at the given URL when it
/// accepts connections, else one started here on a free port (killed on drop).
#[derive(Debug)]
pub(crate) struct Backing {
    pub(crate) url: String,
    _child: Option<Child>,
}

impl Backing {
    /// `url` (`scheme://[user:password@]host:port[,...]`) if its first server accepts a TCP
    /// connection; otherwise `program` started with `args(port, dir)` on a free port.
    pub(crate) async fn ensure(
        url: &str,
        program: &str,
        args: crate::ServiceArgs,
        logs: &std::path::Path,
    ) -> Result<Backing, String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let host = rest
            .split([',', '/'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        if tokio::net::TcpStream::connect(host).await.is_ok() {
            return Ok(Backing {
                url: url.to_string(),
                _child: None,
            });
        }
        let port = free_port()?;
        let dir = logs.join(format!("{program}-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(args(port, &dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("nothing answers at {url} and `{program}` cannot be started: {e}")
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                eprintln!("rt-bench: nothing answers at {url}; started {program} on {addr}");
                return Ok(Backing {
                    url: format!("{scheme}://{addr}"),
                    _child: Some(child),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{program} did not listen on {addr} within 5 s"))
    }
}
