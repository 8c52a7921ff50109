//! `bench run`'s named scenarios: each a set of defaults, which the command-line options
//! override one by one. All of them: 64-byte payloads unless noted, 10 s measured after a 2 s
//! warm-up.

use std::time::Duration;

use clap::ValueEnum;

use super::args::{PublishOpts, RunArgs};
use super::payload::check_size;
use super::traffic::{expand, TrafficPlan};
use crate::mqtt::QoS;

/// A named traffic pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(in crate::cli) enum Scenario {
    /// 8 publishers on bench/%i -> 1 subscriber on bench/#, QoS 0, window 1000 messages.
    #[value(name = "fan-in")]
    FanIn,
    /// fan-in at QoS 1 (publish and subscribe), at most --inflight (100) unacknowledged per
    /// publisher; loss is exact.
    #[value(name = "fan-in-qos1")]
    FanInQos1,
    /// 1 publisher -> 100 subscribers on bench/fanout, QoS 0, window 1000 messages: the
    /// slowest subscriber at most 1000 behind.
    #[value(name = "fan-out")]
    FanOut,
    /// 1000 publishers on bench/pair/%i, each read by its own subscriber; 16 KiB payloads, one
    /// message per publisher per second: latency under many connections.
    #[value(name = "pairs")]
    Pairs,
}

/// What a scenario (or `bench pub`) does unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Defaults {
    publishers: u32,
    subscribers: u32,
    topic: &'static str,
    filter: &'static str,
    qos: QoS,
    size: usize,
    interval_ms: u64,
    window: u64,
}

/// `bench pub`'s defaults: 64 bytes at QoS 0, flat out.
pub(super) const PUB_DEFAULTS: Defaults = Defaults {
    publishers: 1,
    subscribers: 0,
    topic: "bench/%i",
    filter: "bench/#",
    qos: QoS::AtMostOnce,
    size: 64,
    interval_ms: 0,
    window: 0,
};

impl Scenario {
    /// Its name on the command line and in the JSON.
    pub(super) fn name(self) -> &'static str {
        match self {
            Scenario::FanIn => "fan-in",
            Scenario::FanInQos1 => "fan-in-qos1",
            Scenario::FanOut => "fan-out",
            Scenario::Pairs => "pairs",
        }
    }

    fn defaults(self) -> Defaults {
        let fan_in = Defaults {
            publishers: 8,
            subscribers: 1,
            topic: "bench/%i",
            filter: "bench/#",
            window: 1000,
            ..PUB_DEFAULTS
        };
        match self {
            Scenario::FanIn => fan_in,
            Scenario::FanInQos1 => Defaults {
                qos: QoS::AtLeastOnce,
                ..fan_in
            },
            Scenario::FanOut => Defaults {
                publishers: 1,
                subscribers: 100,
                topic: "bench/fanout",
                filter: "bench/fanout",
                ..fan_in
            },
            Scenario::Pairs => Defaults {
                publishers: 1000,
                subscribers: 1000,
                topic: "bench/pair/%i",
                filter: "bench/pair/%i",
                size: 16 * 1024,
                interval_ms: 1000,
                ..fan_in
            },
        }
    }
}

/// The plan for `bench run`: the scenario's defaults under the options given.
pub(super) fn plan(args: &RunArgs) -> anyhow::Result<TrafficPlan> {
    let d = args.scenario.defaults();
    let publishers = args.publishers.unwrap_or(d.publishers);
    let subscribers = args.subscribers.unwrap_or(d.subscribers);
    let topic = args.topic.as_deref().unwrap_or(d.topic);
    let filter = args.filter.as_deref().unwrap_or(d.filter);
    let mut plan = publishing(
        "run",
        &args.publish,
        d,
        (0..publishers).map(|i| expand(topic, i)).collect(),
    )?;
    plan.scenario = Some(args.scenario.name());
    plan.filters = (0..subscribers).map(|i| expand(filter, i)).collect();
    plan.window = Some(args.window.unwrap_or(d.window));
    Ok(plan)
}

/// A plan for `topics`' publishers, with `opts` over `defaults`; no subscribers, no window.
pub(super) fn publishing(
    mode: &'static str,
    opts: &PublishOpts,
    defaults: Defaults,
    topics: Vec<String>,
) -> anyhow::Result<TrafficPlan> {
    let size = opts.size.unwrap_or(defaults.size);
    check_size(size)?;
    let interval_ms = opts.interval_ms.unwrap_or(defaults.interval_ms);
    Ok(TrafficPlan {
        mode,
        scenario: None,
        topics,
        filters: Vec::new(),
        qos: opts.qos.unwrap_or(defaults.qos),
        size,
        interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
        inflight: opts.inflight,
        limit: opts.limit,
        window: None,
        warmup: opts.warmup,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::super::args::{Cli, Command};
    use super::super::args::Mode;
    use super::*;

    fn run_plan(args: &[&str]) -> anyhow::Result<TrafficPlan> {
        let argv = ["nanomq", "bench", "run"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Bench(b)) => match b.mode {
                Mode::Run(a) => plan(&a),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scenario_defaults() {
        let p = run_plan(&["--scenario", "fan-in"]).unwrap();
        assert_eq!(
            p.topics,
            (0..8).map(|i| format!("bench/{i}")).collect::<Vec<_>>()
        );
        assert_eq!(p.filters, ["bench/#"]);
        assert_eq!(
            (p.qos, p.size, p.window, p.interval),
            (QoS::AtMostOnce, 64, Some(1000), None)
        );
        assert_eq!((p.scenario, p.warmup), (Some("fan-in"), 2.0));
        let p = run_plan(&["--scenario", "fan-in-qos1"]).unwrap();
        assert_eq!(
            (p.qos, p.inflight, p.topics.len()),
            (QoS::AtLeastOnce, 100, 8)
        );
        let p = run_plan(&["--scenario", "fan-out"]).unwrap();
        assert_eq!((p.topics.len(), p.filters.len()), (1, 100));
        assert!(p.filters.iter().all(|f| f == "bench/fanout"));
        let p = run_plan(&["--scenario", "pairs"]).unwrap();
        assert_eq!(
            (p.topics.len(), p.filters.len(), p.size),
            (1000, 1000, 16384)
        );
        assert_eq!(
            (p.topics[7].as_str(), p.filters[7].as_str()),
            ("bench/pair/7", "bench/pair/7")
        );
        assert_eq!(p.interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn options_override_the_scenario() {
        let p = run_plan(&[
            "--scenario",
            "pairs",
            "-P",
            "3",
            "-S",
            "2",
            "-s",
            "100",
            "-I",
            "0",
            "-q",
            "2",
            "--window",
            "7",
            "-w",
            "0",
            "--filter",
            "x/%i",
            "-t",
            "y/%i",
        ])
        .unwrap();
        assert_eq!(p.topics, ["y/0", "y/1", "y/2"]);
        assert_eq!(p.filters, ["x/0", "x/1"]);
        assert_eq!((p.size, p.interval, p.qos), (100, None, QoS::ExactlyOnce));
        assert_eq!((p.window, p.warmup), (Some(7), 0.0));
        let err = run_plan(&["--scenario", "fan-in", "-s", "8"]).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
