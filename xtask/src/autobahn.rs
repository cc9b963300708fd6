//! `cargo xtask autobahn` (being built).

/// Runs the task.
pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("cargo xtask autobahn is not available yet".into())
}
