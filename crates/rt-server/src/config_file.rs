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
