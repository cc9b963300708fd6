//! Headless Chromium for the browser end-to-end tests: Debian's `chromium`, which `cargo xtask
//! test` installs (browsers cannot be downloaded here, and playwright-core downloads
//! nothing), driven by playwright-core from the Node scripts `tests/js/browser-*.mjs`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{node_modules, target_dir, workspace_root, Server};

/// The Chromium binary (Debian's package, with its recommended packages: they bring the fonts
/// that screenshots need; see `tests/system-packages.txt`).
pub fn chromium() -> PathBuf {
    crate::system::binary("chromium")
}

/// Where tests put files worth keeping (e.g. screenshots): `target/artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = target_dir().join("artifacts");
    std::fs::create_dir_all(&dir).expect("create target/artifacts");
    dir
}

/// Runs `tests/js/<script> <args...>` with Node against `server`, with `RT_URL` (the server's
/// base URL), `RT_CHROMIUM` and `RT_ARTIFACTS` in its environment, and returns its stdout
/// once it exits successfully (panics with its output otherwise, or after `limit`).
///
/// The script may ask for the server to be restarted by printing a line `@restart` (same
/// arguments) or `@restart <args...>` (new arguments, same port); it gets a line `ok` on its
/// stdin once the server answers again.
pub async fn run_script(
    script: &str,
    server: &mut Server,
    args: &[&str],
    limit: Duration,
) -> String {
    let mut cmd = tokio::process::Command::new("node");
    cmd.env("RT_CHROMIUM", chromium());
    drive(cmd, script, server, args, limit).await
}

/// Like [`run_script`] for scripts that need no browser (no `RT_CHROMIUM`).
pub async fn run_node_script(
    script: &str,
    server: &mut Server,
    args: &[&str],
    limit: Duration,
) -> String {
    drive(
        tokio::process::Command::new("node"),
        script,
        server,
        args,
        limit,
    )
    .await
}

async fn drive(
    mut node: tokio::process::Command,
    script: &str,
    server: &mut Server,
    args: &[&str],
    limit: Duration,
) -> String {
    let dir = node_modules();
    let mut child = node
        .arg(dir.join(script))
        .args(args)
        .current_dir(workspace_root())
        .env("RT_URL", server.url(""))
        .env("RT_ARTIFACTS", artifacts_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (is Node.js installed?)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut out = String::new();
    let driven = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.expect("read node's stdout") {
            out.push_str(&line);
            out.push('\n');
            if let Some(rest) = line.strip_prefix("@restart") {
                let args: Vec<&str> = rest.split_whitespace().collect();
                if args.is_empty() {
                    server.restart().await;
                } else {
                    server.restart_with(&args).await;
                }
                stdin.write_all(b"ok\n").await.expect("answer node");
            }
        }
        child.wait().await.expect("wait for node")
    })
    .await;
    let status = match driven {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill().await;
            panic!("{script} did not finish within {limit:?}; output so far:\n{out}");
        }
    };
    let err = errors.await.unwrap_or_default();
    assert!(
        status.success(),
        "{script} failed ({status}); server log: {}\nstdout:\n{out}\nstderr:\n{err}",
        server.log_path().display()
    );
    out
}
