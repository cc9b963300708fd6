//! What `cargo xtask test` prepares before any test runs, so tests never run cargo or apt:
//! the binaries they start and the system packages they use.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{cargo, run, target_dir, workspace_root};

/// Builds the binaries the tests run: `rt-server` with every feature, at
/// `target/debug/rt-server` (where rt-tests looks for it, `rt_tests::server_binary`).
pub(crate) fn binaries() -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "rt-server",
        "--features",
        "full",
        "--bin",
        "rt-server",
    ]);
    run(build)
}

/// A line of `tests/system-packages.txt`.
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

/// The packages of `tests/system-packages.txt` (the list rt-tests looks binaries up in).
fn packages() -> Result<Vec<Package>, String> {
    let file = workspace_root().join("tests").join("system-packages.txt");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
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

/// Installs the missing packages of `tests/system-packages.txt` with apt-get: the one
/// installer, under one lock (`target/apt-install.lock`, against another xtask run; apt-get
/// also waits for a dpkg lock held by anyone else instead of failing at once).
pub(crate) fn system_packages() -> Result<(), String> {
    let packages = packages()?;
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
    eprintln!("xtask: installing the system packages the tests use: {how}");
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
                "{e}\nthe tests need these system packages: install them (`{how}`, as root) \
                 and run `cargo xtask test` again"
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
