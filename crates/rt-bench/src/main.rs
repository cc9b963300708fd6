//! rt-bench: load generator comparing rt with its peers on one machine, in one run.
//!
//! Run it through `cargo xtask bench` (which builds the servers and installs the Node
//! peers); see docs/benchmarks.md for the method and the latest results.

mod fleet;
mod hist;
mod marker;
mod presence;
mod proc;
mod publisher;
mod redis;
mod report;
mod run;
mod servers;
mod svg;
mod wsclient;

use std::path::PathBuf;

use clap::Parser;

use crate::fleet::Transport;
use crate::run::{Spec, Watched};
use crate::servers::{Backing, Programs, Target};

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// 1 publisher → N WebSocket subscribers on one channel, several publish rates.
    Fanout,
    /// 1,000 channels × 10 WebSocket subscribers, publishes spread over the channels.
    Channels,
    /// Idle WebSocket and SSE connections held: memory per connection.
    Idle,
    /// Held long polls released by publishes (rt, and nchan's long polling).
    Poll,
    /// SSE fan-out over HTTP/1.1 and over HTTP/2 (and nchan's over HTTP/1.1).
    Sse,
    /// 1 WebSocket publisher through rt-server on each backplane (memory, Redis, NATS).
    Backplane,
    /// A burst of publishes far past the live queue, at 10,000 WebSocket subscribers (rt
    /// only): how many subscribers the server closes, and what reaches the others.
    Burst,
    /// 10,000 WebSocket members joining and leaving one channel, and its counts read through
    /// the server API, with presence off and on, on memory, on a Redis of its own and on the
    /// `--redis-cluster` if given (rt only): the cost per join in rt-server and in Redis.
    Presence,
}

/// Where rt-server orders and stores events, in the backplane scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Backplane {
    /// `--backplane memory`: this process only (the reference).
    Memory,
    /// `--backplane` the `--redis` URL.
    Redis,
    /// `--backplane` the `--nats` URL (JetStream).
    Nats,
    /// `--backplane` the `--redis-cluster` URL; without one, Redis Clusters the bench starts
    /// itself: 3 masters with a replica each (run with `replicas=1`, rt's default, then with
    /// `replicas=0`) and 1 master holding every slot (`replicas=0`).
    RedisCluster,
}

impl Backplane {
    fn name(self) -> &'static str {
        match self {
            Backplane::Memory => "memory",
            Backplane::Redis => "redis",
            Backplane::Nats => "nats",
            Backplane::RedisCluster => "redis-cluster",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for rt and its peers (see docs/benchmarks.md)")]
struct Args {
    /// Tiny parameters: a run of seconds that checks the whole pipeline (CI).
    #[arg(long)]
    smoke: bool,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Servers compared in the fan-out and idle scenarios (nchan in the sse scenario too;
    /// others run rt only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rt,baseline,ws,socketio,nchan"
    )]
    targets: Vec<Target>,
    /// Fan-out subscribers (default 10,000; smoke 50); also the sse and presence scenarios'.
    #[arg(long)]
    subscribers: Option<usize>,
    /// Fan-out publish rates per second (default 1,5,10,25,50,100,200,400); also the sse and
    /// backplane scenarios'.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Idle connections per transport (default 19,000: see docs/benchmarks.md).
    #[arg(long)]
    idle: Option<usize>,
    /// Seconds per publish-rate phase.
    #[arg(long)]
    phase_secs: Option<f64>,
    /// Bytes of payload per publish (at least the marker's 40 or so). rt wraps it in its
    /// event object, about 130 bytes more per delivery: a baseline run with a payload that
    /// much larger compares equal frame sizes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Pin each server to CPU 0 and the generator to CPU 1 (default: both share both CPUs).
    #[arg(long)]
    pin: bool,
    /// Generator worker threads (default: 1 with --pin, else 2).
    #[arg(long)]
    threads: Option<usize>,
    /// Backplanes compared in the backplane scenario.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,redis,nats,redis-cluster"
    )]
    backplanes: Vec<Backplane>,
    /// The Redis of the backplane scenario; when none answers there, the bench starts
    /// `redis-server` on a free port.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// The NATS JetStream server of the backplane scenario; when none answers there, the
    /// bench starts `nats-server -js` on a free port.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The Redis Cluster of the backplane scenario's `redis-cluster` backplane, and of the
    /// presence scenario's `redis-cluster` variants (run only when given):
    /// `redis-cluster://host:port[,host:port...][?replicas=N]`. Without it the backplane
    /// scenario starts a 3-master and a 1-master cluster of its own (`redis-server` and
    /// `redis-cli`).
    #[arg(long)]
    redis_cluster: Option<String>,
    /// rt-server binary (release, --features full).
    #[arg(long, default_value = "target/release/rt-server")]
    rt_server: PathBuf,
    /// The baseline binary.
    #[arg(long, default_value = "target/release/baseline")]
    baseline: PathBuf,
    /// Directory of the Node peers (with node_modules installed).
    #[arg(long, default_value = "bench/peers")]
    peers: PathBuf,
    /// nginx, for the nchan peer.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// The nchan module nginx loads.
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_nchan_module.so")]
    nchan_module: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Thousands of sockets: lift the soft open-files limit to the hard one.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if args.pin {
        // Before the runtime exists, so every worker thread inherits the mask.
        let pid = std::process::id().to_string();
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &pid])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("rt-bench: --pin needs `taskset` (util-linux)");
            return std::process::ExitCode::FAILURE;
        }
    }
    let threads = args.threads.unwrap_or(if args.pin { 1 } else { 2 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rt-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // On Ctrl-C the bench is dropped: every server, Redis and cluster it started is killed.
    let run = async {
        tokio::select! {
            done = bench(args, threads, nofile) => done,
            _ = tokio::signal::ctrl_c() => Err("interrupted: the servers it started are stopped".into()),
        }
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rt-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn spec(scenario: &'static str, target: Target, kind: Transport, subscribers: usize) -> Spec {
    let transport = match kind {
        Transport::Ws => "ws".to_string(),
        Transport::SseH1 => "sse-h1".into(),
        Transport::SseH2 { streams } => format!("sse-h2 ({streams} streams/conn)"),
        Transport::LongPoll => "long-poll".into(),
    };
    Spec {
        scenario,
        target,
        transport,
        kind,
        subscribers,
        channels: 1,
        publishers: 1,
        rates: vec![],
        phase_secs: 5.0,
        payload_bytes: 64,
        checkpoints: vec![],
        hold_secs: 0.0,
        backplane: None,
        server_args: vec![],
        watched: vec![],
    }
}

/// One rt-server of the backplane scenario.
#[derive(Debug)]
struct BackplaneRun {
    /// Its name in reports: `redis`, `redis-cluster 3 shards (replicas=1)`...
    name: &'static str,
    /// rt-server's `--backplane`.
    url: String,
    /// The processes behind it whose CPU each phase reports.
    watched: Vec<Watched>,
}

/// The runs of the chosen scenarios, with full or smoke parameters.
fn plan(args: &Args, backplanes: Vec<BackplaneRun>) -> Vec<Spec> {
    let smoke = args.smoke;
    let all = args.scenario.is_empty();
    let wants = |s: Scenario| all || args.scenario.contains(&s);
    let phase = args.phase_secs.unwrap_or(if smoke { 1.0 } else { 4.0 });
    let mut specs = vec![];
    if wants(Scenario::Fanout) {
        let n = args.subscribers.unwrap_or(if smoke { 50 } else { 10_000 });
        let rates = if !args.rates.is_empty() {
            args.rates.clone()
        } else if smoke {
            vec![20.0, 100.0]
        } else {
            vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0]
        };
        for &t in &args.targets {
            let mut s = spec("fanout", t, Transport::Ws, n);
            s.rates = rates.clone();
            s.phase_secs = phase;
            specs.push(s);
        }
    }
    if wants(Scenario::Channels) {
        let (channels, per) = if smoke { (10, 5) } else { (1_000, 10) };
        let mut s = spec("channels", Target::Rt, Transport::Ws, channels * per);
        s.channels = channels;
        s.publishers = if smoke { 2 } else { 4 };
        s.rates = if smoke {
            vec![100.0]
        } else {
            vec![1_000.0, 4_000.0, 16_000.0]
        };
        s.phase_secs = phase;
        specs.push(s);
    }
    if wants(Scenario::Idle) {
        let n = args.idle.unwrap_or(if smoke { 200 } else { 19_000 });
        let checkpoints: Vec<usize> = [1_000, 5_000, 10_000, 100]
            .into_iter()
            .filter(|&c| c < n && (smoke == (c == 100)))
            .collect();
        // SSE over HTTP/2 too: there many streams share one connection's buffers.
        let mut runs = vec![
            (Target::Rt, Transport::Ws),
            (Target::Rt, Transport::SseH1),
            (Target::Rt, Transport::SseH2 { streams: 100 }),
        ];
        runs.extend(
            args.targets
                .iter()
                .filter(|t| **t != Target::Rt)
                .map(|&t| (t, Transport::Ws)),
        );
        if args.targets.contains(&Target::Nchan) {
            runs.push((Target::Nchan, Transport::SseH1));
        }
        for (t, kind) in runs {
            if t == Target::Rt && !args.targets.contains(&Target::Rt) {
                continue;
            }
            let mut s = spec("idle", t, kind, n);
            s.checkpoints = checkpoints.clone();
            s.hold_secs = if smoke { 1.0 } else { 10.0 };
            s.rates = vec![1.0];
            s.phase_secs = 1.5;
            specs.push(s);
        }
    }
    if wants(Scenario::Poll) {
        let n = if smoke { 50 } else { 5_000 };
        let mut targets = vec![Target::Rt];
        if args.targets.contains(&Target::Nchan) {
            targets.push(Target::Nchan);
        }
        for target in targets {
            let mut s = spec("poll", target, Transport::LongPoll, n);
            s.rates = if smoke {
                vec![20.0]
            } else {
                vec![10.0, 50.0, 100.0, 200.0]
            };
            s.phase_secs = phase;
            specs.push(s);
        }
    }
    if wants(Scenario::Sse) {
        let (n, streams) = if smoke { (50, 10) } else { (5_000, 100) };
        // --subscribers and --rates shape it like a fan-out run, so that SSE and the raw
        // WebSocket baseline can be compared in one go (`--scenario fanout,sse`).
        let n = args.subscribers.unwrap_or(n);
        let rates = if !args.rates.is_empty() {
            args.rates.clone()
        } else if smoke {
            vec![20.0]
        } else {
            vec![10.0, 50.0, 100.0, 200.0]
        };
        let mut runs = vec![
            (Target::Rt, Transport::SseH1),
            (Target::Rt, Transport::SseH2 { streams }),
        ];
        if args.targets.contains(&Target::Nchan) {
            runs.push((Target::Nchan, Transport::SseH1));
        }
        for (target, kind) in runs {
            let mut s = spec("sse", target, kind, n);
            s.rates = rates.clone();
            s.phase_secs = phase;
            specs.push(s);
        }
    }
    if wants(Scenario::Backplane) && args.targets.contains(&Target::Rt) {
        // One subscriber per channel: every publish is delivered once, so delivered msgs/s
        // is the publishes/s that went all the way through the backplane.
        let channels = if smoke { 2 } else { 10 };
        let rates = if !args.rates.is_empty() {
            args.rates.clone()
        } else if smoke {
            vec![200.0]
        } else {
            vec![5_000.0, 10_000.0, 20_000.0]
        };
        for b in backplanes {
            let mut s = spec("backplane", Target::Rt, Transport::Ws, channels);
            s.channels = channels;
            s.rates = rates.clone();
            s.phase_secs = phase;
            s.backplane = Some(b.name);
            s.server_args = vec!["--backplane".into(), b.url];
            s.watched = b.watched;
            // Keys (Redis) and the stream (NATS) of the bench, apart from anything else
            // using the same server.
            s.server_args
                .extend(["--redis-prefix".into(), "rtbench".into()]);
            specs.push(s);
        }
    }
    if wants(Scenario::Burst) {
        let n = args.subscribers.unwrap_or(if smoke { 50 } else { 10_000 });
        let mut s = spec("burst", Target::Rt, Transport::Ws, n);
        // 1,500 publishes in half a second: six times the live queue, well within history.
        s.rates = vec![3_000.0];
        s.phase_secs = 0.5;
        s.server_args = ["--queue-capacity", "256", "--history-size", "5000"]
            .map(String::from)
            .to_vec();
        specs.push(s);
    }
    for s in &mut specs {
        s.payload_bytes = args.payload_bytes;
    }
    specs
}

/// The command line of a Redis or NATS server the bench starts: its port and directory.
type ServiceArgs = fn(u16, &std::path::Path) -> Vec<String>;

fn redis_args(port: u16, dir: &std::path::Path) -> Vec<String> {
    let (port, dir) = (port.to_string(), dir.display().to_string());
    [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        &dir,
    ]
    .map(String::from)
    .into()
}

fn nats_args(port: u16, dir: &std::path::Path) -> Vec<String> {
    let (port, dir) = (port.to_string(), dir.display().to_string());
    ["-js", "-a", "127.0.0.1", "-p", &port, "-sd", &dir]
        .map(String::from)
        .into()
}

/// The `redis-cluster` runs: on the `--redis-cluster` URL when given, else on two clusters
/// started here (kept in `clusters` until the end): 3 shards waiting for 1 replica (rt's
/// default) and for none, and 1 shard.
async fn cluster_runs(
    given: Option<String>,
    clusters: &mut Vec<rt_tests::RedisCluster>,
) -> Result<Vec<BackplaneRun>, String> {
    let watched = |url: String| async move {
        let mut watched = vec![];
        let nodes = url.trim_start_matches("redis-cluster://");
        for node in nodes.split('?').next().unwrap_or_default().split(',') {
            watched.extend(redis::process(&format!("redis://{node}")).await);
        }
        watched
    };
    if let Some(url) = given {
        return Ok(vec![BackplaneRun {
            name: "redis-cluster",
            watched: watched(url.clone()).await,
            url,
        }]);
    }
    eprintln!("rt-bench: starting Redis Clusters of 3 masters (with a replica each) and 1 master");
    let three = redis::cluster(3, 1).await?;
    let one = redis::cluster(1, 0).await?;
    let runs = vec![
        BackplaneRun {
            name: "redis-cluster 3 shards (replicas=1)",
            url: three.url(),
            watched: watched(three.url()).await,
        },
        BackplaneRun {
            name: "redis-cluster 3 shards (replicas=0)",
            url: format!("{}?replicas=0", three.url()),
            watched: watched(three.url()).await,
        },
        BackplaneRun {
            name: "redis-cluster 1 shard (replicas=0)",
            url: format!("{}?replicas=0", one.url()),
            watched: watched(one.url()).await,
        },
    ];
    clusters.extend([three, one]);
    Ok(runs)
}

async fn bench(mut args: Args, threads: usize, nofile: u64) -> Result<(), String> {
    let programs = Programs {
        rt_server: args.rt_server.clone(),
        baseline: args.baseline.clone(),
        peers: args.peers.clone(),
        nginx: args.nginx.clone(),
        nchan_module: args.nchan_module.clone(),
        logs: args.out.join("logs"),
    };
    // Held until the end: a Redis or NATS started here stops with the bench.
    let mut backings = vec![];
    // Clusters started here, held like `backings`.
    let mut clusters = vec![];
    let mut runs = vec![];
    if args.scenario.is_empty() || args.scenario.contains(&Scenario::Backplane) {
        let wanted = args.backplanes.clone();
        let services: [(Backplane, &mut String, &str, ServiceArgs); 2] = [
            (
                Backplane::Redis,
                &mut args.redis,
                "redis-server",
                redis_args,
            ),
            (Backplane::Nats, &mut args.nats, "nats-server", nats_args),
        ];
        for (backplane, url, program, argv) in services {
            if wanted.contains(&backplane) {
                let service = Backing::ensure(url, program, argv, &programs.logs).await?;
                url.clone_from(&service.url);
                backings.push(service);
            }
        }
        for b in wanted {
            match b {
                Backplane::Memory => runs.push(BackplaneRun {
                    name: b.name(),
                    url: "memory".into(),
                    watched: vec![],
                }),
                Backplane::Redis => runs.push(BackplaneRun {
                    name: b.name(),
                    url: args.redis.clone(),
                    watched: redis::process(&args.redis).await.into_iter().collect(),
                }),
                Backplane::Nats => runs.push(BackplaneRun {
                    name: b.name(),
                    url: args.nats.clone(),
                    watched: vec![],
                }),
                Backplane::RedisCluster => {
                    let given = args.redis_cluster.clone();
                    runs.extend(cluster_runs(given, &mut clusters).await?);
                }
            }
        }
    }
    let specs = plan(&args, runs);
    let server_cpus = args.pin.then_some("0");
    let presence = if args.scenario.is_empty() || args.scenario.contains(&Scenario::Presence) {
        // A Redis of its own (nothing answers on port 1), so that its command counts and CPU
        // are the scenario's alone even when other programs share the machine's Redis.
        Some(
            Backing::ensure(
                "redis://127.0.0.1:1",
                "redis-server",
                redis_args,
                &programs.logs,
            )
            .await?,
        )
    } else {
        None
    };
    let started = std::time::SystemTime::now();
    let mut reports = vec![];
    let mut failures = vec![];
    for spec in specs {
        eprintln!(
            "rt-bench: {} / {} / {} × {} ...",
            spec.scenario,
            spec.server(),
            spec.transport,
            spec.subscribers
        );
        let name = format!("{} / {} / {}", spec.scenario, spec.server(), spec.transport);
        match run::run(spec, &programs, server_cpus).await {
            Ok(report) => {
                eprintln!("{}", report::summary(&report));
                reports.push(report);
            }
            // One failed run must not lose the others' results.
            Err(e) => {
                eprintln!("  failed: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    if let Some(redis) = &presence {
        let (members, read_secs) = if args.smoke { (50, 0.5) } else { (10_000, 3.0) };
        let members = args.subscribers.unwrap_or(members);
        match presence::run(
            &programs,
            server_cpus,
            &redis.url,
            args.redis_cluster.as_deref(),
            members,
            read_secs,
        )
        .await
        {
            Ok(outcomes) => {
                let md = presence::markdown(&outcomes);
                let json = serde_json::to_string_pretty(&outcomes).map_err(|e| e.to_string())?;
                for (name, text) in [("presence.md", md), ("presence.json", json)] {
                    let path = args.out.join(name);
                    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
                    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                eprintln!(
                    "rt-bench: presence results in {}",
                    args.out.join("presence.md").display()
                );
            }
            Err(e) => {
                eprintln!("  failed: {e}");
                failures.push(format!("presence: {e}"));
            }
        }
    }
    drop(presence);
    let setup = report::Setup {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke: args.smoke,
        pinning: if args.pin {
            "server pinned to CPU 0, generator to CPU 1 (taskset)".into()
        } else {
            "server and generator share both CPUs (no pinning)".into()
        },
        generator_threads: threads,
        open_files_limit: nofile,
        failures,
    };
    report::write(&args.out, started, &setup, &reports)?;
    drop(backings);
    drop(clusters);
    // At smoke size nothing is saturated: any error or loss means a client, a server or the
    // protocol between them is broken.
    let broken: Vec<String> = reports
        .iter()
        .filter(|r| args.smoke && (r.errors > 0 || r.lost > 0 || r.duplicates_or_reordered > 0))
        .map(|r| {
            format!(
                "{} / {} / {}: {} errors {:?}, {} lost, {} duplicate or reordered",
                r.spec.scenario,
                r.spec.server(),
                r.spec.transport,
                r.errors,
                r.first_errors,
                r.lost,
                r.duplicates_or_reordered
            )
        })
        .collect();
    if !broken.is_empty() {
        return Err(format!("smoke run not clean: {}", broken.join("; ")));
    }
    if setup.failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} run(s) failed: {}",
            setup.failures.len(),
            setup.failures.join("; ")
        ))
    }
}
