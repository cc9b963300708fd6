//! The Node packages of `tests/js`, installed from the committed lockfile.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace_root;

/// Runs `npm ci` in `tests/js` when its `node_modules` is missing or older than the lockfile,
/// under a file lock (test binaries may run side by side), and returns `tests/js`.
pub fn node_modules() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace_root().join("tests").join("js");
        let lock = std::fs::File::create(crate::target_dir().join("npm-ci.lock"))
            .or_else(|_| {
                std::fs::create_dir_all(crate::target_dir())?;
                std::fs::File::create(crate::target_dir().join("npm-ci.lock"))
            })
            .expect("create npm lock file");
        lock.lock().expect("lock npm install");
        let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let installed = modified(dir.join("node_modules").join(".package-lock.json"));
        let wanted = modified(dir.join("package-lock.json"));
        if installed.is_none() || installed < wanted {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("run npm (is Node.js installed?)");
            assert!(status.success(), "npm ci in tests/js failed");
        }
        drop(lock);
        dir
    })
    .clone()
}
