//! One subscriber client: parses every complete packet of each read, acknowledges QoS 1/2 in one
//! write per read, tracks every publisher's sequence, and adds latency and counts to the shared
//! [`Stats`] once per read.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::bail;
use tokio::sync::watch;

use super::dial::Client;
use super::flow::Flow;
use super::payload::{monotonic_ns, Header};
use super::stats::{Stats, Window};
use super::tracker::{Arrival, SeqTracker};
use super::wire::{AckKind, BenchConn, Incoming};
use crate::mqtt::QoS;

/// Receives until `stop` turns true, then disconnects.
pub(super) async fn receive(
    client: Client,
    window: Window,
    stats: Arc<Stats>,
    flow: Option<Arc<Flow>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut s = Subscriber {
        index: client.spec.index,
        conn: client.conn,
        streams: HashMap::new(),
        latencies_us: Vec::with_capacity(1024),
    };
    let result = async {
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                read = s.conn.read() => read?,
            }
            s.on_read(window, &stats, flow.as_deref()).await?;
        }
    }
    .await;
    s.conn.close().await;
    result
}

struct Subscriber {
    /// Its lane in `bench run`'s window.
    index: u32,
    conn: BenchConn,
    /// One sequence tracker per publisher index.
    streams: HashMap<u32, SeqTracker>,
    /// Latencies of the current read, recorded together; reused, so no allocation per read.
    latencies_us: Vec<u64>,
}

/// What one read brought, added to the shared counters at once.
#[derive(Debug, Default)]
struct Batch {
    received: u64,
    received_measured: u64,
    duplicates: u64,
    reordered: u64,
    gaps: u64,
    /// Deliveries that arrived or are known lost, for the flow window.
    settled: u64,
}

impl Subscriber {
    /// Handles every whole packet buffered, acknowledges, and publishes the counts.
    async fn on_read(
        &mut self,
        window: Window,
        stats: &Stats,
        flow: Option<&Flow>,
    ) -> anyhow::Result<()> {
        let now_ns = monotonic_ns();
        let mut batch = Batch::default();
        while let Some(incoming) = self.conn.next_incoming()? {
            match incoming {
                Incoming::Publish {
                    qos,
                    packet_id,
                    header,
                } => {
                    match qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => self.conn.queue_ack(AckKind::Ack, packet_id),
                        QoS::ExactlyOnce => self.conn.queue_ack(AckKind::Received, packet_id),
                    }
                    batch.received += 1;
                    if let Some(header) = header {
                        self.on_message(header, now_ns, window, &mut batch);
                    }
                }
                Incoming::Ack {
                    kind: AckKind::Release,
                    packet_id,
                    ..
                } => self.conn.queue_ack(AckKind::Complete, packet_id),
                Incoming::Disconnect(reason) => {
                    bail!("broker closed the connection: {}", reason.describe())
                }
                Incoming::Ack { .. } | Incoming::Other(_) => {}
            }
        }
        if !self.conn.nothing_queued() {
            self.conn.flush().await?;
        }
        stats.received.fetch_add(batch.received, Relaxed);
        stats
            .received_measured
            .fetch_add(batch.received_measured, Relaxed);
        stats.duplicates.fetch_add(batch.duplicates, Relaxed);
        stats.reordered.fetch_add(batch.reordered, Relaxed);
        stats.gaps.fetch_add(batch.gaps, Relaxed);
        if !self.latencies_us.is_empty() {
            Stats::record(&stats.latency, &self.latencies_us);
            self.latencies_us.clear();
        }
        if let Some(flow) = flow {
            flow.settle(self.index, batch.settled);
        }
        Ok(())
    }

    /// Classifies one of our messages. Only messages sent inside the window are measured; the
    /// flow window counts them all.
    fn on_message(&mut self, header: Header, now_ns: u64, window: Window, batch: &mut Batch) {
        let arrival = self
            .streams
            .entry(header.publisher)
            .or_default()
            .on_seq(header.seq);
        let measured = window.contains(header.sent_ns);
        match arrival {
            Arrival::Duplicate => {
                batch.duplicates += u64::from(measured);
                return;
            }
            // Its room in the window was returned when the gap was seen.
            Arrival::Late => batch.reordered += u64::from(measured),
            Arrival::Gap(missing) => {
                batch.settled += missing + 1;
                batch.gaps += if measured { missing } else { 0 };
            }
            Arrival::InOrder => batch.settled += 1,
        }
        if measured {
            batch.received_measured += 1;
            self.latencies_us
                .push(now_ns.saturating_sub(header.sent_ns) / 1000);
        }
    }
}
