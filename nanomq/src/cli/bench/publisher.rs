//! One publisher client: sends numbered, timestamped messages flat out or at an interval,
//! within its QoS 1/2 in-flight window and the window of each of its subscribers in `bench run`,
//! until the measured window ends or `--limit` is reached, then waits for its last
//! acknowledgements.
//!
//! Flat out it encodes as many PUBLISHes as the windows allow (up to [`BATCH_BYTES`]) into the
//! write buffer and writes them with one call. Acknowledgements are read without waiting
//! between batches, and waited for only when nothing may be sent.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use tokio::time::{sleep_until, Instant};

use super::dial::Client;
use super::flow::{Flow, StallClock};
use super::payload::{monotonic_ns, Header};
use super::stats::{Stats, Window};
use super::wire::{AckKind, BenchConn, Incoming};
use crate::mqtt::{OutgoingPublish, Properties, QoS};

/// Bytes of PUBLISHes encoded before one write, when sending flat out.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a finished publisher waits for its outstanding acknowledgements.
pub(super) const DRAIN: Duration = Duration::from_secs(2);

/// What every publisher of one benchmark sends.
#[derive(Debug)]
pub(super) struct PublishPlan {
    /// QoS of every message.
    pub(super) qos: QoS,
    /// Payload bytes, header included.
    pub(super) size: usize,
    /// Time between two messages of one publisher; `None` is flat out.
    pub(super) interval: Option<Duration>,
    /// Unacknowledged QoS 1/2 messages per publisher (before the broker's Receive Maximum).
    pub(super) inflight: u16,
    /// Messages per publisher, warm-up included.
    pub(super) limit: Option<u64>,
    /// Which messages are measured; publishing stops at its end.
    pub(super) window: Window,
    /// Number of publishers, to spread interval publishers evenly over one interval.
    pub(super) publishers: u32,
}

/// One publisher's job.
pub(super) struct PublisherTask {
    /// Its open connection.
    pub(super) client: Client,
    /// Its topic.
    pub(super) topic: String,
    /// Indices of the subscribers each message is for: its deliveries, and the lanes of
    /// `bench run`'s window it needs room in.
    pub(super) subscribers: Vec<u32>,
}

/// Runs one publisher to the end of the window (or its limit) and its drain.
pub(super) async fn publish(
    task: PublisherTask,
    plan: Arc<PublishPlan>,
    stats: Arc<Stats>,
    flow: Option<Arc<Flow>>,
) -> anyhow::Result<()> {
    let receive_maximum = task.client.connack.properties.receive_maximum;
    let mut p = Publisher {
        index: task.client.spec.index,
        conn: task.client.conn,
        outstanding: 0,
        max_outstanding: match plan.qos {
            QoS::AtMostOnce => u64::MAX,
            _ => u64::from(plan.inflight.min(receive_maximum.unwrap_or(u16::MAX))),
        },
        next_id: 0,
        seq: 0,
        measured: 0,
    };
    let result = p
        .run(
            &task.topic,
            &task.subscribers,
            &plan,
            &stats,
            flow.as_deref(),
        )
        .await;
    let fanout = task.subscribers.len() as u64;
    stats.sent_measured.fetch_add(p.measured, Relaxed);
    stats.expected.fetch_add(p.measured * fanout, Relaxed);
    p.conn.close().await;
    result
}

struct Publisher {
    index: u32,
    conn: BenchConn,
    /// QoS 1/2 messages not yet completed.
    outstanding: u64,
    max_outstanding: u64,
    next_id: u16,
    /// Sequence number of the next message.
    seq: u64,
    /// Messages sent inside the window.
    measured: u64,
}

impl Publisher {
    async fn run(
        &mut self,
        topic: &str,
        subscribers: &[u32],
        plan: &PublishPlan,
        stats: &Stats,
        flow: Option<&Flow>,
    ) -> anyhow::Result<()> {
        let template = Bytes::from(vec![0; plan.size]);
        let properties = Properties::default();
        let mut publish = OutgoingPublish {
            dup: false,
            qos: plan.qos,
            retain: false,
            topic,
            packet_id: 0,
            topic_alias: None,
            message_expiry_interval: None,
            subscription_identifiers: &[],
            properties: &properties,
            payload: &template,
        };
        let batch = (BATCH_BYTES / plan.size).max(1) as u64;
        let limit = plan.limit.unwrap_or(u64::MAX);
        let end = Instant::now() + Window::until(plan.window.end_ns);
        // Interval publishers start spread over one interval, not all at once.
        let mut next_at = plan.interval.map(|i| {
            Instant::now() + i.mul_f64(f64::from(self.index) / f64::from(plan.publishers))
        });
        let mut stall = StallClock::default();
        loop {
            self.absorb_acks()?;
            // Registered before claiming room, so a delivery in between still wakes us.
            let freed = flow.map(|f| f.freed.notified());
            if monotonic_ns() >= plan.window.end_ns || self.seq >= limit {
                break;
            }
            let due = next_at.is_none_or(|at| at <= Instant::now());
            let mut n = if due { batch } else { 0 };
            if next_at.is_some() {
                n = n.min(1);
            }
            n = n
                .min(self.max_outstanding - self.outstanding)
                .min(limit - self.seq);
            let wanted = n;
            if let Some(flow) = flow.filter(|_| n > 0) {
                n = flow.claim(subscribers, n);
            }
            if n > 0 {
                for _ in 0..n {
                    self.queue_one(&mut publish, plan);
                }
                self.conn.flush().await?;
                stats.sent.fetch_add(n, Relaxed);
                if let (Some(at), Some(interval)) = (next_at.as_mut(), plan.interval) {
                    *at += interval;
                }
                continue;
            }
            if !self.conn.nothing_queued() {
                self.conn.flush().await?;
            }
            let flow_blocked = flow.filter(|_| wanted > 0);
            let write_off_at = flow_blocked.map(|f| stall.deadline(f, subscribers));
            tokio::select! {
                () = self.conn.readable() => {}
                () = sleep_until(end) => {}
                () = sleep_until(next_at.unwrap_or(end)), if !due => {}
                () = async {
                    match freed {
                        Some(freed) => freed.await,
                        None => std::future::pending().await,
                    }
                }, if flow_blocked.is_some() => {}
                () = sleep_until(write_off_at.unwrap_or(end)), if flow_blocked.is_some() => {
                    if let Some(flow) = flow_blocked {
                        stall.expire(flow, subscribers);
                    }
                }
            }
        }
        self.drain().await
    }

    /// Encodes the next message into the write buffer.
    fn queue_one(&mut self, publish: &mut OutgoingPublish<'_>, plan: &PublishPlan) {
        if plan.qos != QoS::AtMostOnce {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            publish.packet_id = self.next_id;
            self.outstanding += 1;
        }
        let header = Header {
            publisher: self.index,
            seq: self.seq,
            sent_ns: monotonic_ns(),
        };
        if plan.window.contains(header.sent_ns) {
            self.measured += 1;
        }
        self.conn.queue_publish(publish, header);
        self.seq += 1;
    }

    /// Handles every acknowledgement that has arrived, without waiting.
    fn absorb_acks(&mut self) -> anyhow::Result<()> {
        loop {
            while let Some(incoming) = self.conn.next_incoming()? {
                self.on_incoming(incoming)?;
            }
            if !self.conn.try_read()? {
                return Ok(());
            }
        }
    }

    fn on_incoming(&mut self, incoming: Incoming) -> anyhow::Result<()> {
        match incoming {
            Incoming::Ack { reason, .. } if reason.is_error() => {
                bail!("broker refused a PUBLISH: {}", reason.describe())
            }
            Incoming::Ack {
                kind: AckKind::Ack | AckKind::Complete,
                ..
            } => self.outstanding = self.outstanding.saturating_sub(1),
            Incoming::Ack {
                kind: AckKind::Received,
                packet_id,
                ..
            } => self.conn.queue_ack(AckKind::Release, packet_id),
            Incoming::Disconnect(reason) => {
                bail!("broker closed the connection: {}", reason.describe())
            }
            // Nothing else is expected by a client that subscribes to nothing.
            Incoming::Ack { .. } | Incoming::Publish { .. } | Incoming::Other(_) => {}
        }
        Ok(())
    }

    /// Waits up to [`DRAIN`] for the acknowledgements still outstanding.
    async fn drain(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DRAIN;
        while self.outstanding > 0 {
            self.conn.flush().await?;
            tokio::select! {
                read = self.conn.read() => read?,
                () = sleep_until(deadline) => break,
            }
            while let Some(incoming) = self.conn.next_incoming()? {
                self.on_incoming(incoming)?;
            }
        }
        Ok(())
    }
}
