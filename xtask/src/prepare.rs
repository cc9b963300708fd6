//! What `cargo xtask test` prepares before any test runs, so tests never run cargo or apt:
//! the binaries they start and the system packages they use (`cargo xtask bench` installs
//! its own list, `bench/system-packages.txt`, the same way).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo, run, target_dir, workspace_root};

/// Builds the binaries the tests run: `rt-server` with every feature, at
/// `target/debug/rt-server` (where rt-tests looks for it, `rt_tests::server_binary`), and
/// its release build at `target/release/rt-server` for the reconnect storm of
/// `tests/tests/chaos.rs` (3,000 connections within a second, which a debug build cannot take
/// on a 2-core machine). The release build is the one `cargo xtask bench` runs, so `ci` builds
/// it once.
pub(crate) fn binaries() -> Result<(), String> {
    for release in [false, true] {
        let mut build = cargo();
        build.arg("build");
        if release {
            build.arg("--release");
        }
        build.args([
            "-p",
            "rt-server",
            "--features",
            "full",
            "--bin",
            "rt-server",
        ]);
        run(build)?;
    }
    Ok(())
}

/// A line of a package list (`tests/system-packages.txt`, `bench/system-packages.txt`).
struct Package {
    /// The apt package.
    name: String,
    /// Whether apt installs its recommended packages too.
    recommends: bool,
    /// Where its binary may be; the package is installed when one exists.
    paths: Vec<PathBuf>,
}

impl Package {
    fn installed(&self) -> bool {
        self.paths.iter().any(|p| p.exists())
    }
}

/// The packages of `file` (for the tests, the list rt-tests looks binaries up in).
fn packages(file: &Path) -> Result<Vec<Package>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(recommends)) = (fields.next(), fields.next()) else {
                return Err(format!("{}: bad line {line:?}", file.display()));
            };
            Ok(Package {
                name: name.to_owned(),
                recommends: recommends == "yes",
                paths: fields.map(PathBuf::from).collect(),
            })
        })
        .collect()
}

/// The list of the packages the tests use.
pub(crate) fn test_packages() -> PathBuf {
    workspace_root().join("tests").join("system-packages.txt")
}

/// Installs the missing packages of the list `file` (only those named in `only` when given)
/// with apt-get: the one installer, under one lock (`target/apt-install.lock`, against
/// another xtask run; apt-get also waits for a dpkg lock held by anyone else instead of
/// failing at once).
pub(crate) fn system_packages(file: &Path, only: Option<&[&str]>) -> Result<(), String> {
    let mut packages = packages(file)?;
    if let Some(only) = only {
        packages.retain(|p| only.contains(&p.name.as_str()));
    }
    let missing = |packages: &[Package]| -> Vec<String> {
        packages
            .iter()
            .filter(|p| !p.installed())
            .map(|p| p.name.clone())
            .collect()
    };
    if missing(&packages).is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target_dir()).map_err(|e| format!("create target dir: {e}"))?;
    let lock = std::fs::File::create(target_dir().join("apt-install.lock"))
        .map_err(|e| format!("create target/apt-install.lock: {e}"))?;
    lock.lock()
        .map_err(|e| format!("lock target/apt-install.lock: {e}"))?;
    let todo = missing(&packages);
    if todo.is_empty() {
        return Ok(()); // another run installed them meanwhile
    }
    let how = format!("apt-get install {}", todo.join(" "));
    eprintln!(
        "xtask: installing the system packages of {}: {how}",
        file.display()
    );
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-o", "DPkg::Lock::Timeout=600", "-q"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // No init system here: a package must not try to start its own daemon.
            .env("RUNLEVEL", "1")
            .stdin(Stdio::null());
        run(cmd).map_err(|e| {
            format!(
                "{e}\n{} lists these system packages: install them (`{how}`, as root) \
                 and run the xtask again",
                file.display()
            )
        })
    };
    apt(&["update"])?;
    for recommends in [false, true] {
        let names: Vec<&str> = packages
            .iter()
            .filter(|p| p.recommends == recommends && todo.contains(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut args = vec!["install", "-y"];
        if !recommends {
            args.push("--no-install-recommends");
        }
        args.extend(names);
        apt(&args)?;
    }
    let still = missing(&packages);
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after apt-get install: {}",
            still.join(" ")
        ))
    }
}
