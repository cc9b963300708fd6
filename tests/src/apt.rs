//! System packages the tests need (nginx, redis-server, Chromium), installed with apt on
//! first use when missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::target_dir;

/// A system package providing a binary.
pub(crate) struct Package {
    /// The apt package name.
    pub(crate) name: &'static str,
    /// Where the binary may be, first found wins.
    pub(crate) paths: &'static [&'static str],
    /// Whether to install recommended packages too (Chromium needs their fonts).
    pub(crate) recommends: bool,
}

impl Package {
    fn find(&self) -> Option<PathBuf> {
        self.paths.iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// The binary's path, installing the package when none is there. Tests run side by side,
    /// in threads and in processes, so the check and the install are under a file lock, and
    /// apt waits for a dpkg lock held by anyone else instead of failing at once.
    pub(crate) fn binary(&self) -> PathBuf {
        if let Some(p) = self.find() {
            return p;
        }
        std::fs::create_dir_all(target_dir()).expect("create target dir");
        let lock = std::fs::File::create(target_dir().join("apt-install.lock"))
            .expect("create apt lock file");
        lock.lock().expect("lock the apt install");
        if let Some(p) = self.find() {
            return p;
        }
        eprintln!("{} not found: installing it with apt-get", self.name);
        let apt = |args: &[&str]| {
            let status = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=600", "-q"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                // No init system here: a package must not try to start its own daemon.
                .env("RUNLEVEL", "1")
                .stdin(Stdio::null())
                .status()
                .expect("run apt-get (a Debian-based machine is needed)");
            assert!(status.success(), "apt-get {args:?} failed");
        };
        apt(&["update"]);
        let mut install = vec!["install", "-y"];
        if !self.recommends {
            install.push("--no-install-recommends");
        }
        install.push(self.name);
        apt(&install);
        self.find().unwrap_or_else(|| {
            panic!(
                "{} still missing after apt-get install {}",
                self.paths[0], self.name
            )
        })
    }
}
