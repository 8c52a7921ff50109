//! Running message traffic, for `bench pub`, `bench sub` and `bench run`: connect and subscribe
//! everyone, start the measured window after the warm-up, publish until it ends, let the
//! subscribers drain, and report.
//!
//! With publishers and subscribers in one process (`run`) the loss is exact: every publisher
//! knows what it sent inside the window and how many subscribers each message is for, and the
//! subscribers drain until all of it has arrived or [`DRAIN`] has passed. A lone `sub` only
//! sees the gaps in each publisher's sequence.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use super::args::ClientOpts;
use super::dial::{open_all, ClientSpec, Dialer, Role};
use super::flow::Flow;
use super::payload::monotonic_ns;
use super::procstat::{self, ProcSample};
use super::publisher::{publish, PublishPlan, PublisherTask, DRAIN};
use super::report::{Latency, Report};
use super::stats::{progress, Stats, Window};
use super::subscriber::receive;
use crate::mqtt::QoS;
use crate::router;

/// A lone `bench sub` stops draining once nothing has arrived for this long.
const SUB_IDLE: Duration = Duration::from_millis(250);

/// Everything a traffic benchmark needs, defaults resolved.
#[derive(Debug)]
pub(super) struct TrafficPlan {
    /// `pub`, `sub` or `run`.
    pub(super) mode: &'static str,
    /// The `run` scenario's name.
    pub(super) scenario: Option<&'static str>,
    /// One topic per publisher.
    pub(super) topics: Vec<String>,
    /// One filter per subscriber.
    pub(super) filters: Vec<String>,
    /// QoS of the messages and the subscriptions.
    pub(super) qos: QoS,
    /// Payload bytes.
    pub(super) size: usize,
    /// Time between two messages of one publisher; `None` is flat out.
    pub(super) interval: Option<Duration>,
    /// QoS 1/2 window per publisher.
    pub(super) inflight: u16,
    /// Messages per publisher.
    pub(super) limit: Option<u64>,
    /// `run`'s window: messages any one subscriber may be behind; `None` for no flow control.
    pub(super) window: Option<u64>,
    /// Seconds before the measured window.
    pub(super) warmup: f64,
}

/// `pattern` with `%i` replaced by `index`.
pub(super) fn expand(pattern: &str, index: u32) -> String {
    pattern.replace("%i", &index.to_string())
}

/// Runs the traffic `plan` describes against the broker `opts` names.
pub(super) async fn run(plan: TrafficPlan, opts: &ClientOpts) -> anyhow::Result<Report> {
    let (publishers, subscribers) = (plan.topics.len(), plan.filters.len());
    let total = publishers + subscribers;
    let stats = Arc::new(Stats::new());
    let dialer = Arc::new(Dialer::new(opts, total).await?);
    let _progress = progress(stats.clone());
    let rate = opts.rate.unwrap_or(0.0);
    let spec = |role, index: usize, subscribe| ClientSpec {
        index: index as u32,
        role,
        subscribe,
    };
    let sub_specs = plan.filters.iter().enumerate();
    let sub_specs = sub_specs
        .map(|(i, f)| spec(Role::Subscriber, i, Some((f.clone(), plan.qos))))
        .collect();
    let subs = open_all(dialer.clone(), sub_specs, rate, stats.clone()).await;
    let pub_specs = (0..publishers)
        .map(|i| spec(Role::Publisher, i, None))
        .collect();
    let pubs = open_all(dialer.clone(), pub_specs, rate, stats.clone()).await;
    if let (failed @ 1.., first) = stats.failures() {
        bail!(
            "{failed} of {total} clients could not connect{} to {}; first error: {}",
            if subscribers > 0 { " or subscribe" } else { "" },
            dialer.target(),
            first.unwrap_or_default()
        );
    }
    eprintln!("bench: {total} clients connected");

    let window = Window::after(plan.warmup, opts.duration);
    let flow = plan.window.map(|w| Arc::new(Flow::new(w, subscribers)));
    let (stop, stopped) = watch::channel(false);
    let sub_tasks: Vec<JoinHandle<anyhow::Result<()>>> = subs
        .into_iter()
        .map(|client| {
            let (stats, flow) = (stats.clone(), flow.clone());
            tokio::spawn(receive(client, window, stats, flow, stopped.clone()))
        })
        .collect();
    let publish_plan = Arc::new(PublishPlan {
        qos: plan.qos,
        size: plan.size,
        interval: plan.interval,
        inflight: plan.inflight,
        limit: plan.limit,
        window,
        publishers: publishers as u32,
    });
    let pub_tasks: Vec<_> = pubs
        .into_iter()
        .map(|client| {
            let topic = plan.topics[client.spec.index as usize].clone();
            let subscribers = subscribers_of(&topic, &plan.filters);
            let task = PublisherTask {
                client,
                topic,
                subscribers,
            };
            let (plan, stats, flow) = (publish_plan.clone(), stats.clone(), flow.clone());
            tokio::spawn(publish(task, plan, stats, flow))
        })
        .collect();

    let first_sample = sample_at(opts.pid, window.start_ns).await?;
    if pub_tasks.is_empty() {
        sleep(Window::until(window.end_ns)).await;
    }
    join_all(pub_tasks, &stats).await;
    let stopped_ns = monotonic_ns().min(window.end_ns);
    let last_sample = sample_at(opts.pid, 0).await?;
    drain(&stats, publishers > 0).await;
    // Ignored error: no subscriber left to stop.
    let _ = stop.send(true);
    join_all(sub_tasks, &stats).await;
    drop(_progress);

    let mut report = report(&plan, &stats, window, stopped_ns, opts);
    if let (Some(first), Some(last)) = (first_sample, last_sample) {
        let delivered = report.received.or(report.sent).unwrap_or(0);
        let ticks = procstat::ticks_per_second()?;
        report.broker = Some(procstat::usage(first, last, ticks, delivered, None));
    }
    if let Some(flow) = &flow {
        report.extra.push(("window", json!(plan.window)));
        report.extra.push(("window_stalls", json!(flow.stalls())));
    }
    Ok(report)
}

/// The indices of the subscribers (by filter) that a message on `topic` is for.
fn subscribers_of(topic: &str, filters: &[String]) -> Vec<u32> {
    (0..)
        .zip(filters)
        .filter(|(_, f)| router::matches(f, topic))
        .map(|(i, _)| i)
        .collect()
}

/// Samples the broker at `at_ns` (at once when it has passed); nothing without `--pid`.
async fn sample_at(pid: Option<u32>, at_ns: u64) -> anyhow::Result<Option<ProcSample>> {
    let Some(pid) = pid else {
        return Ok(None);
    };
    sleep(Window::until(at_ns)).await;
    procstat::sample(pid).map(Some)
}

/// Waits for client tasks, counting each failure.
async fn join_all(tasks: Vec<JoinHandle<anyhow::Result<()>>>, stats: &Stats) {
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stats.fail(&e),
            Err(e) => stats.fail(&anyhow::anyhow!("client task failed: {e}")),
        }
    }
}

/// Lets the subscribers catch up: with the publishers in this process, until every expected
/// delivery arrived; alone, until nothing arrives for [`SUB_IDLE`]; at most [`DRAIN`].
async fn drain(stats: &Stats, publishers_here: bool) {
    let deadline = Instant::now() + DRAIN;
    let mut last = stats.received.load(Relaxed);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        if publishers_here {
            if stats.received_measured.load(Relaxed) >= stats.expected.load(Relaxed) {
                return;
            }
        } else {
            let now = stats.received.load(Relaxed);
            if now != last {
                (last, idle_since) = (now, Instant::now());
            } else if idle_since.elapsed() >= SUB_IDLE {
                return;
            }
        }
        sleep_until(Instant::now() + Duration::from_millis(10)).await;
    }
}

/// The figures `plan`'s mode can know.
fn report(
    plan: &TrafficPlan,
    stats: &Stats,
    window: Window,
    stopped_ns: u64,
    opts: &ClientOpts,
) -> Report {
    let (publishers, subscribers) = (plan.topics.len() as u64, plan.filters.len() as u64);
    let has_pubs = publishers > 0;
    let has_subs = subscribers > 0;
    let duration_s = if has_pubs {
        stopped_ns.saturating_sub(window.start_ns) as f64 / 1e9
    } else {
        opts.duration
    };
    let received = stats.received_measured.load(Relaxed);
    let reordered = stats.reordered.load(Relaxed);
    let (expected, lost) = if has_pubs {
        let expected = stats.expected.load(Relaxed);
        (expected, expected.saturating_sub(received))
    } else {
        let lost = stats.gaps.load(Relaxed).saturating_sub(reordered);
        (received + lost, lost)
    };
    let (failed, first_error) = stats.failures();
    Report {
        mode: plan.mode,
        scenario: plan.scenario,
        qos: Some(plan.qos as u8),
        size: has_pubs.then_some(plan.size),
        publishers,
        subscribers,
        connections: publishers + subscribers,
        duration_s,
        sent: has_pubs.then(|| stats.sent_measured.load(Relaxed)),
        received: has_subs.then_some(received),
        expected: has_subs.then_some(expected),
        lost: has_subs.then_some(lost),
        duplicates: has_subs.then(|| stats.duplicates.load(Relaxed)),
        reordered: has_subs.then_some(reordered),
        latency: Latency::of(&Stats::snapshot(&stats.latency)),
        connack: Latency::of(&Stats::snapshot(&stats.connack)),
        broker: None,
        failed,
        first_error,
        extra: vec![
            ("protocol", json!(opts.protocol as u8)),
            ("threads", json!(opts.threads)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_find_their_subscribers() {
        let filters = ["bench/#", "bench/1", "other/#", "bench/+"].map(String::from);
        assert_eq!(subscribers_of("bench/1", &filters), [0, 1, 3]);
        assert_eq!(subscribers_of("bench/2", &filters), [0, 3]);
        assert!(subscribers_of("nobody/listens", &filters).is_empty());
    }

    #[test]
    fn patterns_expand_every_index_marker() {
        assert_eq!(expand("bench/%i", 7), "bench/7");
        assert_eq!(expand("a/%i/b/%i", 12), "a/12/b/12");
        assert_eq!(expand("bench/#", 3), "bench/#");
    }
}
