//! `bench pub` and `bench sub`: the two halves of a benchmark in separate processes (or
//! against other tools). The payload header's CLOCK_MONOTONIC timestamp lets `sub` measure
//! latency across processes; loss is what the gaps in each publisher's sequence show.

use super::args::{PubArgs, SubArgs};
use super::scenario::{publishing, PUB_DEFAULTS};
use super::traffic::{expand, TrafficPlan};

/// The plan of `bench pub`: `--count` publishers on `--topic`.
pub(super) fn pub_plan(args: &PubArgs) -> anyhow::Result<TrafficPlan> {
    let topics = (0..args.count).map(|i| expand(&args.topic, i)).collect();
    publishing("pub", &args.publish, PUB_DEFAULTS, topics)
}

/// The plan of `bench sub`: `--count` subscribers on `--topic`.
pub(super) fn sub_plan(args: &SubArgs) -> TrafficPlan {
    TrafficPlan {
        mode: "sub",
        scenario: None,
        topics: Vec::new(),
        filters: (0..args.count).map(|i| expand(&args.topic, i)).collect(),
        qos: args.qos,
        size: 0,
        interval: None,
        inflight: 0,
        limit: None,
        window: None,
        warmup: args.warmup,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::super::args::{Cli, Command};
    use super::super::args::Mode;
    use super::*;
    use crate::mqtt::QoS;

    fn mode(args: &[&str]) -> Mode {
        let argv = ["nanomq", "bench"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Bench(b)) => b.mode,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pub_and_sub_plans() {
        let Mode::Pub(a) = mode(&["pub", "-c", "3", "-t", "t/%i", "-q", "1", "-I", "10"]) else {
            panic!()
        };
        let p = pub_plan(&a).unwrap();
        assert_eq!(p.topics, ["t/0", "t/1", "t/2"]);
        assert!(p.filters.is_empty() && p.window.is_none());
        assert_eq!((p.qos, p.size), (QoS::AtLeastOnce, 64));
        assert_eq!(p.interval, Some(std::time::Duration::from_millis(10)));
        let Mode::Pub(a) = mode(&["pub", "-s", "4"]) else {
            panic!()
        };
        assert!(pub_plan(&a).is_err());
        let Mode::Sub(a) = mode(&["sub", "-c", "2", "-q", "2"]) else {
            panic!()
        };
        let p = sub_plan(&a);
        assert_eq!(p.filters, ["bench/#", "bench/#"]);
        assert!(p.topics.is_empty());
        assert_eq!(p.qos, QoS::ExactlyOnce);
    }
}
