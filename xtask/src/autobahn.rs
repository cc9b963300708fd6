//! `cargo xtask autobahn [--quick | --ci]`: the Autobahn WebSocket conformance suite (`wstest -m
//! fuzzingclient`, from the `autobahntestsuite` package on PyPI) against rt-ws's echo example.
//!
//! Steps: build `crates/rt-ws/examples/echo.rs` (release), create a Python 2.7 virtualenv in
//! `target/autobahn/venv` (autobahntestsuite only runs on Python 2) from `$AUTOBAHN_PYTHON2`
//! or pyenv's 2.7.18, install the pinned `tests/python/autobahn-requirements.txt`, run the
//! cases against the echo server on a free port, and fail if any case is `FAILED`.
//!
//! Without arguments every case of sections 1–7, 9, 12 and 13 (permessage-deflate) runs:
//! 12 and 13 send thousands of large compressed messages, and take minutes because the Python
//! client compresses slowly (see `docs/autobahn.md` for the recorded result). `--quick` runs
//! all of 1–7, the smallest cases of each group of 9 and three message sizes of each group of
//! 12 and 13 (about a minute); `--ci`, what `cargo xtask ci` runs, all of 1–7 and 9 and those
//! cases of 12 and 13.
//! The HTML report lands in `target/autobahn/report/`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, run as run_cmd, workspace_root};

const UNCOMPRESSED: &[&str] = &["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*"];
const COMPRESSED: &[&str] = &["12.*", "13.*"];
const QUICK_UNCOMPRESSED: &[&str] = &[
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.1.1", "9.1.2", "9.2.1", "9.2.2", "9.3.1",
    "9.4.1", "9.5.1", "9.6.1", "9.7.1", "9.8.1",
];
// Autobahn's patterns match prefixes ("12.*.1" would take 12.1.10-18 too), so the compression
// cases are named: of each group, 16 and 1,024-byte messages and 4 KiB ones in 256-byte frames.
const QUICK_COMPRESSED: &[&str] = &[
    "12.1.1", "12.1.4", "12.1.11", "12.2.1", "12.2.4", "12.2.11", "12.3.1", "12.3.4", "12.3.11",
    "12.4.1", "12.4.4", "12.4.11", "12.5.1", "12.5.4", "12.5.11", "13.1.1", "13.1.4", "13.1.11",
    "13.2.1", "13.2.4", "13.2.11", "13.3.1", "13.3.4", "13.3.11", "13.4.1", "13.4.4", "13.4.11",
    "13.5.1", "13.5.4", "13.5.11", "13.6.1", "13.6.4", "13.6.11", "13.7.1", "13.7.4", "13.7.11",
];

/// Runs the suite; `args` may hold `--quick` or `--ci`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let (mode, groups) = match args {
        [] => ("full", [UNCOMPRESSED, COMPRESSED]),
        [a] if a == "--quick" => ("quick", [QUICK_UNCOMPRESSED, QUICK_COMPRESSED]),
        [a] if a == "--ci" => ("ci", [UNCOMPRESSED, QUICK_COMPRESSED]),
        _ => return Err("usage: cargo xtask autobahn [--quick | --ci]".into()),
    };
    let root = workspace_root();
    let dir = crate::target_dir().join("autobahn");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut build = cargo();
    build.args(["build", "--release", "-p", "rt-ws", "--example", "echo"]);
    run_cmd(build)?;
    let wstest = install(&root, &dir)?;

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let echo = crate::target_dir().join("release/examples/echo");
    let server = Command::new(&echo)
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", echo.display()))?;
    let mut server = KillOnDrop(server);
    wait_for_port(port, &mut server.0)?;

    let report = dir.join("report");
    let _ = std::fs::remove_dir_all(&report);
    let cases: Vec<&str> = groups.concat();
    let spec = format!(
        r#"{{"outdir": {outdir:?}, "servers": [{{"agent": "rt-ws", "url": "ws://127.0.0.1:{port}"}}], "cases": [{cases}], "exclude-cases": [], "exclude-agent-cases": {{}}}}"#,
        outdir = report.display().to_string(),
        cases = cases
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let spec_path = dir.join("fuzzingclient.json");
    std::fs::write(&spec_path, spec).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let started = Instant::now();
    let mut cmd = Command::new(&wstest);
    cmd.args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(&dir)
        .stdout(Stdio::null());
    run_cmd(cmd)?;
    drop(server);

    let results = read_results(&report.join("index.json"))?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for behavior in results.values() {
        *counts.entry(behavior.as_str()).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(b, n)| format!("{b}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "autobahn ({}): {} cases in {:.0?}: {summary}; report in {}",
        mode,
        results.len(),
        started.elapsed(),
        report.join("index.html").display()
    );
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, b)| b.as_str() == "FAILED")
        .map(|(case, _)| case)
        .collect();
    if results.is_empty() {
        return Err("the report lists no case".into());
    }
    if !failed.is_empty() {
        return Err(format!("FAILED cases: {failed:?}"));
    }
    Ok(())
}

/// The Python 2.7 virtualenv with the pinned autobahntestsuite; returns its `wstest`.
fn install(root: &Path, dir: &Path) -> Result<PathBuf, String> {
    let requirements = root.join("tests/python/autobahn-requirements.txt");
    let venv = dir.join("venv");
    let wstest = venv.join("bin/wstest");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    if wstest.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(wstest);
    }
    let python2 = std::env::var("AUTOBAHN_PYTHON2")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(".pyenv/versions/2.7.18/bin/python2.7")
        });
    if !python2.exists() {
        return Err(format!(
            "Python 2.7 not found at {} (autobahntestsuite needs it): install it (e.g. `pyenv install 2.7.18`) or set AUTOBAHN_PYTHON2",
            python2.display()
        ));
    }
    // virtualenv itself goes to a private directory rather than the user's site-packages.
    let tool = dir.join("virtualenv");
    let mut pip = Command::new(&python2);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
    ])
    .arg(&tool)
    .arg("virtualenv<20.22");
    run_cmd(pip)?;
    let _ = std::fs::remove_dir_all(&venv);
    let mut mk = Command::new(&python2);
    mk.args(["-m", "virtualenv"])
        .arg(&venv)
        .env("PYTHONPATH", &tool);
    run_cmd(mk)?;
    let mut install = Command::new(venv.join("bin/pip"));
    install
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements);
    run_cmd(install)?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(wstest)
}

fn wait_for_port(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the echo server exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the echo server did not listen within 30 s".into())
}

/// Case id → behavior (`OK`, `NON-STRICT`, `INFORMATIONAL`, `UNIMPLEMENTED`, `FAILED`) from
/// wstest's `index.json`, read without a JSON library: every case is a line `"1.1.1": {`
/// followed by its fields, one per line.
fn read_results(index: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let mut out = BTreeMap::new();
    let mut case: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(id) = line.strip_suffix(": {").map(|s| s.trim_matches('"')) {
            if id.split('.').all(|p| p.parse::<u32>().is_ok()) {
                case = Some(id.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("\"behavior\": ") {
            if let Some(id) = case.take() {
                out.insert(id, rest.trim_end_matches(',').trim_matches('"').to_owned());
            }
        }
    }
    Ok(out)
}

/// Kills the echo server however the run ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
