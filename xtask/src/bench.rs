//! `cargo xtask bench` (being built).

/// Runs the task.
pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("cargo xtask bench is not available yet".into())
}
