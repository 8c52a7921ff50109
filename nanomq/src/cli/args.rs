//! Command-line arguments of the broker's own commands; `pub` and `sub` have theirs in
//! `client_args`, `bench` in `bench::args`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

#[cfg(any(feature = "clients", feature = "bench"))]
use crate::mqtt::{ProtocolVersion, QoS};

/// nanomq: an edge MQTT broker, with mosquitto-style test clients.
#[derive(Debug, Parser)]
#[command(
    name = "nanomq",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(super) struct Cli {
    /// What to do; `start` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `start`'s options, for `nanomq --allow-root` and the like without `start`.
    #[command(flatten)]
    pub start: StartArgs,
}

/// The `nanomq` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Run the broker (the default when no command is given).
    Start(StartArgs),
    /// Parse and validate the config, print the effective values and where each came from,
    /// then exit without starting the broker.
    CheckConfig(CheckConfigArgs),
    /// Check the config, then tell the running broker to reload it (SIGHUP).
    Reload(ReloadArgs),
    /// Add a user to a password file, change its password, or delete it, like
    /// mosquitto_passwd.
    Passwd(PasswdArgs),
    /// Publish a message, like mosquitto_pub.
    #[cfg(feature = "clients")]
    #[command(disable_help_flag = true)]
    Pub(super::client_args::PubArgs),
    /// Subscribe and print the messages received, like mosquitto_sub.
    #[cfg(feature = "clients")]
    #[command(disable_help_flag = true)]
    Sub(super::client_args::SubArgs),
    /// Generate MQTT load and measure throughput, loss, latency and the broker's CPU and
    /// memory, like emqtt-bench.
    #[cfg(feature = "bench")]
    Bench(super::bench::BenchArgs),
}

/// `nanomq start`.
#[derive(Debug, Default, Args)]
pub(super) struct StartArgs {
    /// The image's TOML config file; without it /etc/nanomq/nanomq.toml when that exists, else
    /// built-in defaults (tcp 0.0.0.0:1883). `persistence.dir/runtime.toml` is read over it.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// When the state database is corrupt, move it aside (as nanomq.db.corrupt-<time>) and
    /// start with empty state, instead of refusing to start.
    #[arg(long)]
    pub recover_store: bool,
    /// Run as root without switching to `user` (same as `allow_root = true`).
    #[arg(long, env = "NANOMQ_ALLOW_ROOT", value_parser = BoolishValueParser::new())]
    pub allow_root: bool,
}

/// `nanomq check-config`.
#[derive(Debug, Args)]
pub(super) struct CheckConfigArgs {
    /// The image's TOML config file, as for `start --config`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print only the verdict, not the effective config (for a service manager's log).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nanomq reload`.
#[derive(Debug, Args)]
pub(super) struct ReloadArgs {
    /// The config file the broker was started with, as for `start --config`; it is checked
    /// first, and names the broker's `pid_file`.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The broker's process id, instead of reading `pid_file`.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
}

/// `nanomq passwd`.
#[derive(Debug, Args)]
pub(super) struct PasswdArgs {
    /// Password file; created with mode 0600 when missing.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// User to add, update or delete.
    #[arg(value_name = "USER")]
    pub user: String,
    /// The password. Without it, it is asked twice when standard input is a terminal, or read
    /// as one line from standard input otherwise (a password given here is visible to other
    /// users of the machine while the command runs).
    #[arg(short, long, conflicts_with = "delete")]
    pub password: Option<String>,
    /// Delete the user instead.
    #[arg(short = 'D', long)]
    pub delete: bool,
    /// Store the argon2id hash only, without the SCRAM-SHA-256 verifier: the user cannot use
    /// MQTT 5 enhanced authentication, and the file holds nothing weaker than argon2id.
    #[arg(long, conflicts_with = "delete")]
    pub no_scram: bool,
}

/// Accepts mosquitto's spellings of the protocol version.
#[cfg(any(feature = "clients", feature = "bench"))]
pub(super) fn parse_protocol(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "31" | "mqttv31" => Ok(ProtocolVersion::V31),
        "311" | "mqttv311" => Ok(ProtocolVersion::V311),
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err("use 31, 311 or 5 (or mqttv31, mqttv311, mqttv5)".to_owned()),
    }
}

/// Accepts 0, 1 or 2.
#[cfg(any(feature = "clients", feature = "bench"))]
pub(super) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| "use 0, 1 or 2".to_owned())
}

#[cfg(test)]
pub(super) mod tests {
    use clap::error::ErrorKind;

    use super::*;

    pub(in crate::cli) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nanomq").chain(args.iter().copied()))
    }

    pub(in crate::cli) fn error_kind(args: &[&str]) -> ErrorKind {
        parse(args).unwrap_err().kind()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_start_on_defaults() {
        assert!(parse(&[]).unwrap().command.is_none());
        match parse(&["start", "--config", "/etc/nanomq.toml"])
            .unwrap()
            .command
        {
            Some(Command::Start(a)) => assert_eq!(a.config, Some("/etc/nanomq.toml".into())),
            other => panic!("{other:?}"),
        }
        match parse(&["start"]).unwrap().command {
            Some(Command::Start(a)) => assert_eq!(a.config, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_config_takes_a_file_or_none() {
        match parse(&["check-config", "x.toml"]).unwrap().command {
            Some(Command::CheckConfig(a)) => assert_eq!(a.file, Some(PathBuf::from("x.toml"))),
            other => panic!("{other:?}"),
        }
        match parse(&["check-config"]).unwrap().command {
            Some(Command::CheckConfig(a)) => assert_eq!(a.file, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reload_takes_a_config_and_a_pid() {
        match parse(&["reload", "-c", "x.toml", "--pid", "42"])
            .unwrap()
            .command
        {
            Some(Command::Reload(a)) => {
                assert_eq!((a.config, a.pid), (Some(PathBuf::from("x.toml")), Some(42)))
            }
            other => panic!("{other:?}"),
        }
    }

    /// `--allow-root` works with and without `start`, and the options of `start` do not mix
    /// with another command.
    #[test]
    fn start_options_without_start() {
        let cli = parse(&["--allow-root", "--config", "x.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.start.allow_root);
        assert_eq!(cli.start.config, Some(PathBuf::from("x.toml")));
        match parse(&["start", "--allow-root"]).unwrap().command {
            Some(Command::Start(a)) => assert!(a.allow_root),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_kind(&["--allow-root", "check-config"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn passwd_takes_a_file_a_user_and_options() {
        match parse(&["passwd", "pw", "alice"]).unwrap().command {
            Some(Command::Passwd(a)) => {
                assert_eq!((a.file, a.user.as_str()), (PathBuf::from("pw"), "alice"));
                assert_eq!((a.password, a.delete), (None, false));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["passwd", "pw", "bob", "--password", "s3cret"])
            .unwrap()
            .command
        {
            Some(Command::Passwd(a)) => assert_eq!(a.password.as_deref(), Some("s3cret")),
            other => panic!("{other:?}"),
        }
        match parse(&["passwd", "-D", "pw", "bob"]).unwrap().command {
            Some(Command::Passwd(a)) => assert!(a.delete),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_kind(&["passwd", "pw", "bob", "-D", "-p", "x"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            error_kind(&["passwd", "pw"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn version_and_help() {
        assert_eq!(error_kind(&["--version"]), ErrorKind::DisplayVersion);
        assert_eq!(error_kind(&["-V"]), ErrorKind::DisplayVersion);
        assert_eq!(error_kind(&["--help"]), ErrorKind::DisplayHelp);
    }
}
