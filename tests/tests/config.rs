//! Configuration of the real binary: `--help` lists every documented option, a `--config`
//! TOML file sits under the environment and the flags, and invalid configuration stops the
//! server at start with a message naming the option.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use rt_tests::{free_port, target_dir, unique, workspace_root, Server};

/// The rt-server binary, built by starting (and stopping) a server once.
async fn binary() -> std::path::PathBuf {
    drop(Server::start(&[]).await);
    target_dir().join("debug").join("rt-server")
}

/// Runs the binary to completion (for failures and `--help`), bounded in time.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = binary().await;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env_remove("RT_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("rt-server neither failed nor exited within 20 s")
        .unwrap()
}

/// A running binary started with `args` and `env`; killed on drop.
struct Running {
    child: std::process::Child,
    base: String,
}

impl Running {
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let bin = binary().await;
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args(["--listen", &addr])
            .args(args)
            .env_remove("RT_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running {
            child,
            base: format!("http://{addr}"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok((status, _, _)) = rt_tests::http::get(&running.url("/health")).await {
                if status.is_success() {
                    return running;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("rt-server {args:?} did not answer /health within 15 s");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many channels one poll may name: the effective --max-channels.
    async fn max_channels(&self) -> usize {
        for n in 1..=10 {
            let channels: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let url = self.url(&format!("/poll?channel={}&timeout=0", channels.join(",")));
            let (status, _, _) = rt_tests::http::get(&url).await.unwrap();
            if status == StatusCode::BAD_REQUEST {
                return n - 1;
            }
            assert_eq!(status, StatusCode::OK);
        }
        panic!("more than 10 channels accepted");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(text: &str) -> std::path::PathBuf {
    let dir = target_dir().join("rt-tests-config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.toml", unique("rt")));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn help_lists_every_documented_option() {
    let out = run(&["--help"], &[]).await;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let doc = std::fs::read_to_string(workspace_root().join("docs/configuration.md")).unwrap();
    let table = &doc[doc.find("<!-- options:begin -->").unwrap()..];
    let flags: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `--"))
        .filter_map(|l| l.split(['`', ' ']).next())
        .collect();
    assert!(flags.len() > 20, "{flags:?}");
    for flag in flags {
        assert!(
            help.contains(&format!("--{flag}")),
            "--{flag} is documented but not in --help"
        );
    }
    assert!(help.contains("RT_CONFIG"), "{help}");
}

#[tokio::test]
async fn file_environment_and_flags_layer_in_that_order() {
    let file = write_config("max-channels = 2\n[sse]\nretry = \"7s\"\n");
    let file = file.to_str().unwrap();

    let from_file = Running::start(&["--config", file], &[]).await;
    assert_eq!(from_file.max_channels().await, 2, "the file sets it");
    // A table key reached the SSE transport too: its retry hint is 7 s.
    let (_, mut sse) = {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let res = client
            .get(from_file.url("/sse?channel=a").parse().unwrap())
            .await
            .unwrap();
        (client, res.into_body())
    };
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        use http_body_util::BodyExt;
        let mut text = String::new();
        while !text.contains("\n\n") {
            let frame = sse.frame().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
        }
        text
    })
    .await
    .unwrap();
    assert!(first.contains("retry: 7000"), "{first}");
    drop(from_file);

    // RT_CONFIG names the file as well.
    let by_env = Running::start(&[], &[("RT_CONFIG", file)]).await;
    assert_eq!(by_env.max_channels().await, 2);
    drop(by_env);

    let env_wins = Running::start(&["--config", file], &[("RT_MAX_CHANNELS", "3")]).await;
    assert_eq!(
        env_wins.max_channels().await,
        3,
        "the environment wins over the file"
    );
    drop(env_wins);

    let flag_wins = Running::start(
        &["--config", file, "--max-channels", "4"],
        &[("RT_MAX_CHANNELS", "3")],
    )
    .await;
    assert_eq!(flag_wins.max_channels().await, 4, "the flag wins over both");
}

/// Arguments of a NATS backplane (none answers on port 1) followed by `args`.
fn nats(args: &[&str]) -> Vec<String> {
    ["--backplane", "nats://127.0.0.1:1"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect()
}

#[tokio::test]
async fn invalid_configuration_fails_at_start_naming_the_option() {
    /// Arguments, environment, and what the error must name.
    type Case = (Vec<String>, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "--config".into(),
                write_config("histroy-size = 5\n").display().to_string(),
            ],
            vec![],
            "histroy-size",
        ),
        (
            vec![
                "--config".into(),
                write_config("history-age = \"soon\"\n")
                    .display()
                    .to_string(),
            ],
            vec![],
            "--history-age",
        ),
        (
            vec!["--config".into(), "/nonexistent/rt.toml".into()],
            vec![],
            "/nonexistent/rt.toml",
        ),
        (vec![], vec![("RT_HISTORY_AGE", "soon")], "--history-age"),
        (
            vec!["--max-channels".into(), "many".into()],
            vec![],
            "--max-channels",
        ),
        (
            vec!["--backplane".into(), "postgres://x".into()],
            vec![],
            "--backplane",
        ),
        (
            vec!["--max-channels".into(), "0".into()],
            vec![],
            "--max-channels",
        ),
        (
            nats(&["--nats-creds", "/nonexistent/rt.creds"]),
            vec![],
            "--nats-creds",
        ),
        (
            nats(&[
                "--nats-nkey",
                &write_config("not a seed\n").display().to_string(),
            ]),
            vec![],
            "--nats-nkey",
        ),
        (
            nats(&[
                "--nats-tls-ca",
                &write_config("no certificate\n").display().to_string(),
            ]),
            vec![],
            "--nats-tls-ca",
        ),
        (
            nats(&["--nats-tls-cert", "/nonexistent/cert.pem"]),
            vec![],
            "--nats-tls-key",
        ),
    ];
    for (args, env, named) in cases {
        let mut all: Vec<&str> = vec!["--listen", "127.0.0.1:0"];
        all.extend(args.iter().map(String::as_str));
        let out = run(&all, &env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(
            stderr.contains(named),
            "{args:?} {env:?}: the message does not name {named}:\n{stderr}"
        );
    }
}
