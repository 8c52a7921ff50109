//! `nanomq bench`: a load generator for comparing MQTT brokers, like emqtt-bench.
//!
//! Built on the project's own codec, with the hot path kept free of allocation: each client is
//! one task with one TCP stream, one read buffer and one write buffer; publishers batch their
//! PUBLISHes into one write, subscribers take every packet of a read at once. Payloads carry a
//! header (publisher, sequence, CLOCK_MONOTONIC send time), so loss, duplicates, reordering and
//! end-to-end latency are measured per message, also across processes.
//!
//! The result is a summary on stderr and exactly one JSON line on stdout; a progress line goes
//! to stderr every second. A client that cannot connect, or fails later, makes the exit status
//! non-zero after the report.
//!
//! # Layout
//!
//! `args` is the command line and `scenario` the named `run` scenarios (`pubsub` builds the plans
//! of `pub` and `sub`). `traffic` runs a plan: `dial` opens the connections, `publisher` and
//! `subscriber` are the client tasks over `wire`'s connection, `flow` is `run`'s window,
//! `payload` the message header, `tracker` the per-publisher sequence check, `stats` the shared
//! counters. `conn` is the idle-connection benchmark. `procstat` reads the broker's CPU and
//! memory; `report` prints the result.

mod args;
mod conn;
mod dial;
mod flow;
mod payload;
mod procstat;
mod publisher;
mod pubsub;
mod report;
mod scenario;
mod stats;
mod subscriber;
mod tracker;
mod traffic;
mod wire;

use anyhow::{bail, Context};

pub(in crate::cli) use args::BenchArgs;
use args::{ClientOpts, Mode};
use report::Report;
use traffic::TrafficPlan;

/// Runs `nanomq bench`: prints the report and fails if any client failed.
pub(in crate::cli) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (report, clients) = match args.mode {
        Mode::Pub(a) => traffic(pubsub::pub_plan(&a)?, &a.client)?,
        Mode::Sub(a) => traffic(pubsub::sub_plan(&a), &a.client)?,
        Mode::Run(a) => traffic(scenario::plan(&a)?, &a.client)?,
        Mode::Conn(a) => {
            dial::raise_fd_limit(a.count.into())?;
            let report = runtime(&a.client)?.block_on(conn::run(&a))?;
            (report, a.count.into())
        }
    };
    eprintln!("{}", report.summary());
    println!("{}", report.to_json());
    if report.failed > 0 {
        bail!(
            "{} of {clients} clients failed; first error: {}",
            report.failed,
            report.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs a `pub`, `sub` or `run` plan; returns the report and the number of clients.
fn traffic(plan: TrafficPlan, opts: &ClientOpts) -> anyhow::Result<(Report, u64)> {
    let clients = (plan.topics.len() + plan.filters.len()) as u64;
    dial::raise_fd_limit(clients)?;
    let report = runtime(opts)?.block_on(traffic::run(plan, opts))?;
    Ok((report, clients))
}

/// One thread by default (`--threads`): the load generator should leave the other cores to the
/// broker it measures.
fn runtime(opts: &ClientOpts) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match opts.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
