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
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command, CommandFactory, FromArgMatches};

use crate::config::Config;

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
        let matches = Config::command()
            .try_get_matches_from(&args)
            .map_err(ConfigError::Args)?;
        // `--config` or RT_CONFIG (the arg's environment variable).
        let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
            return Config::from_arg_matches(&matches).map_err(ConfigError::Args);
        };
        // The file's values become the defaults, so flags and the environment still win.
        let command = file_defaults(Config::command(), &path)?;
        match command.try_get_matches_from(&args) {
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

/// `command` with the file's settings as the defaults of their flags.
fn file_defaults(mut command: Command, path: &Path) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File(format!("cannot read --config {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::File(format!("{} is not valid TOML: {e}", path.display())))?;
    let mut settings = Vec::new();
    flatten("", table, &mut settings);
    for (key, value) in settings {
        let name = key.replace('_', "-");
        let unknown = || {
            ConfigError::File(format!(
                "{}: unknown option `{key}`; the keys are the long flags of `rt-server --help` without `--`",
                path.display()
            ))
        };
        // A switch is named by its flag (`no-demo = true`) or by its setting (`demo = false`).
        let (arg, by_flag) = command
            .get_arguments()
            .find_map(|a| {
                let id = a.get_id().as_str().replace('_', "-");
                (a.get_long() == Some(name.as_str()))
                    .then_some((a, true))
                    .or_else(|| (id == name && a.get_long().is_some()).then_some((a, false)))
            })
            .ok_or_else(unknown)?;
        if matches!(arg.get_long(), Some("config" | "help" | "version")) {
            return Err(unknown());
        }
        let values: Vec<String> = match arg.get_action() {
            action @ (ArgAction::SetTrue | ArgAction::SetFalse) => {
                let toml::Value::Boolean(on) = value else {
                    return Err(ConfigError::File(format!(
                        "{}: `{key}` must be true or false, not {value}",
                        path.display()
                    )));
                };
                let negated = by_flag && matches!(action, ArgAction::SetFalse);
                vec![(on != negated).to_string()]
            }
            _ => {
                let items = match value {
                    toml::Value::Array(items) => items.iter().map(scalar).collect(),
                    other => vec![scalar(&other)],
                };
                match arg.get_value_delimiter() {
                    Some(d) => items
                        .iter()
                        .flat_map(|i| i.split(d))
                        .map(str::to_owned)
                        .collect(),
                    None => vec![items.join(",")],
                }
            }
        };
        let id = arg.get_id().clone();
        command = command.mut_arg(id, |a| a.default_values(values));
    }
    Ok(command)
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
