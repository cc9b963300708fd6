//! `cargo xtask bench [--smoke] [rt-bench options]`: builds rt-server and the load generator
//! in release mode, installs the Node peers from their lockfile and nchan's system packages
//! (`bench/system-packages.txt`, with apt), and runs rt-bench from the workspace root.
//! Results go to target/bench/ (see docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn status(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let st = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {st}"))
    }
}

/// Runs the benchmark; `args` are passed on to rt-bench (`--help` lists them).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let root = root();
    let target = crate::target_dir();
    status(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "rt-server",
        "--features",
        "full",
    ]))?;
    status(crate::cargo().args(["build", "--release", "-p", "rt-bench", "--bins"]))?;
    let peers = root.join("bench/peers");
    // `--name value` or `--name=value` among rt-bench's arguments.
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
            })
    };
    // Only the comparison with the Node peers needs them.
    let targets = arg("--targets");
    let node_peers = targets.is_none_or(|t| t.contains("ws") || t.contains("socketio"));
    if node_peers {
        status(Command::new("npm").current_dir(&peers).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]))?;
    }
    // nchan runs on the Debian nginx with its module: bench/system-packages.txt.
    if targets.is_none_or(|t| t.contains("nchan")) {
        crate::prepare::system_packages(&root.join("bench").join("system-packages.txt"), None)?;
    }
    // The backplane and presence scenarios start Redis servers, Redis Clusters (redis-cli
    // joins them) and NATS when none is given: the tests' packages of those.
    if arg("--scenario").is_none_or(|s| s.contains("backplane") || s.contains("presence")) {
        crate::prepare::system_packages(
            &crate::prepare::test_packages(),
            Some(&["redis-server", "redis-tools", "nats-server"]),
        )?;
    }
    let release = target.join("release");
    status(
        Command::new(release.join("rt-bench"))
            .current_dir(&root)
            .arg("--rt-server")
            .arg(release.join("rt-server"))
            .arg("--baseline")
            .arg(release.join("baseline"))
            .arg("--peers")
            .arg(&peers)
            .arg("--out")
            .arg(target.join("bench"))
            .args(args),
    )
}
