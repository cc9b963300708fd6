//! Results: one JSON file, one markdown file and SVG plots per run, under the output dir.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::run::Report;
use crate::servers::Target;
use crate::svg::{color, line_chart, Series};

/// How the run was set up.
#[derive(Debug, Serialize)]
pub(crate) struct Setup {
    pub(crate) command: String,
    pub(crate) smoke: bool,
    pub(crate) pinning: String,
    pub(crate) generator_threads: usize,
    pub(crate) open_files_limit: u64,
    /// Runs that could not be measured (server did not start, publisher refused...).
    pub(crate) failures: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cpus: usize,
    memory_kib: u64,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct Ratio {
    peer: &'static str,
    /// Peak delivered msgs/s of rt ÷ the peer's, over the fan-out phases.
    delivered_per_s: f64,
    /// rt's p99 ÷ the peer's p99, per publish rate where both delivered everything.
    p99_by_rate: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    started_unix: u64,
    machine: Machine,
    setup: &'a Setup,
    fanout_ratios: Vec<Ratio>,
    backplanes: Vec<Through>,
    runs: &'a [Report],
}

/// One phase of the backplane scenario, against the memory backplane at the same rate.
#[derive(Debug, Serialize)]
struct Through {
    backplane: &'static str,
    offered_per_s: f64,
    /// Publishes per second that reached their subscriber (one per channel).
    publishes_per_s: f64,
    /// `publishes_per_s` ÷ the memory backplane's at the same offered rate.
    vs_memory: Option<f64>,
    /// Publishes acknowledged to the publisher per second.
    acked_per_s: f64,
    /// `acked_per_s` ÷ the memory backplane's at the same offered rate.
    acked_vs_memory: Option<f64>,
    p50_us: u64,
    p99_us: u64,
    server_cpu_cores: f64,
    /// rt-server's CPU seconds over the phase.
    server_cpu_s: f64,
    /// CPU seconds of each process behind the backplane (its Redis servers) over the phase.
    processes: Vec<crate::run::ProcessCpu>,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Machine {
        cpu,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_kib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn peak(r: &Report) -> f64 {
    r.phases
        .iter()
        .map(|p| p.delivered_per_s)
        .fold(0.0, f64::max)
}

fn complete(p: &crate::run::Phase) -> bool {
    p.delivered >= p.expected_deliveries && p.delivered > 0
}

fn ratios(runs: &[Report]) -> Vec<Ratio> {
    let fanout = |t: Target| {
        runs.iter()
            .find(|r| r.spec.scenario == "fanout" && r.spec.target == t)
    };
    let Some(rt) = fanout(Target::Rt) else {
        return vec![];
    };
    [
        Target::Baseline,
        Target::Ws,
        Target::Socketio,
        Target::Nchan,
    ]
    .into_iter()
    .filter_map(|t| {
        let peer = fanout(t)?;
        let p99_by_rate = rt
            .phases
            .iter()
            .zip(&peer.phases)
            .filter(|(a, b)| complete(a) && complete(b) && b.latency.p99_us > 0)
            .map(|(a, b)| {
                (
                    a.rate_target,
                    a.latency.p99_us as f64 / b.latency.p99_us as f64,
                )
            })
            .collect();
        Some(Ratio {
            peer: t.name(),
            delivered_per_s: peak(rt) / peak(peer).max(1e-9),
            p99_by_rate,
        })
    })
    .collect()
}

/// The backplane scenario's phases, each with its ratio to the memory backplane's.
fn backplanes(runs: &[Report]) -> Vec<Through> {
    let runs: Vec<&Report> = runs
        .iter()
        .filter(|r| r.spec.scenario == "backplane")
        .collect();
    // Publishes/s = deliveries/s ÷ subscribers per channel.
    let through = |r: &Report, p: &crate::run::Phase| {
        p.delivered_per_s * r.spec.channels as f64 / r.spec.subscribers.max(1) as f64
    };
    let memory = runs.iter().find(|r| r.spec.backplane == Some("memory"));
    runs.iter()
        .flat_map(|r| {
            r.phases.iter().map(move |p| {
                let reference = memory.and_then(|m| {
                    m.phases
                        .iter()
                        .find(|q| q.rate_target == p.rate_target)
                        .map(|q| (through(m, q), q.acked_per_s))
                });
                let ratio = |v: f64, of: f64| (of > 0.0).then(|| v / of);
                Through {
                    backplane: r.spec.backplane.unwrap_or("memory"),
                    offered_per_s: p.rate_target,
                    publishes_per_s: through(r, p),
                    vs_memory: reference.and_then(|(m, _)| ratio(through(r, p), m)),
                    acked_per_s: p.acked_per_s,
                    acked_vs_memory: reference.and_then(|(_, m)| ratio(p.acked_per_s, m)),
                    p50_us: p.latency.p50_us,
                    p99_us: p.latency.p99_us,
                    server_cpu_cores: p.server_cpu_cores,
                    server_cpu_s: p.server_cpu_s,
                    processes: p.processes.clone(),
                }
            })
        })
        .collect()
}

/// `masters 0.41 + 0.38 + 0.40, replicas 0.12 + ...`: CPU seconds of each Redis process,
/// grouped by role.
fn process_cpu(processes: &[crate::run::ProcessCpu]) -> String {
    let mut groups: Vec<(&str, Vec<String>)> = vec![];
    for p in processes {
        let role = p.name.rsplit(' ').next().unwrap_or_default();
        let role = match role {
            "master" => "masters",
            "slave" => "replicas",
            other => other,
        };
        let value = format!("{:.2}", p.cpu_s);
        match groups.iter_mut().find(|(r, _)| *r == role) {
            Some((_, values)) => values.push(value),
            None => groups.push((role, vec![value])),
        }
    }
    groups
        .iter()
        .map(|(role, values)| format!("{role} {}", values.join(" + ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// One line per run for the console.
pub(crate) fn summary(r: &Report) -> String {
    let mut s = format!(
        "  connected {}/{} in {:.1} s, closed early {}, errors {}, lost {}, dup/reordered {}",
        r.connected,
        r.spec.subscribers,
        r.connect_secs,
        r.closed_early,
        r.errors,
        r.lost,
        r.duplicates_or_reordered
    );
    if let Some(b) = r.bytes_per_connection {
        let _ = write!(s, ", {:.0} B/connection", b);
    }
    for p in &r.phases {
        let _ = write!(
            s,
            "\n  rate {:>7.0}/s (got {:>7.0}, acked {:>7.0}/s): {:>9.0} msg/s delivered {}/{}, p50 {} ms p99 {} ms max {} ms, server {:.2} cores, generator {:.2} cores",
            p.rate_target,
            p.rate_achieved,
            p.acked_per_s,
            p.delivered_per_s,
            p.delivered,
            p.expected_deliveries,
            ms(p.latency.p50_us),
            ms(p.latency.p99_us),
            ms(p.latency.max_us),
            p.server_cpu_cores,
            p.generator_cpu_cores
        );
    }
    for e in r.first_errors.iter().take(3) {
        let _ = write!(s, "\n  error: {e}");
    }
    s
}

fn markdown(out: &Output<'_>) -> String {
    let m = &out.machine;
    let mut s = format!(
        "# rt-bench results\n\nMachine: {} × {}, {} GiB RAM, Linux {}. {}; generator threads: {}; open files limit: {}.\n\nCommand: `{}`\n\n",
        m.cpus,
        m.cpu,
        m.memory_kib / 1024 / 1024,
        m.kernel,
        out.setup.pinning,
        out.setup.generator_threads,
        out.setup.open_files_limit,
        out.setup.command
    );
    for f in &out.setup.failures {
        let _ = writeln!(s, "**Failed run:** {f}\n");
    }
    if !out.fanout_ratios.is_empty() {
        s.push_str("## rt ÷ peers (WebSocket fan-out, same run)\n\n| peer | peak delivered msgs/s, rt ÷ peer | p99 latency rt ÷ peer, by publish rate |\n| --- | --- | --- |\n");
        for r in &out.fanout_ratios {
            let p99: Vec<String> = r
                .p99_by_rate
                .iter()
                .map(|(rate, v)| format!("{rate}/s: {v:.2}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} |",
                r.peer,
                r.delivered_per_s,
                p99.join(", ")
            );
        }
        s.push('\n');
    }
    if !out.backplanes.is_empty() {
        s.push_str("## Backplanes (1 WebSocket publisher, same run)\n\nPublishes/s delivered and acknowledged, each ÷ the memory backplane's at the same offered rate; CPU seconds each process used over the phase (Redis processes by role).\n\n| backplane | offered publishes/s | publishes/s delivered | ÷ memory | publishes/s acked | ÷ memory | p50 ms | p99 ms | rt-server CPU s | Redis CPU s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let ratio = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}"));
        for b in &out.backplanes {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {:.2} | {} |",
                b.backplane,
                b.offered_per_s,
                b.publishes_per_s,
                ratio(b.vs_memory),
                b.acked_per_s,
                ratio(b.acked_vs_memory),
                ms(b.p50_us),
                ms(b.p99_us),
                b.server_cpu_s,
                process_cpu(&b.processes)
            );
        }
        s.push('\n');
    }
    s.push_str("## Runs\n\n| scenario | server | transport | subscribers | channels | connected | connect s | closed early | errors | lost | dup/reordered | server peak RSS MiB | bytes/connection |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in out.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.0} | {} |",
            r.spec.scenario,
            r.spec.server(),
            r.spec.transport,
            r.spec.subscribers,
            r.spec.channels,
            r.connected,
            r.connect_secs,
            r.closed_early,
            r.errors,
            r.lost,
            r.duplicates_or_reordered,
            r.server_end.peak_rss_kib as f64 / 1024.0,
            r.bytes_per_connection
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "".into())
        );
    }
    s.push_str("\n## Phases\n\nLatency is publish → delivery at the subscriber, in ms (payload timestamp). Delivered msgs/s counts every subscriber's deliveries from the phase start to its last delivery.\n\n| scenario | server | transport | subs | rate target/s | rate achieved/s | delivered / expected | delivered msgs/s | p50 | p99 | p99.9 | max | server CPU cores | generator CPU cores |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in out.runs.iter().filter(|r| r.spec.scenario != "idle") {
        for p in &r.phases {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.0} | {} / {} | {:.0} | {} | {} | {} | {} | {:.2} | {:.2} |",
                r.spec.scenario,
                r.spec.server(),
                r.spec.transport,
                r.spec.subscribers,
                p.rate_target,
                p.rate_achieved,
                p.delivered,
                p.expected_deliveries,
                p.delivered_per_s,
                ms(p.latency.p50_us),
                ms(p.latency.p99_us),
                ms(p.latency.p999_us),
                ms(p.latency.max_us),
                p.server_cpu_cores,
                p.generator_cpu_cores
            );
        }
    }
    s
}

fn latency_chart(runs: &[Report]) -> Option<String> {
    let mut series = vec![];
    for r in runs.iter().filter(|r| r.spec.scenario == "fanout") {
        let points = |f: fn(&crate::hist::Percentiles) -> u64| {
            r.phases
                .iter()
                .filter(|p| p.delivered > 0)
                .map(|p| (p.rate_target, f(&p.latency) as f64 / 1000.0))
                .collect::<Vec<_>>()
        };
        let name = r.spec.target.name();
        // p99 solid, p50 dashed, in the target's colour.
        for (label, points, dashed) in [
            ("p99", points(|l| l.p99_us), false),
            ("p50", points(|l| l.p50_us), true),
        ] {
            series.push(Series {
                name: format!("{name} {label}"),
                points,
                dashed,
                color: color(name),
            });
        }
    }
    let n = runs
        .iter()
        .find(|r| r.spec.scenario == "fanout")?
        .spec
        .subscribers;
    Some(line_chart(
        &format!("WebSocket fan-out to {n} subscribers: latency"),
        "publishes per second",
        "publish → deliver latency, ms (log)",
        &series,
        true,
    ))
}

fn memory_chart(runs: &[Report]) -> Option<String> {
    let series: Vec<Series> = runs
        .iter()
        .filter(|r| r.spec.scenario == "idle")
        .map(|r| {
            let name = format!("{} {}", r.spec.target.name(), r.spec.transport);
            Series {
                color: color(&name),
                dashed: r.spec.transport != "ws",
                points: r
                    .memory
                    .iter()
                    .map(|m| (m.connections as f64, m.pss_kib as f64 / 1024.0))
                    .collect(),
                name,
            }
        })
        .collect();
    (!series.is_empty()).then(|| {
        line_chart(
            "Idle connections: server memory",
            "open connections",
            "server Pss (all its processes), MiB",
            &series,
            false,
        )
    })
}

/// Writes `bench-<unix time>.{json,md}`, `latest.{json,md}` and the plots to `dir`.
pub(crate) fn write(
    dir: &Path,
    started: SystemTime,
    setup: &Setup,
    runs: &[Report],
) -> Result<(), String> {
    let unix = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = Output {
        started_unix: unix,
        machine: machine(),
        setup,
        fanout_ratios: ratios(runs),
        backplanes: backplanes(runs),
        runs,
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    let md = markdown(&out);
    let mut files = vec![
        (format!("bench-{unix}.json"), json.clone()),
        ("latest.json".into(), json),
        (format!("bench-{unix}.md"), md.clone()),
        ("latest.md".into(), md),
    ];
    if let Some(svg) = latency_chart(runs) {
        files.push(("fanout-latency.svg".into(), svg));
    }
    if let Some(svg) = memory_chart(runs) {
        files.push(("idle-memory.svg".into(), svg));
    }
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "rt-bench: results in {}/latest.md (and .json, .svg)",
        dir.display()
    );
    Ok(())
}
