//! `bench conn`: open `--count` connections at `--rate`, then hold them idle. Measures CONNACK
//! latency and, with `--pid`, the broker's memory per idle connection: RSS before the first
//! connect and [`SETTLE`] after the last CONNACK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;

use super::args::ConnArgs;
use super::dial::{open_all, ClientSpec, Dialer, Role};
use super::procstat;
use super::report::{Latency, Report};
use super::stats::{progress, Stats};
use super::wire::{BenchConn, Incoming};
use crate::mqtt::Packet;

/// Default `--rate` of `bench conn`, connections per second.
const DEFAULT_RATE: f64 = 1000.0;

/// Time for the broker to finish setting up the last connections before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Runs `bench conn`.
pub(super) async fn run(args: &ConnArgs) -> anyhow::Result<Report> {
    let opts = &args.client;
    let stats = Arc::new(Stats::new());
    let dialer = Arc::new(Dialer::new(opts, args.count as usize).await?);
    let _progress = progress(stats.clone());
    let ticks = opts.pid.map(|_| procstat::ticks_per_second()).transpose()?;
    let before = opts.pid.map(procstat::sample).transpose()?;

    let started = Instant::now();
    let specs = (0..args.count).map(|index| ClientSpec {
        index,
        role: Role::Idle,
        subscribe: None,
    });
    let clients = open_all(
        dialer,
        specs.collect(),
        opts.rate.unwrap_or(DEFAULT_RATE),
        stats.clone(),
    )
    .await;
    let connect_s = started.elapsed().as_secs_f64();
    let opened = clients.len() as u64;
    eprintln!(
        "bench: {opened} of {} connections up in {connect_s:.1} s",
        args.count
    );

    let (stop, stopped) = watch::channel(false);
    let holders: Vec<JoinHandle<anyhow::Result<()>>> = clients
        .into_iter()
        .map(|c| tokio::spawn(hold(c.conn, opts.keepalive, stopped.clone())))
        .collect();
    let hold_s = args.hold.unwrap_or(opts.duration);
    sleep(SETTLE).await;
    let after = opts.pid.map(procstat::sample).transpose()?;
    sleep(Duration::from_secs_f64(hold_s).saturating_sub(SETTLE)).await;
    // Ignored error: every holder has already failed.
    let _ = stop.send(true);
    for holder in holders {
        match holder.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stats.fail(&e),
            Err(e) => stats.fail(&anyhow::anyhow!("connection task failed: {e}")),
        }
    }
    drop(_progress);

    let (failed, first_error) = stats.failures();
    let broker = match (before, after, ticks) {
        (Some(b), Some(a), Some(t)) => Some(procstat::usage(b, a, t, 0, Some(opened))),
        _ => None,
    };
    Ok(Report {
        mode: "conn",
        connections: opened,
        duration_s: hold_s,
        connack: Latency::of(&Stats::snapshot(&stats.connack)),
        broker,
        failed,
        first_error,
        extra: vec![
            ("requested", json!(args.count)),
            ("connect_s", json!(connect_s)),
            ("protocol", json!(opts.protocol as u8)),
        ],
        ..Report::default()
    })
}

/// Keeps one connection open until `stop`: answers nothing, pings every `keepalive` seconds
/// when that is not 0, and fails if the broker closes it.
async fn hold(
    mut conn: BenchConn,
    keepalive: u16,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ping_every = Duration::from_secs(keepalive.into());
    let result = async {
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                read = conn.read() => read?,
                () = sleep(ping_every), if keepalive > 0 => {
                    conn.queue(&Packet::PingReq);
                    conn.flush().await?;
                }
            }
            while let Some(incoming) = conn.next_incoming()? {
                if let Incoming::Disconnect(reason) = incoming {
                    bail!("broker closed an idle connection: {}", reason.describe());
                }
            }
        }
    }
    .await;
    conn.close().await;
    result
}
