//! Project tasks for rt, run as `cargo xtask <task>`.
//!
//! | task | what it does |
//! | --- | --- |
//! | `test` | prepares what the tests use (builds the rt-server binary, installs the system packages of `tests/system-packages.txt` with apt), then runs every test: Rust unit, integration and end-to-end tests. Tests never run cargo or apt themselves |
//! | `features` | rt-server with each transport feature alone, default and `full`: `cargo clippy --all-targets -- -D warnings` (a check that also fails on warnings) and its unit tests for each |
//! | `ci` | what CI runs: `cargo fmt --check`, clippy with `-D warnings`, docs without warnings, `cargo package` of rt-server (with its rt-* dependencies), `features`, `test`, the full Autobahn run, 15 s of fuzzing per target and a seconds-long bench smoke run |
//! | `bench` | the load generator against rt and its peers; results in `target/bench/` |
//! | `autobahn` | the Autobahn WebSocket conformance suite against rt-ws |
//! | `fuzz` | replays the committed fuzz corpora, then runs each cargo-fuzz target for a bounded time |

mod autobahn;
mod bench;
mod fuzz;
mod prepare;

use std::process::{Command, ExitCode};

const HELP: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test [args]       build the rt-server binary and install the system packages the tests use
                    (tests/system-packages.txt, with apt), then run every test:
                    `cargo test --workspace --all-features --no-fail-fast [args]`
                    (e.g. `cargo xtask test --test poll`, `cargo xtask test -p rt-core`)
  features          rt-server with each transport feature alone (ws, sse, poll), default and
                    full: `cargo clippy -p rt-server --all-targets -- -D warnings` and
                    `cargo test -p rt-server --lib` for each
  ci                fmt check, clippy -D warnings, docs, package rt-server, features, test,
                    autobahn, fuzz (15 s/target), bench smoke
  bench [args]      run the benchmarks (see `cargo xtask bench --help`)
  autobahn [args]   run the Autobahn WebSocket test suite against rt-ws
  fuzz [args]       replay the fuzz corpora, then fuzz each target (--seconds N)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let result = match task.as_str() {
        "test" => test(rest),
        "features" => features(),
        "ci" => ci(),
        "bench" => bench::run(rest),
        "autobahn" => autobahn::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            eprint!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown task {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cargo that runs us, so toolchain overrides carry through.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    // `cargo run` set these for xtask itself. Passed on, they differ from a plain cargo's
    // environment, and build scripts that watch them (ring's: `CARGO_PKG_NAME`,
    // `CARGO_MANIFEST_DIR`...) then rerun: ring, rustls and everything above them were
    // rebuilt whenever builds alternated between `cargo xtask` and plain cargo.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(|p| p.to_path_buf()).unwrap_or(dir)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `cmd`, failing with its description when it does not succeed.
pub(crate) fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Prepares what the tests use, then runs them: `cargo test --workspace --all-features
/// --no-fail-fast` with `extra` appended (`--workspace` left out when `extra` picks packages).
fn test(extra: &[String]) -> Result<(), String> {
    prepare::system_packages(&prepare::test_packages(), None)?;
    prepare::binaries()?;
    let mut cmd = cargo();
    cmd.arg("test");
    let picks_packages = extra
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    if !picks_packages {
        cmd.arg("--workspace");
    }
    cmd.args(["--all-features", "--no-fail-fast"]).args(extra);
    run(cmd)
}

/// The feature sets of rt-server that must each build and pass its unit tests: every
/// transport alone, the default (all transports) and `full` (with Redis).
const FEATURE_SETS: &[&[&str]] = &[
    &["--no-default-features", "--features", "ws"],
    &["--no-default-features", "--features", "sse"],
    &["--no-default-features", "--features", "poll"],
    &[],
    &["--features", "full"],
];

/// rt-server with each of [`FEATURE_SETS`], so a feature flag cannot silently break.
fn features() -> Result<(), String> {
    for set in FEATURE_SETS {
        // clippy rather than check: it builds the same, and a warning that only one feature
        // set has (an import unused without a transport) fails too.
        let mut check = cargo();
        check
            .args(["clippy", "-p", "rt-server", "--all-targets"])
            .args(*set)
            .args(["--", "-D", "warnings"]);
        run(check)?;
        let mut test = cargo();
        test.args(["test", "-p", "rt-server", "--lib"]).args(*set);
        run(test)?;
    }
    Ok(())
}

/// Removes the copies of `crates` that an earlier `cargo package` unpacked from its local
/// overlay registry. Cargo unpacks each `.crate` under `$CARGO_HOME/registry/src/-<hash of
/// the overlay's path>/NAME-VERSION` and reuses that directory when it exists, so a later
/// package run would verify against the old sources of an unchanged version number (seen:
/// rt-http verified against an rt-core without a variant it uses). Only local registries
/// (names starting with `-`) are touched.
fn forget_unpacked(crates: &[&str]) -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in std::fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = unpacked.file_name().to_string_lossy().into_owned();
            let ours = crates.iter().any(|c| {
                name.strip_prefix(c)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|v| v.starts_with(|ch: char| ch.is_ascii_digit()))
            });
            if ours {
                std::fs::remove_dir_all(unpacked.path())
                    .map_err(|e| format!("removing {}: {e}", unpacked.path().display()))?;
            }
        }
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    // rt-server and rt-client must stay publishable (issue #15): package and verify them
    // from their .crate files. Their rt-* dependencies are not on crates.io, so they are
    // packaged in the same run: cargo then resolves and verifies them against those .crate
    // files (a local overlay of crates.io) instead of failing to find them. A new workspace
    // dependency of either has to be added here.
    let crates = [
        "rt-core",
        "rt-http",
        "rt-proxy",
        "rt-api",
        "rt-ws",
        "rt-sse",
        "rt-poll",
        "rt-backplane",
        "rt-backplane-nats",
        "rt-server",
        // Not a dependency of rt-server, but publishable: packaged and verified the same way.
        "rt-client",
    ];
    forget_unpacked(&crates)?;
    // A target directory of its own, emptied first: cargo takes a registry crate's build as
    // fresh whatever its sources, so a kept build of an overlay crate would outlive changes.
    let verify = target_dir().join("package-verify");
    if verify.exists() {
        std::fs::remove_dir_all(&verify)
            .map_err(|e| format!("removing {}: {e}", verify.display()))?;
    }
    let mut package = cargo();
    package
        .args(["package", "--allow-dirty", "--target-dir"])
        .arg(&verify);
    for krate in crates {
        package.args(["-p", krate]);
    }
    run(package)?;
    features()?;
    test(&[])?;
    // Sections 1-7 and 9 take about 30 s, so CI runs all of them; of the compression
    // sections 12 and 13 (tens of minutes in all), three message sizes per group.
    autobahn::run(&["--ci".into()])?;
    fuzz::run(&["--seconds".into(), "15".into()])?;
    bench::run(&["--smoke".into()])
}
