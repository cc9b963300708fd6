//! The NATS authentication and TLS options as command-line flags (feature `clap`), the ones
//! rt-server has, for programs that build their own command line: flatten [`NatsArgs`] into a
//! `clap::Parser` and apply them to a [`NatsConfig`] with [`NatsArgs::apply`].

use std::path::{Path, PathBuf};

use crate::{Error, NatsConfig};

/// NATS options beyond the URL (which may hold `user:password@`), prefix and history:
/// credentials and TLS files (`--nats-*`, environment `RT_NATS_*`).
///
/// ```
/// use clap::Parser;
/// use rt_backplane_nats::{NatsArgs, NatsConfig};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     nats: NatsArgs,
/// }
///
/// let cli = Cli::parse_from(["app", "--nats-creds", "/nonexistent/rt.creds"]);
/// let refused = cli.nats.apply(NatsConfig::new("nats://127.0.0.1:4222"));
/// assert!(refused.unwrap_err().to_string().starts_with("--nats-creds: cannot read"));
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// A NATS `.creds` file (user JWT and NKey seed) to authenticate with.
    #[arg(long, env = "RT_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// A file holding the NKey seed (`SU...`) to authenticate with, for NATS servers that
    /// list the user's public NKey.
    #[arg(long, env = "RT_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,

    /// PEM file with the CA certificate(s) that signed the NATS servers' certificates; TLS is
    /// then required.
    #[arg(long, env = "RT_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,

    /// PEM client certificate for NATS servers that verify clients (with --nats-tls-key).
    #[arg(
        long,
        env = "RT_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,

    /// PEM private key of --nats-tls-cert.
    #[arg(
        long,
        env = "RT_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsArgs {
    /// `config` with the files these options name, each read and checked now by its
    /// [`NatsConfig`] setter; the error names the option and the file.
    pub fn apply(&self, mut config: NatsConfig) -> Result<NatsConfig, Error> {
        /// Reads one file into the settings.
        type Set = fn(NatsConfig, &Path) -> std::io::Result<NatsConfig>;
        let files: [(&'static str, &Option<PathBuf>, Set); 5] = [
            ("--nats-creds", &self.nats_creds, |c, p| {
                c.credentials_file(p)
            }),
            ("--nats-nkey", &self.nats_nkey, |c, p| c.nkey_seed_file(p)),
            ("--nats-tls-ca", &self.nats_tls_ca, |c, p| c.tls_ca_file(p)),
            ("--nats-tls-cert", &self.nats_tls_cert, |c, p| {
                c.tls_client_cert_file(p)
            }),
            ("--nats-tls-key", &self.nats_tls_key, |c, p| {
                c.tls_client_key_file(p)
            }),
        ];
        for (option, path, set) in files {
            if let Some(path) = path {
                config = set(config, path).map_err(|e| Error::File {
                    option,
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    #[test]
    fn each_file_is_checked_and_named() {
        let dir = std::env::temp_dir().join(format!("rt-nats-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = dir.join("seed");
        std::fs::write(&seed, "not a seed\n").unwrap();
        let seed = seed.display().to_string();
        let url = || NatsConfig::new("nats://127.0.0.1:4222");
        let cli = Cli::try_parse_from(["app"]).unwrap();
        assert!(cli.nats.apply(url()).is_ok());
        let cli = Cli::try_parse_from(["app", "--nats-nkey", &seed]).unwrap();
        let e = cli.nats.apply(url()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "--nats-nkey: cannot read {seed}: not an NKey seed"
            )),
            "{e}"
        );
        // A client certificate needs its key.
        assert!(Cli::try_parse_from(["app", "--nats-tls-cert", &seed]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
