//! Server process measurements from `/proc`: CPU seconds, memory (RSS, peak RSS and Pss).
//!
//! A server may be several processes (nginx: a master and its workers): CPU and Pss are
//! summed over the process and its descendants. Pss (proportional set size, from
//! `/proc/PID/smaps_rollup`) counts a page shared by n processes as 1/n in each, so the sum
//! counts shared memory once; it is the memory figure used for every server.

use serde::Serialize;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Usage {
    /// User + system CPU time, seconds.
    pub(crate) cpu_s: f64,
    /// Resident set size now, KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set size, KiB.
    pub(crate) peak_rss_kib: u64,
    /// Proportional set size of the process and its descendants, KiB.
    pub(crate) pss_kib: u64,
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Reads `pid` and its descendants in `/proc` (zeros when the process is gone): CPU and Pss
/// summed over all of them, RSS and peak RSS of `pid` alone.
pub(crate) fn usage(pid: u32) -> Usage {
    let mut u = one(pid);
    let mut todo = children(pid);
    while let Some(child) = todo.pop() {
        let c = one(child);
        u.cpu_s += c.cpu_s;
        u.pss_kib += c.pss_kib;
        todo.extend(children(child));
    }
    u
}

/// Reads `pid` alone, without its descendants: the generator itself, whose children are the
/// servers it measures.
pub(crate) fn usage_alone(pid: u32) -> Usage {
    one(pid)
}

/// The children of `pid` (of every thread of it).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// One process's readings.
fn one(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        u.pss_kib = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            u.cpu_s = (ticks(11) + ticks(12)) / clock_ticks();
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kib = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                u.rss_kib = kib();
            } else if line.starts_with("VmHWM:") {
                u.peak_rss_kib = kib();
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let u = super::usage(std::process::id());
        assert!(u.rss_kib > 0 && u.peak_rss_kib >= u.rss_kib, "{u:?}");
        assert!(u.pss_kib > 0 && u.pss_kib <= u.rss_kib, "{u:?}");
    }
}
