//! The TOML configuration file (`--config` / `RT_CONFIG`) layered under the environment and
//! the command line.
//!
//! Precedence, highest first: command-line flags, environment variables, the file, built-in
//! defaults. The file uses the long flag names as keys (`history-age = "10m"`; `_` works as
//! well as `-`), optionally grouped in tables whose name is the flag's prefix (`[ws]`
//! `ping-interval = "20s"` is `--ws-ping-interval`). Switches such as `--no-demo` take a
//! boolean (`no-demo = true`, or `demo = false`), lists take an array or a comma-separated
//! string. Every key is checked against the flags that exist, and every value by the same
//! parser as its flag, so a typo or a bad value stops the server at start with the option
//! and the file named.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::config::Config;

/// The environment variable naming the configuration file.
const CONFIG_ENV: &str = "RT_CONFIG";

impl Config {
    /// Reads the configuration of the process: its arguments, environment and `--config` file.
    /// On error, prints the message (naming the option) and exits, as `Config::parse` does.
    pub fn load() -> Config {
        match Config::try_load_from(std::env::args_os()) {
            Ok(config) => config,
            Err(ConfigError::Args(e)) => e.exit(),
            Err(ConfigError::File(message)) => {
                eprintln!("rt-server: {message}");
                std::process::exit(2)
            }
        }
    }

    /// [`Config::load`] from the given arguments (the first is the program name), returning
    /// errors instead of exiting.
    pub fn try_load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Config::command();
        let matches = command
            .clone()
            .try_get_matches_from(&args)
            .map_err(ConfigError::Args)?;
        let path = matches
            .get_one::<std::path::PathBuf>("config")
            .cloned()
            .or_else(|| std::env::var_os(CONFIG_ENV).map(Into::into));
        let Some(path) = path else {
            return Config::from_arg_matches(&matches).map_err(ConfigError::Args);
        };
        let from_file = file_args(&command, &path, |id| {
            // Flags and the environment win over the file.
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })?;
        let mut all = args.clone();
        all.extend(from_file);
        match command.try_get_matches_from(&all) {
            Ok(m) => Config::from_arg_matches(&m).map_err(ConfigError::Args),
            // The arguments alone parsed, so the file's values are at fault.
            Err(e) => Err(ConfigError::File(format!(
                "in {}: {}",
                path.display(),
                e.render().to_string().trim_end()
            ))),
        }
    }
}

/// Why the configuration is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or environment variable is invalid (clap's message names it).
    #[error("{0}")]
    Args(clap::Error),
    /// The configuration file cannot be read, or holds an unknown key or a bad value.
    #[error("{0}")]
    File(String),
}

/// The file's settings as extra command-line arguments, leaving out those `overridden`.
fn file_args(
    command: &clap::Command,
    path: &Path,
    overridden: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File(format!("cannot read --config {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::File(format!("{} is not valid TOML: {e}", path.display())))?;
    let mut settings = Vec::new();
    flatten("", table, &mut settings);
    let mut out = Vec::new();
    for (key, value) in settings {
        let name = key.replace('_', "-");
        let unknown = || {
            ConfigError::File(format!(
                "{}: unknown option `{key}`; the keys are the long flags of `rt-server --help` without `--`",
                path.display()
            ))
        };
        let (arg, negated) = command
            .get_arguments()
            .find_map(|a| {
                if a.get_long() == Some(name.as_str()) {
                    Some((a, false))
                } else if a.get_id().as_str().replace('_', "-") == name && a.get_long().is_some() {
                    // `demo = false` for `--no-demo`: the id names the setting, not the flag.
                    Some((a, matches!(a.get_action(), ArgAction::SetFalse)))
                } else {
                    None
                }
            })
            .ok_or_else(unknown)?;
        let long = arg.get_long().ok_or_else(unknown)?;
        if long == "config" || long == "help" || long == "version" {
            return Err(unknown());
        }
        if overridden(arg.get_id().as_str()) {
            continue;
        }
        let flag = format!("--{long}");
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let toml::Value::Boolean(on) = value else {
                    return Err(ConfigError::File(format!(
                        "{}: `{key}` ({flag}) must be true or false, not {value}",
                        path.display()
                    )));
                };
                if on != negated {
                    out.push(flag.into());
                }
            }
            _ => {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => {
                        items.iter().map(scalar).collect::<Vec<_>>().join(",")
                    }
                    other => scalar(&other),
                };
                out.push(format!("{flag}={text}").into());
            }
        }
    }
    Ok(out)
}

/// A TOML scalar as the text a flag would be given.
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `[ws] ping-interval = ..` becomes `ws-ping-interval`.
fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}-{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            value => out.push((key, value)),
        }
    }
}

/// The options table of `docs/configuration.md`, generated from the flags so it cannot drift.
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    fn file(text: &str) -> tempfile_path::Temp {
        tempfile_path::Temp::new(text)
    }

    /// A file that deletes itself; no crate needed for one test helper.
    mod tempfile_path {
        pub(super) struct Temp(pub(super) std::path::PathBuf);
        impl Temp {
            pub(super) fn new(text: &str) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "rt-config-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).unwrap();
                Temp(path)
            }
            pub(super) fn arg(&self) -> String {
                self.0.display().to_string()
            }
        }
        impl Drop for Temp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
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
        assert_eq!(
            c.disable,
            vec![crate::config::Transport::Ws, crate::config::Transport::Poll]
        );
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
}
