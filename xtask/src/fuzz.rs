//! `cargo xtask fuzz [--seconds N] [target...]`: replays the committed corpora on stable, then
//! fuzzes each target (every one in `fuzz/fuzz_targets/` by default) with cargo-fuzz for N
//! seconds. cargo-fuzz needs a nightly toolchain: both are installed when missing. New inputs
//! found go to `target/fuzz-corpus/<target>/`, so the committed corpora change only by hand;
//! a crash fails the task and leaves its input in `fuzz/artifacts/<target>/`.

use std::process::Command;

use crate::{cargo, workspace_root};

const USAGE: &str =
    "usage: cargo xtask fuzz [--seconds N (default 30; 0: corpus replay only)] [target...]";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 30;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("--seconds needs a whole number\n{USAGE}"))?;
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            t if t.starts_with('-') => return Err(format!("unknown option {t:?}\n{USAGE}")),
            t => targets.push(t.to_owned()),
        }
    }
    let root = workspace_root();
    let fuzz = root.join("fuzz");
    if targets.is_empty() {
        targets = all_targets(&fuzz)?;
    }

    // On stable: every committed corpus input and proptest-generated ones.
    let mut replay = cargo();
    replay
        .args(["test", "--manifest-path"])
        .arg(fuzz.join("Cargo.toml"))
        .arg("--lib");
    crate::run(replay)?;
    if seconds == 0 {
        return Ok(());
    }

    ensure_nightly_and_cargo_fuzz()?;
    for target in &targets {
        let found = crate::target_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&found).map_err(|e| format!("{}: {e}", found.display()))?;
        let mut cmd = Command::new("rustup");
        cmd.current_dir(&root)
            .args([
                "run",
                "nightly",
                "cargo",
                "fuzz",
                "run",
                target,
                "--features",
                "libfuzzer",
            ])
            .arg(&found)
            .arg(fuzz.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048");
        crate::run(cmd)?;
    }
    Ok(())
}

/// The targets: one file per target in `fuzz/fuzz_targets/`.
fn all_targets(fuzz: &std::path::Path) -> Result<Vec<String>, String> {
    let dir = fuzz.join("fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    targets.sort();
    Ok(targets)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn ensure_nightly_and_cargo_fuzz() -> Result<(), String> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        crate::run(cmd)?;
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "--version"])) {
        let mut cmd = cargo();
        cmd.args(["install", "cargo-fuzz", "--locked"]);
        crate::run(cmd)?;
    }
    Ok(())
}
