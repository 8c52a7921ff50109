//! Command-line arguments of `nanomq bench`. The connection flags follow `nanomq pub`/`sub` (and
//! so mosquitto's clients): `-h` is the host, help is `--help` only.
//!
//! Options that a `run` scenario has its own default for are `Option`s here; [`super::scenario`]
//! and [`super::pubsub`] fill them in, so a flag given on the command line always wins.

use clap::{ArgAction, Args, Subcommand};

use super::super::args::{parse_protocol, parse_qos};
use super::scenario::Scenario;
use crate::mqtt::{ProtocolVersion, QoS};

/// `nanomq bench`.
#[derive(Debug, Args)]
pub(in crate::cli) struct BenchArgs {
    /// What load to generate.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The `nanomq bench` subcommands.
#[derive(Debug, Subcommand)]
pub(in crate::cli) enum Mode {
    /// N publishers sending to a topic pattern as fast as allowed or at an interval.
    #[command(disable_help_flag = true)]
    Pub(PubArgs),
    /// N subscribers counting what arrives: rate, loss, reordering, duplicates, latency.
    #[command(disable_help_flag = true)]
    Sub(SubArgs),
    /// Open N idle connections at a rate: CONNACK latency and broker memory per connection.
    #[command(disable_help_flag = true)]
    Conn(ConnArgs),
    /// Subscribers and publishers in one process, with flow control and exact loss.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
}

/// Where to connect, how fast, and what to measure; shared by every mode.
#[derive(Debug, Args)]
pub(in crate::cli) struct ClientOpts {
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 311 or 5 (31 works too).
    #[arg(short = 'V', long, value_name = "VERSION", default_value = "5",
          value_parser = parse_protocol)]
    pub protocol: ProtocolVersion,
    /// Keepalive in seconds; 0 (the default) lets idle connections cost no pings.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub keepalive: u16,
    /// New connections per second; 0 is unlimited. Default: 1000 for `conn`, unlimited
    /// otherwise. At most 64 handshakes are ever in progress at once, so an unlimited rate
    /// does not overflow the broker's accept backlog.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Bind client sockets round-robin to 127.0.0.1 ..= 127.0.0.N, for more than ~28,000
    /// connections to one broker port. Default: one address per 20,000 connections when the
    /// host is a 127.x address, otherwise none.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub source_ips: Option<u8>,
    /// Measured seconds, after the warm-up (for `conn`: how long to hold the connections
    /// unless --hold says otherwise).
    #[arg(short, long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = positive_seconds)]
    pub duration: f64,
    /// Runtime worker threads. One by default, so that on a small machine the load generator
    /// leaves the other cores to the broker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Process id of the broker, to report its CPU time and memory from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// What the publishers send; shared by `pub` and `run`.
#[derive(Debug, Args)]
pub(in crate::cli) struct PublishOpts {
    /// QoS of the messages (and of `run`'s subscriptions). Default: 0, or the scenario's.
    #[arg(short, long, value_parser = parse_qos)]
    pub qos: Option<QoS>,
    /// Payload bytes, at least the 20-byte header the measurements need. Default: 64, or the
    /// scenario's.
    #[arg(short, long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Milliseconds between two messages of one publisher; 0 is flat out. Default: 0, or the
    /// scenario's.
    #[arg(short = 'I', long, value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// Unacknowledged QoS 1/2 messages per publisher, further capped by the broker's Receive
    /// Maximum.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// Stop each publisher after this many messages (warm-up included); default: no limit.
    #[arg(short = 'L', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Seconds of traffic before the measurement starts.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0,
          value_parser = non_negative_seconds)]
    pub warmup: f64,
}

/// `nanomq bench pub`.
#[derive(Debug, Args)]
pub(in crate::cli) struct PubArgs {
    /// Number of publishers.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Topic of each publisher; %i is its index.
    #[arg(short, long, default_value = "bench/%i")]
    pub topic: String,
    /// What to send.
    #[command(flatten)]
    pub publish: PublishOpts,
    /// Where to connect.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `nanomq bench sub`.
#[derive(Debug, Args)]
pub(in crate::cli) struct SubArgs {
    /// Number of subscribers.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Topic filter of each subscriber; %i is its index.
    #[arg(short, long, default_value = "bench/#")]
    pub topic: String,
    /// Maximum QoS of the subscriptions.
    #[arg(short, long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Seconds after subscribing before the measurement starts; a message counts when it was
    /// sent inside the measured window.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0,
          value_parser = non_negative_seconds)]
    pub warmup: f64,
    /// Where to connect.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `nanomq bench conn`.
#[derive(Debug, Args)]
pub(in crate::cli) struct ConnArgs {
    /// Number of connections.
    #[arg(short, long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Seconds to hold the connections open and idle once all are up; default: --duration.
    #[arg(long, value_name = "SECONDS", value_parser = non_negative_seconds)]
    pub hold: Option<f64>,
    /// Where to connect.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `nanomq bench run`.
#[derive(Debug, Args)]
pub(in crate::cli) struct RunArgs {
    /// The traffic pattern; the options below override its defaults.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Number of publishers.
    #[arg(short = 'P', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: Option<u32>,
    /// Number of subscribers.
    #[arg(short = 'S', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: Option<u32>,
    /// Topic of each publisher; %i is its index.
    #[arg(short, long)]
    pub topic: Option<String>,
    /// Topic filter of each subscriber; %i is its index.
    #[arg(long)]
    pub filter: Option<String>,
    /// Messages any one subscriber may be behind: sent to it (by any publisher) but not yet
    /// received or known lost. A publisher waits for the slowest subscriber of its topic. Keeps
    /// QoS 0 from measuring only how fast a broker can drop; keep it within the broker's
    /// per-session queue.
    #[arg(long, value_name = "MESSAGES", value_parser = clap::value_parser!(u64).range(1..))]
    pub window: Option<u64>,
    /// What to send.
    #[command(flatten)]
    pub publish: PublishOpts,
    /// Where to connect.
    #[command(flatten)]
    pub client: ClientOpts,
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("use a number of seconds, 0 or more".to_owned()),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match non_negative_seconds(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err("use a number of seconds above 0".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::Parser;

    use super::super::super::args::{Cli, Command};
    use super::*;

    fn mode(args: &[&str]) -> Result<Mode, clap::Error> {
        let argv = ["nanomq", "bench"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Bench(b)) => Ok(b.mode),
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn pub_defaults_and_flags() {
        let Mode::Pub(a) = mode(&["pub"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.count, a.topic.as_str()), (1, "bench/%i"));
        assert_eq!((a.client.host.as_str(), a.client.port), ("127.0.0.1", 1883));
        assert_eq!(a.client.protocol, ProtocolVersion::V5);
        assert_eq!((a.client.keepalive, a.client.threads), (0, 1));
        assert_eq!((a.client.duration, a.publish.warmup), (10.0, 2.0));
        assert_eq!(
            (a.publish.qos, a.publish.size, a.publish.inflight),
            (None, None, 100)
        );
        let Mode::Pub(a) = mode(&[
            "pub", "-h", "10.1.1.1", "-p", "1884", "-V", "311", "-q", "1", "-s", "100", "-c", "4",
            "-I", "5", "-d", "1.5", "-w", "0", "--pid", "7", "-L", "3",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.client.host, "10.1.1.1");
        assert_eq!(a.client.protocol, ProtocolVersion::V311);
        assert_eq!(a.publish.qos, Some(QoS::AtLeastOnce));
        assert_eq!(
            (a.publish.size, a.publish.interval_ms),
            (Some(100), Some(5))
        );
        assert_eq!(
            (a.count, a.client.duration, a.publish.warmup),
            (4, 1.5, 0.0)
        );
        assert_eq!((a.client.pid, a.publish.limit), (Some(7), Some(3)));
    }

    #[test]
    fn run_takes_a_scenario_and_overrides() {
        let Mode::Run(a) = mode(&["run", "--scenario", "fan-in-qos1", "--window", "5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.scenario, Scenario::FanInQos1);
        assert_eq!(a.window, Some(5));
        assert_eq!(
            mode(&["run"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            mode(&["run", "--scenario", "nope"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn help_is_long_only_and_bad_values_are_refused() {
        assert_eq!(
            mode(&["conn", "--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        let Mode::Conn(a) = mode(&["conn", "-h", "localhost"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.client.host.as_str(), a.count, a.hold),
            ("localhost", 1000, None)
        );
        for bad in [
            &["sub", "-q", "3"][..],
            &["sub", "-d", "0"],
            &["sub", "-w", "x"],
            &["conn", "-c", "0"],
            &["conn", "--source-ips", "0"],
            &["pub", "--threads", "0"],
            &["pub", "-V", "4"],
        ] {
            assert_eq!(
                mode(bad).unwrap_err().kind(),
                ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
