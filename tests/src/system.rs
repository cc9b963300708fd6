//! System tools the tests use (nginx, redis-server, nats-server, Chromium), as listed in
//! `tests/system-packages.txt`. `cargo xtask test` installs them before any test runs; tests
//! only look them up here, and fail with the command that installs a missing one.

use std::path::PathBuf;

/// `tests/system-packages.txt`, which `cargo xtask test` installs from too.
const PACKAGES: &str = include_str!("../system-packages.txt");

/// The binary of the system package `package` (a line of `tests/system-packages.txt`): the
/// first of its listed paths that exists. Panics, saying how to install it, when none does.
pub(crate) fn binary(package: &str) -> PathBuf {
    let paths: Vec<&str> = PACKAGES
        .lines()
        .map(str::split_whitespace)
        .find_map(|mut fields| (fields.next() == Some(package)).then(|| fields.skip(1).collect()))
        .unwrap_or_else(|| panic!("{package} is not listed in tests/system-packages.txt"));
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{package} is not installed (looked for {}): run `cargo xtask test`, which \
                 installs the system packages the tests need, or `apt-get install {package}`",
                paths.join(", ")
            )
        })
}
