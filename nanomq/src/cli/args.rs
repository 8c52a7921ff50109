//! Command-line arguments. `pub` and `sub` follow mosquitto_pub and mosquitto_sub, flag for flag
//! where they overlap, so scripts and muscle memory carry over; that is why `-h` is the host and
//! help is `--help` only.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand};

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
    #[command(disable_help_flag = true)]
    Pub(PubArgs),
    /// Subscribe and print the messages received, like mosquitto_sub.
    #[command(disable_help_flag = true)]
    Sub(SubArgs),
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

/// Connection options shared by `pub` and `sub`.
#[derive(Debug, Args)]
pub(super) struct ConnectArgs {
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 31, 311 or 5 (also mqttv31, mqttv311, mqttv5).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "5", value_parser = parse_protocol)]
    pub protocol: ProtocolVersion,
    /// Client id; defaults to nanomq-pub-PID or nanomq-sub-PID.
    #[arg(short, long)]
    pub id: Option<String>,
    /// Ask for a persistent session (clean session / clean start off); needs --id. With MQTT 5
    /// and no --session-expiry the session never expires.
    #[arg(short = 'c', long)]
    pub disable_clean_session: bool,
    /// Keepalive in seconds; 0 disables it.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 60)]
    pub keepalive: u16,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Topic of the will message, published if this client disconnects unexpectedly.
    #[arg(long, value_name = "TOPIC")]
    pub will_topic: Option<String>,
    /// Payload of the will message (empty when omitted).
    #[arg(long, value_name = "PAYLOAD", requires = "will_topic")]
    pub will_payload: Option<String>,
    /// QoS of the will message.
    #[arg(long, value_name = "QOS", default_value = "0", value_parser = parse_qos,
          requires = "will_topic")]
    pub will_qos: QoS,
    /// Publish the will message as retained.
    #[arg(long, requires = "will_topic")]
    pub will_retain: bool,
    /// Session Expiry Interval in seconds (MQTT 5 only).
    #[arg(short = 'x', long, value_name = "SECONDS")]
    pub session_expiry: Option<u32>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `nanomq pub`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true)
    .args(["message", "null_message", "stdin_message"])))]
pub(super) struct PubArgs {
    /// Topic to publish to.
    #[arg(short, long)]
    pub topic: String,
    /// Message payload.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Send an empty payload (with --retain: clears the topic's retained message).
    #[arg(short, long)]
    pub null_message: bool,
    /// Read the payload from standard input, up to its end.
    #[arg(short, long)]
    pub stdin_message: bool,
    /// QoS of the message.
    #[arg(short, long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Ask the broker to retain the message.
    #[arg(short, long)]
    pub retain: bool,
    /// Publish the message this many times.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Where to connect and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `nanomq sub`.
#[derive(Debug, Args)]
pub(super) struct SubArgs {
    /// Topic filter to subscribe to; repeat for more.
    #[arg(short, long = "topic", value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,
    /// Maximum QoS of the subscriptions.
    #[arg(short, long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Exit after this many messages.
    #[arg(short = 'C', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit after this many seconds; an error if --count messages did not arrive by then.
    #[arg(short = 'W', long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Print "topic payload" instead of the payload alone.
    #[arg(short, long)]
    pub verbose: bool,
    /// Where to connect and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Accepts mosquitto's spellings of the protocol version.
pub(super) fn parse_protocol(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "31" | "mqttv31" => Ok(ProtocolVersion::V31),
        "311" | "mqttv311" => Ok(ProtocolVersion::V311),
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err("use 31, 311 or 5 (or mqttv31, mqttv311, mqttv5)".to_owned()),
    }
}

/// Accepts 0, 1 or 2.
pub(super) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| "use 0, 1 or 2".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nanomq").chain(args.iter().copied()))
    }

    fn pub_args(args: &[&str]) -> PubArgs {
        match parse(&[&["pub"], args].concat()).unwrap().command {
            Some(Command::Pub(a)) => a,
            other => panic!("not pub: {other:?}"),
        }
    }

    fn sub_args(args: &[&str]) -> SubArgs {
        match parse(&[&["sub"], args].concat()).unwrap().command {
            Some(Command::Sub(a)) => a,
            other => panic!("not sub: {other:?}"),
        }
    }

    fn error_kind(args: &[&str]) -> ErrorKind {
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
        assert_eq!(error_kind(&["pub", "--help"]), ErrorKind::DisplayHelp);
        assert_eq!(error_kind(&["sub", "--help"]), ErrorKind::DisplayHelp);
        assert_eq!(error_kind(&["--help"]), ErrorKind::DisplayHelp);
    }

    #[test]
    fn pub_defaults() {
        let a = pub_args(&["-t", "a/b", "-m", "hello"]);
        assert_eq!(a.connect.host, "localhost");
        assert_eq!(a.connect.port, 1883);
        assert_eq!(a.connect.protocol, ProtocolVersion::V5);
        assert_eq!(a.connect.keepalive, 60);
        assert_eq!(a.connect.id, None);
        assert!(!a.connect.disable_clean_session);
        assert_eq!(a.connect.will_qos, QoS::AtMostOnce);
        assert_eq!(a.qos, QoS::AtMostOnce);
        assert!(!a.retain);
        assert_eq!(a.repeat, 1);
        assert_eq!(
            (a.topic.as_str(), a.message.as_deref()),
            ("a/b", Some("hello"))
        );
    }

    #[test]
    fn pub_every_flag() {
        let a = pub_args(&[
            "-h",
            "broker",
            "-p",
            "1884",
            "-V",
            "mqttv311",
            "-q",
            "2",
            "-r",
            "-t",
            "t",
            "-n",
            "--repeat",
            "3",
            "-i",
            "me",
            "-c",
            "-k",
            "5",
            "-u",
            "user",
            "-P",
            "pw",
            "--will-topic",
            "w",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
            "--will-retain",
        ]);
        let c = &a.connect;
        assert_eq!((c.host.as_str(), c.port), ("broker", 1884));
        assert_eq!(c.protocol, ProtocolVersion::V311);
        assert_eq!(
            (a.qos, a.retain, a.null_message, a.repeat),
            (QoS::ExactlyOnce, true, true, 3)
        );
        assert_eq!(c.id.as_deref(), Some("me"));
        assert!(c.disable_clean_session);
        assert_eq!(c.keepalive, 5);
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("user"), Some("pw"))
        );
        assert_eq!(c.will_topic.as_deref(), Some("w"));
        assert_eq!(c.will_payload.as_deref(), Some("gone"));
        assert_eq!((c.will_qos, c.will_retain), (QoS::AtLeastOnce, true));
        let a = pub_args(&[
            "--host",
            "h",
            "--port",
            "1",
            "--protocol-version",
            "31",
            "--topic",
            "t",
            "--stdin-message",
            "--session-expiry",
            "30",
            "--qos",
            "1",
            "--retain",
        ]);
        assert_eq!(a.connect.protocol, ProtocolVersion::V31);
        assert!(a.stdin_message);
        assert_eq!(a.connect.session_expiry, Some(30));
    }

    #[test]
    fn pub_needs_exactly_one_payload_source() {
        assert_eq!(
            error_kind(&["pub", "-t", "t"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            error_kind(&["pub", "-t", "t", "-m", "x", "-n"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            error_kind(&["pub", "-m", "x"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert_eq!(
            error_kind(&["pub", "-t", "t", "-n", "-q", "3"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            error_kind(&["pub", "-t", "t", "-n", "-V", "4"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            error_kind(&["pub", "-t", "t", "-n", "--repeat", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            error_kind(&["sub", "-t", "t", "-C", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            error_kind(&["sub", "-t", "t", "-p", "70000"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            error_kind(&["sub", "-t", "t", "--will-payload", "x"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn sub_flags() {
        let a = sub_args(&[
            "-t", "a/#", "--topic", "b/+", "-C", "2", "-W", "5", "-v", "-q", "1", "-x", "60", "-h",
            "10.0.0.1",
        ]);
        assert_eq!(a.topics, ["a/#", "b/+"]);
        assert_eq!(
            (a.count, a.timeout, a.verbose, a.qos),
            (Some(2), Some(5), true, QoS::AtLeastOnce)
        );
        assert_eq!(a.connect.session_expiry, Some(60));
        assert_eq!(a.connect.host, "10.0.0.1");
        assert_eq!(error_kind(&["sub"]), ErrorKind::MissingRequiredArgument);
        let a = sub_args(&["-t", "x"]);
        assert_eq!((a.count, a.timeout, a.verbose), (None, None, false));
    }
}
