//! The configuration through the library's public API: flags, the `--config` file under the
//! environment and the flags, the options table of `docs/configuration.md`, and the checks
//! [`Server::bind`] makes before it listens (each error names the option).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser};
use rt_server::{Config, ConfigError, Server, Transport};

#[test]
fn flags_are_consistent() {
    Config::command().debug_assert();
}

#[test]
fn durations_parse_and_bad_values_name_the_option() {
    let c = Config::try_parse_from(["rt-server", "--history-age", "90s"]).unwrap();
    assert_eq!(c.history_age, Duration::from_secs(90));
    let err = Config::try_parse_from(["rt-server", "--history-age", "soon"]).unwrap_err();
    assert!(err.to_string().contains("--history-age"), "{err}");
}

#[test]
fn tls_cert_and_key_go_together() {
    let e = Config::try_parse_from(["rt-server", "--tls-cert", "c.pem"]).unwrap_err();
    assert!(e.to_string().contains("--tls-key"), "{e}");
}

/// The options table of `docs/configuration.md`, generated from the flags so it cannot drift.
fn reference() -> String {
    let mut out = String::from(
        "| flag | environment | file key | default | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    let command = Config::command();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map_or_else(String::new, |e| format!("`{}`", e.to_string_lossy()));
        let key = if long == "config" {
            "–".to_owned()
        } else {
            format!("`{long}`")
        };
        let default = match arg.get_action() {
            ArgAction::SetTrue => "off".to_owned(),
            ArgAction::SetFalse => "off (the feature is on)".to_owned(),
            _ => {
                let values: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                match values.join(",") {
                    _ if values.is_empty() => "none".to_owned(),
                    v if v.is_empty() => "empty".to_owned(),
                    v => format!("`{v}`"),
                }
            }
        };
        let value = if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            String::new()
        } else {
            let name = arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or_else(|| long.to_uppercase(), |n| n.to_string());
            format!(" <{name}>")
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string().replace('\n', " "))
            .unwrap_or_default();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        let help = if possible.is_empty() || value.is_empty() {
            help
        } else {
            format!(
                "{}. One of {}.",
                help.trim_end_matches('.'),
                possible.join(", ")
            )
        };
        out.push_str(&format!(
            "| `--{long}{value}` | {env} | {key} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}

/// `docs/configuration.md` lists every option with its environment variable and default.
/// With every feature compiled in, the table must be exactly the generated one; run
/// `RT_BLESS=1 cargo test -p rt-server --features full docs_list` to regenerate it.
#[test]
fn docs_list_every_option() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- options:begin -->\n", "<!-- options:end -->");
    let start = doc.find(begin).expect("options:begin marker") + begin.len();
    let stop = doc.find(end).expect("options:end marker");
    let table = reference();
    if cfg!(all(
        feature = "ws",
        feature = "sse",
        feature = "poll",
        feature = "redis"
    )) {
        if std::env::var_os("RT_BLESS").is_some() {
            let new = format!("{}{table}{}", &doc[..start], &doc[stop..]);
            std::fs::write(path, new).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/configuration.md is out of date: regenerate it (see this test's doc)"
        );
    }
    for arg in Config::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            if long != "help" && long != "version" {
                assert!(
                    doc[start..stop].contains(&format!("`--{long}")),
                    "docs/configuration.md does not list --{long}"
                );
            }
        }
    }
}

/// A file that deletes itself; no crate needed for one test helper.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str, text: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rt-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Temp(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file(text: &str) -> Temp {
    Temp::new("config.toml", text)
}

fn load(args: &[&str]) -> Result<Config, ConfigError> {
    Config::try_load_from(std::iter::once("rt-server").chain(args.iter().copied()))
}

#[test]
fn file_sets_options_and_flags_win() {
    let f = file("history-age = \"10m\"\nmax_channels = 7\nno-demo = true\nmetrics = false\n");
    let c = load(&["--config", &f.arg()]).unwrap();
    assert_eq!(c.history_age, Duration::from_secs(600));
    assert_eq!(c.max_channels, 7);
    assert!(!c.demo);
    assert!(!c.metrics);
    let c = load(&["--config", &f.arg(), "--max-channels", "9"]).unwrap();
    assert_eq!(c.max_channels, 9, "the flag wins over the file");
    let c = load(&[]).unwrap();
    assert_eq!(c.max_channels, 100, "without a file: the default");
}

#[cfg(feature = "sse")]
#[test]
fn tables_prefix_their_keys() {
    let f = file("[sse]\nheartbeat = \"2s\"\n");
    let c = load(&["--config", &f.arg()]).unwrap();
    assert_eq!(c.sse.sse_heartbeat, Duration::from_secs(2));
}

#[test]
fn lists_take_arrays() {
    let f = file("disable = [\"ws\", \"poll\"]\n");
    let c = load(&["--config", &f.arg()]).unwrap();
    assert_eq!(c.disable, vec![Transport::Ws, Transport::Poll]);
}

#[test]
fn unknown_keys_and_bad_values_name_the_option_and_the_file() {
    let f = file("histroy-age = \"10m\"\n");
    let e = load(&["--config", &f.arg()]).unwrap_err().to_string();
    assert!(e.contains("histroy-age") && e.contains(&f.arg()), "{e}");

    let f = file("history-age = \"soon\"\n");
    let e = load(&["--config", &f.arg()]).unwrap_err().to_string();
    assert!(e.contains("--history-age") && e.contains(&f.arg()), "{e}");

    let f = file("no-demo = \"yes\"\n");
    let e = load(&["--config", &f.arg()]).unwrap_err().to_string();
    assert!(e.contains("no-demo") && e.contains("true or false"), "{e}");

    let f = file("listen = \n");
    let e = load(&["--config", &f.arg()]).unwrap_err().to_string();
    assert!(e.contains("not valid TOML"), "{e}");

    let e = load(&["--config", "/nonexistent/rt.toml"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/rt.toml"), "{e}");
}

/// Binds a server on a free port with `args`; the error message if it refuses.
async fn bind(args: &[&str]) -> Result<Server, String> {
    let argv = ["rt-server", "--listen", "127.0.0.1:0"].iter().chain(args);
    Server::bind(Config::parse_from(argv))
        .await
        .map_err(|e| e.to_string())
}

/// `bind(args)` fails with a message containing every one of `named`.
async fn refused(args: &[&str], named: &[&str]) {
    let Err(e) = bind(args).await else {
        panic!("{args:?} was accepted")
    };
    for n in named {
        assert!(
            e.contains(n),
            "{args:?}: the message does not name {n}: {e}"
        );
    }
}

#[tokio::test]
async fn token_options_are_checked() {
    bind(&[]).await.unwrap();
    bind(&["--jwt-hs256-secret", "s"]).await.unwrap();
    bind(&["--dev"]).await.unwrap();
    // Anonymous grants are valid with and without tokens (`--anonymous` is the old name).
    bind(&["--anonymous", "public:*"]).await.unwrap();
    bind(&[
        "--anonymous-subscribe",
        "public:*",
        "--anonymous-publish",
        "chat:*",
    ])
    .await
    .unwrap();
    refused(
        &["--jwt-hs256-secret", "s", "--anonymous", "a*b"],
        &["--anonymous-subscribe"],
    )
    .await;
    refused(&["--anonymous-publish", "a*b"], &["--anonymous-publish"]).await;
    let dev_with_tokens = Config::try_parse_from(["rt-server", "--dev", "--jwt-hs256-secret", "s"]);
    assert!(dev_with_tokens.unwrap_err().to_string().contains("--dev"));
    refused(
        &["--jwt-public-key", "/nonexistent.pem"],
        &["--jwt-public-key"],
    )
    .await;
    let bad_algorithm = ["--jwt-public-key", "/dev/null", "--jwt-algorithm", "HS512"];
    refused(&bad_algorithm, &["--jwt-algorithm"]).await;
}

#[tokio::test]
async fn bad_limits_are_refused() {
    refused(&["--max-header-bytes", "100"], &["--max-header-bytes"]).await;
    refused(&["--handshake-timeout", "0s"], &["--handshake-timeout"]).await;
    refused(&["--h2-max-streams", "0"], &["--h2-max-streams"]).await;
}

#[tokio::test]
async fn bad_tls_files_name_the_option() {
    let missing = "/nonexistent/rt-cert.pem";
    let args = ["--tls-cert", missing, "--tls-key", missing];
    refused(&args, &["--tls-cert", missing]).await;
    let pem = Temp::new("empty.pem", "not pem\n");
    let path = pem.arg();
    let args = ["--tls-cert", &path, "--tls-key", &path];
    refused(&args, &["--tls-cert", "no PEM certificate"]).await;
}

#[tokio::test]
async fn unknown_backplanes_are_refused() {
    refused(
        &["--backplane", "kafka://127.0.0.1:9092"],
        &["--backplane", "kafka://"],
    )
    .await;
    refused(&["--backplane", "memoryy"], &["--backplane", "`memory`"]).await;
    #[cfg(not(feature = "nats"))]
    refused(
        &["--backplane", "nats://127.0.0.1:4222"],
        &["--features nats"],
    )
    .await;
}
