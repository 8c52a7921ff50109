//! The result of a benchmark: one JSON line for scripts (stdout) and a summary for people
//! (stderr). Figures a mode cannot know are `null` in the JSON and left out of the summary:
//! `bench pub` does not see what arrives, `bench sub` does not see what was sent.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::procstat::BrokerUsage;

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Latency {
    /// Median.
    pub(super) p50: f64,
    /// 99th percentile.
    pub(super) p99: f64,
    /// 99.9th percentile.
    pub(super) p999: f64,
    /// Largest value.
    pub(super) max: f64,
    /// Number of values.
    pub(super) count: u64,
}

impl Latency {
    /// The percentiles of `h`; `None` when nothing was recorded.
    pub(super) fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.5) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
            max: h.max() as f64,
            count: h.len(),
        })
    }
}

/// Everything a benchmark run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Report {
    /// `run`, `pub`, `sub` or `conn`.
    pub(super) mode: &'static str,
    /// The `run` scenario.
    pub(super) scenario: Option<&'static str>,
    /// QoS of the traffic (`None` for `conn`).
    pub(super) qos: Option<u8>,
    /// Payload bytes (`None` where the tool did not choose them).
    pub(super) size: Option<usize>,
    /// Publisher clients.
    pub(super) publishers: u64,
    /// Subscriber clients.
    pub(super) subscribers: u64,
    /// Connections opened.
    pub(super) connections: u64,
    /// Seconds the rates are per: the measured window, or the hold time for `conn`.
    pub(super) duration_s: f64,
    /// Measured messages sent (`None` for `sub` and `conn`).
    pub(super) sent: Option<u64>,
    /// Measured messages received without duplicates (`None` for `pub` and `conn`).
    pub(super) received: Option<u64>,
    /// Deliveries due for the measured messages.
    pub(super) expected: Option<u64>,
    /// Deliveries that never arrived.
    pub(super) lost: Option<u64>,
    /// Deliveries received more than once.
    pub(super) duplicates: Option<u64>,
    /// Deliveries that overtook an earlier message of the same publisher.
    pub(super) reordered: Option<u64>,
    /// End-to-end latency of the measured messages.
    pub(super) latency: Option<Latency>,
    /// TCP connect to CONNACK.
    pub(super) connack: Option<Latency>,
    /// The broker's CPU and memory (`--pid`).
    pub(super) broker: Option<BrokerUsage>,
    /// Clients that could not connect, or failed later.
    pub(super) failed: u64,
    /// The first of those failures.
    pub(super) first_error: Option<String>,
    /// Mode-specific figures, added to the JSON as they are.
    pub(super) extra: Vec<(&'static str, Value)>,
}

impl Report {
    /// The JSON result: one object, keys as documented in the README.
    pub(super) fn to_json(&self) -> Value {
        let latency = |l: &Option<Latency>, p999: bool| match l {
            None => Value::Null,
            Some(l) if p999 => {
                json!({"p50": l.p50, "p99": l.p99, "p999": l.p999, "max": l.max, "count": l.count})
            }
            Some(l) => json!({"p50": l.p50, "p99": l.p99, "max": l.max, "count": l.count}),
        };
        let broker = self.broker.map_or(Value::Null, |b| {
            json!({
                "cpu_s": b.cpu_s,
                "cpu_us_per_msg": b.cpu_us_per_msg,
                "rss_start_kib": b.rss_start_kib,
                "rss_end_kib": b.rss_end_kib,
                "rss_peak_kib": b.rss_peak_kib,
                "rss_per_conn_bytes": b.rss_per_conn_bytes,
            })
        });
        let mut v = json!({
            "mode": self.mode,
            "scenario": self.scenario,
            "qos": self.qos,
            "size": self.size,
            "publishers": self.publishers,
            "subscribers": self.subscribers,
            "connections": self.connections,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "received": self.received,
            "sent_per_s": self.sent.map(|n| per_second(n, self.duration_s)),
            "received_per_s": self.received.map(|n| per_second(n, self.duration_s)),
            "expected": self.expected,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "latency_us": latency(&self.latency, true),
            "connack_us": latency(&self.connack, false),
            "broker": broker,
            "failed": self.failed,
            "first_error": self.first_error,
        });
        for (key, value) in &self.extra {
            v[*key] = value.clone();
        }
        v
    }

    /// A few lines for a person.
    pub(super) fn summary(&self) -> String {
        let mut lines = vec![format!(
            "bench {}{}: {} publishers, {} subscribers, {} connections, {:.1} s measured{}",
            self.mode,
            self.scenario.map(|s| format!(" {s}")).unwrap_or_default(),
            self.publishers,
            self.subscribers,
            self.connections,
            self.duration_s,
            match (self.qos, self.size) {
                (Some(q), Some(s)) => format!(", QoS {q}, {s} bytes"),
                (Some(q), None) => format!(", QoS {q}"),
                _ => String::new(),
            }
        )];
        if let Some(sent) = self.sent {
            let rate = human_rate(per_second(sent, self.duration_s));
            lines.push(format!("  sent      {sent} ({rate})"));
        }
        if let Some(received) = self.received {
            let rate = human_rate(per_second(received, self.duration_s));
            let mut line = format!("  received  {received} ({rate})");
            if let (Some(expected), Some(lost)) = (self.expected, self.lost) {
                line += &format!(", expected {expected}, lost {lost}");
            }
            if let (Some(d), Some(r)) = (self.duplicates, self.reordered) {
                line += &format!(", duplicates {d}, reordered {r}");
            }
            lines.push(line);
        }
        if let Some(l) = &self.latency {
            lines.push(format!("  latency   {}", percentiles(l)));
        }
        if let Some(l) = &self.connack {
            lines.push(format!("  connack   {}", percentiles(l)));
        }
        if let Some(b) = &self.broker {
            let mut line = format!("  broker    {:.2} CPU s", b.cpu_s);
            if let Some(us) = b.cpu_us_per_msg {
                line += &format!(" ({us:.2} µs/msg)");
            }
            line += &format!(
                ", RSS {} -> {} KiB (peak {} KiB)",
                b.rss_start_kib, b.rss_end_kib, b.rss_peak_kib
            );
            if let Some(per_conn) = b.rss_per_conn_bytes {
                line += &format!(", {per_conn:.0} bytes/connection");
            }
            lines.push(line);
        }
        lines.join("\n")
    }
}

/// `n` per second over `secs`; 0 for an empty window.
pub(super) fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// A rate with a k/M suffix: `950/s`, `12.3k/s`, `1.25M/s`.
pub(super) fn human_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}

/// A duration in microseconds in the unit that reads best: `850 µs`, `12.5 ms`, `1.20 s`.
pub(super) fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e4 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn percentiles(l: &Latency) -> String {
    format!(
        "p50 {}, p99 {}, p99.9 {}, max {} ({} samples)",
        human_us(l.p50),
        human_us(l.p99),
        human_us(l.p999),
        human_us(l.max),
        l.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(per_second(500, 2.0), 250.0);
        assert_eq!(per_second(500, 0.0), 0.0);
        assert_eq!(human_rate(950.4), "950/s");
        assert_eq!(human_rate(12_345.0), "12.3k/s");
        assert_eq!(human_rate(1_250_000.0), "1.25M/s");
        assert_eq!(human_us(850.0), "850 µs");
        assert_eq!(human_us(1_500.0), "1.50 ms");
        assert_eq!(human_us(12_500.0), "12.5 ms");
        assert_eq!(human_us(1_200_000.0), "1.20 s");
    }

    #[test]
    fn percentiles_of_a_histogram() {
        let mut h = Histogram::<u64>::new_with_max(60_000_000, 3).unwrap();
        assert_eq!(Latency::of(&h), None);
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(
            (l.p50, l.p99, l.p999, l.max, l.count),
            (500.0, 990.0, 999.0, 1000.0, 1000)
        );
    }

    #[test]
    fn json_has_every_documented_key() {
        let report = Report {
            mode: "run",
            scenario: Some("fan-in"),
            qos: Some(0),
            size: Some(64),
            publishers: 8,
            subscribers: 1,
            connections: 9,
            duration_s: 2.0,
            sent: Some(1000),
            received: Some(998),
            expected: Some(1000),
            lost: Some(2),
            duplicates: Some(0),
            reordered: Some(1),
            latency: Some(Latency {
                p50: 100.0,
                p99: 200.0,
                p999: 300.0,
                max: 400.0,
                count: 998,
            }),
            extra: vec![("window", json!(1000))],
            ..Report::default()
        };
        let v = report.to_json();
        for key in [
            "mode",
            "scenario",
            "qos",
            "size",
            "publishers",
            "subscribers",
            "connections",
            "duration_s",
            "sent",
            "received",
            "sent_per_s",
            "received_per_s",
            "expected",
            "lost",
            "duplicates",
            "reordered",
            "latency_us",
            "connack_us",
            "broker",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["sent_per_s"], 500.0);
        assert_eq!(v["received_per_s"], 499.0);
        assert_eq!(v["latency_us"]["p999"], 300.0);
        assert_eq!(
            (v["connack_us"].clone(), v["broker"].clone()),
            (Value::Null, Value::Null)
        );
        assert_eq!(v["window"], 1000);
        let line = serde_json::to_string(&v).unwrap();
        assert!(!line.contains('\n'));
        let summary = report.summary();
        assert!(
            summary.contains("bench run fan-in: 8 publishers"),
            "{summary}"
        );
        assert!(
            summary.contains("received  998 (499/s), expected 1000, lost 2"),
            "{summary}"
        );
        assert!(summary.contains("p50 100 µs, p99 200 µs"), "{summary}");
    }
}
