//! Arguments of `nanomq pub` and `nanomq sub` (cargo feature `clients`), which follow
//! mosquitto_pub and mosquitto_sub flag for flag where they overlap, so scripts and muscle memory
//! carry over; that is why `-h` is the host and help is `--help` only.

use clap::{ArgAction, ArgGroup, Args};

use super::args::{parse_protocol, parse_qos};
use crate::mqtt::{ProtocolVersion, QoS};

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

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::super::args::tests::{error_kind, parse};
    use super::super::args::Command;
    use super::*;

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
    fn help_is_the_long_flag_only() {
        assert_eq!(error_kind(&["pub", "--help"]), ErrorKind::DisplayHelp);
        assert_eq!(error_kind(&["sub", "--help"]), ErrorKind::DisplayHelp);
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
