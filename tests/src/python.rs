//! Python virtual environments for tests that drive real Python peers (e.g. `websockets`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::target_dir;

/// The Python interpreter a venv is created from: `$RT_TEST_PYTHON`, else `python3`.
fn base_python() -> String {
    std::env::var("RT_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A virtualenv `target/rt-tests-venvs/<name>` with exactly the packages of `requirements`
/// (a pinned requirements file), created and installed on first use, under a file lock (test
/// binaries may run side by side), and re-installed when the requirements file changes.
/// Returns the venv's `python`.
pub fn venv(name: &str, requirements: &Path) -> PathBuf {
    let root = target_dir().join("rt-tests-venvs");
    std::fs::create_dir_all(&root).expect("create venv dir");
    let lock = std::fs::File::create(root.join(format!("{name}.lock"))).expect("venv lock");
    lock.lock().expect("lock venv");
    let dir = root.join(name);
    let python = dir.join("bin").join("python");
    let wanted = std::fs::read_to_string(requirements)
        .unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    let stamp = dir.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new(base_python())
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("run python3 -m venv (is Python 3 installed?)");
        assert!(
            status.success(),
            "creating the venv {} failed",
            dir.display()
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements)
            .status()
            .expect("run pip");
        assert!(
            status.success(),
            "pip install -r {} failed",
            requirements.display()
        );
        std::fs::write(&stamp, wanted).expect("write venv stamp");
    }
    drop(lock);
    python
}
