//! The writer thread: takes every pending change, applies them in one transaction, commits,
//! and tells the waiting connections (group commit).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::schema::{
    decode_message, encode_ids, encode_message, encode_publish, expiry_ms, instant_of,
};
use super::{CachedForward, Change, OpenOptions, Shared, Usage};
use crate::config::SyncMode;
use crate::mqtt::ProtocolVersion;
use crate::session::StoreEvent;

/// Wait before retrying a commit that failed (a full disk may get room).
const RETRY: Duration = Duration::from_secs(1);
/// Attempts at the last commit when closing, before giving up on it.
const CLOSING_ATTEMPTS: u32 = 3;

/// Runs until [`super::Store::close`]: see the module documentation of `store`.
pub(super) fn run(shared: Arc<Shared>, mut conn: Connection, path: PathBuf, options: OpenOptions) {
    let window = Duration::from_millis(shared.config.batch_window_ms);
    let immediate = shared.config.sync == SyncMode::Always;
    let started = Instant::now();
    let mut last_commit = Instant::now();
    loop {
        (options.beat)();
        if options
            .stall_after
            .is_some_and(|after| started.elapsed() >= after)
        {
            tracing::warn!("test hook NANOMQ_TEST_STALL: the state database writer stalls");
            loop {
                std::thread::park();
            }
        }
        let mut p = shared.pending();
        if p.changes.is_empty() && !p.closing {
            p = shared
                .work
                .wait_timeout(p, options.beat_every)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if p.changes.is_empty() && !p.closing {
                continue;
            }
        }
        if !immediate && !p.closing {
            // Group the window's changes into one commit.
            let due = last_commit + window;
            let now = Instant::now();
            if now < due {
                drop(p);
                std::thread::sleep(due - now);
                p = shared.pending();
            }
        }
        // No group of changes that must commit together is half appended now.
        drop(p);
        let units = shared.units.write().unwrap_or_else(|e| e.into_inner());
        let mut p = shared.pending();
        let changes = std::mem::take(&mut p.changes);
        let last = p.last;
        let closing = p.closing;
        drop(p);
        drop(units);
        let mut attempts = 0;
        let freed = loop {
            match commit(&mut conn, &changes) {
                Ok(freed) => break Some(freed),
                Err(e) => {
                    attempts += 1;
                    tracing::error!(
                        path = %path.display(),
                        changes = changes.len(),
                        attempts,
                        "cannot write the state database, retrying: {e}"
                    );
                    if closing && attempts >= CLOSING_ATTEMPTS {
                        break None;
                    }
                    std::thread::sleep(RETRY);
                }
            }
        };
        last_commit = Instant::now();
        let Some(freed) = freed else {
            tracing::error!("state database: {} changes not written", changes.len());
            return;
        };
        answer_reads(&conn, &path, changes);
        for (client, usage) in freed {
            shared.released(&client, usage);
        }
        shared.committed(last);
        if closing && shared.pending().changes.is_empty() {
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(path = %path.display(), "cannot checkpoint the state database: {e}");
            }
            tracing::debug!(path = %path.display(), "state database closed");
            return;
        }
    }
}

/// Applies `changes` in one transaction. Returns the stored usage freed per client.
fn commit(conn: &mut Connection, changes: &[Change]) -> rusqlite::Result<Vec<(Arc<str>, Usage)>> {
    let tx = conn.transaction()?;
    // A bridge row appended and removed within this commit never needs to reach the disk.
    let removed: HashSet<u64> = changes
        .iter()
        .filter_map(|c| match c {
            Change::BridgeRemove { row } => Some(*row),
            _ => None,
        })
        .collect();
    let mut batch = Batch {
        tx: &tx,
        inserted: HashSet::new(),
        freed: Vec::new(),
        bridge_removed: removed,
        bridge_skipped: HashSet::new(),
    };
    for change in changes {
        batch.apply(change)?;
    }
    let freed = std::mem::take(&mut batch.freed);
    drop(batch);
    tx.commit()?;
    Ok(freed)
}

/// One transaction's work.
struct Batch<'t> {
    tx: &'t Transaction<'t>,
    /// `messages` rows written in this transaction.
    inserted: HashSet<u64>,
    freed: Vec<(Arc<str>, Usage)>,
    /// Bridge rows this commit removes.
    bridge_removed: HashSet<u64>,
    /// Bridge rows appended and removed in this commit: neither is written.
    bridge_skipped: HashSet<u64>,
}

impl Batch<'_> {
    fn apply(&mut self, change: &Change) -> rusqlite::Result<()> {
        let tx = self.tx;
        match change {
            Change::Retain {
                topic,
                message: Some(m),
            } => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO retained (topic, packet, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&**topic, encode_message(m), expiry_ms(m.expires_at)])?;
            }
            Change::Retain {
                topic,
                message: None,
            } => {
                tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
                    .execute([&**topic])?;
            }
            Change::PutSession {
                client,
                expiry,
                owner,
            } => {
                tx.prepare_cached(
                    "INSERT INTO sessions (client_id, expiry, owner, detached_at) \
                     VALUES (?1, ?2, ?3, NULL) ON CONFLICT (client_id) DO UPDATE SET \
                     expiry = excluded.expiry, owner = excluded.owner, detached_at = NULL",
                )?
                .execute(params![&**client, expiry, owner.as_deref()])?;
            }
            Change::Detached {
                client,
                expiry,
                at_ms,
            } => {
                tx.prepare_cached(
                    "UPDATE sessions SET expiry = ?2, detached_at = ?3 WHERE client_id = ?1",
                )?
                .execute(params![&**client, expiry, at_ms])?;
            }
            Change::EndSession { client } => self.end_session(client)?,
            Change::Subscribe {
                client,
                filter,
                entry,
            } => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO subscriptions (client_id, filter, options, identifier) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    &**client,
                    &**filter,
                    entry.options.to_byte(ProtocolVersion::V5),
                    entry.identifier
                ])?;
            }
            Change::Unsubscribe { client, filter } => {
                tx.prepare_cached(
                    "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2",
                )?
                .execute(params![&**client, &**filter])?;
            }
            Change::Enqueue {
                client,
                message,
                id,
                qos,
                retain,
                subscription_identifiers,
                bytes,
            } => {
                if self.inserted.insert(*id) {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO messages (id, packet, expires_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        *id as i64,
                        encode_message(message),
                        expiry_ms(message.expires_at)
                    ])?;
                }
                tx.prepare_cached(
                    "INSERT INTO queue (client_id, msg_id, qos, retain, subscription_ids, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    &**client,
                    *id as i64,
                    *qos as u8,
                    retain,
                    encode_ids(subscription_identifiers),
                    *bytes as i64
                ])?;
            }
            Change::Event { client, event } => self.event(client, *event)?,
            Change::BridgeAppend {
                bridge,
                row,
                topic,
                qos,
                retain,
                message,
                accepted_ms,
            } => {
                if self.bridge_removed.contains(row) {
                    self.bridge_skipped.insert(*row);
                } else {
                    tx.prepare_cached(
                        "INSERT INTO bridge_cache \
                         (row, bridge, packet, expires_at, accepted_at, bytes) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        *row as i64,
                        &**bridge,
                        encode_publish(topic, *qos, *retain, message),
                        expiry_ms(message.expires_at),
                        accepted_ms,
                        (topic.len() + message.payload.len()) as i64
                    ])?;
                }
            }
            Change::BridgeRemove { row } => {
                if !self.bridge_skipped.contains(row) {
                    tx.prepare_cached("DELETE FROM bridge_cache WHERE row = ?1")?
                        .execute([*row as i64])?;
                }
            }
            Change::BridgeForget { bridge } => {
                tx.prepare_cached("DELETE FROM bridge_cache WHERE bridge = ?1")?
                    .execute([&**bridge])?;
            }
            // Answered after the commit (see `answer_reads`).
            Change::BridgeRead { .. } => {}
        }
        Ok(())
    }

    fn event(&mut self, client: &Arc<str>, event: StoreEvent) -> rusqlite::Result<()> {
        let tx = self.tx;
        match event {
            StoreEvent::Sent { message, packet_id } => {
                tx.prepare_cached(
                    "UPDATE queue SET packet_id = ?3 WHERE seq = (SELECT seq FROM queue \
                     WHERE client_id = ?1 AND msg_id = ?2 AND packet_id IS NULL ORDER BY seq LIMIT 1)",
                )?
                .execute(params![&**client, message as i64, packet_id])?;
            }
            StoreEvent::Released { packet_id } => {
                tx.prepare_cached(
                    "UPDATE queue SET released = 1 WHERE client_id = ?1 AND packet_id = ?2",
                )?
                .execute(params![&**client, packet_id])?;
            }
            StoreEvent::Settled { message, packet_id } => {
                let mut bytes = None;
                if let Some(packet_id) = packet_id {
                    bytes = tx
                        .prepare_cached(
                            "DELETE FROM queue WHERE client_id = ?1 AND msg_id = ?2 \
                             AND packet_id = ?3 RETURNING bytes",
                        )?
                        .query_row(params![&**client, message as i64, packet_id], |r| {
                            r.get::<_, i64>(0)
                        })
                        .optional()?;
                }
                if bytes.is_none() {
                    bytes = tx
                        .prepare_cached(
                            "DELETE FROM queue WHERE seq = (SELECT seq FROM queue \
                             WHERE client_id = ?1 AND msg_id = ?2 ORDER BY seq LIMIT 1) \
                             RETURNING bytes",
                        )?
                        .query_row(params![&**client, message as i64], |r| r.get::<_, i64>(0))
                        .optional()?;
                }
                if let Some(bytes) = bytes {
                    self.freed.push((
                        client.clone(),
                        Usage {
                            messages: 1,
                            bytes: bytes as u64,
                        },
                    ));
                    self.forget_message(message)?;
                }
            }
            StoreEvent::InboundAdded(packet_id) => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?1, ?2)",
                )?
                .execute(params![&**client, packet_id])?;
            }
            StoreEvent::InboundReleased(packet_id) => {
                tx.prepare_cached(
                    "DELETE FROM inbound_qos2 WHERE client_id = ?1 AND packet_id = ?2",
                )?
                .execute(params![&**client, packet_id])?;
            }
        }
        Ok(())
    }

    /// Deletes a session with its subscriptions, queue and inbound packet ids.
    fn end_session(&mut self, client: &Arc<str>) -> rusqlite::Result<()> {
        let tx = self.tx;
        let mut freed = Usage::default();
        let mut messages = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM queue WHERE client_id = ?1 RETURNING msg_id, bytes")?;
            let mut rows = stmt.query([&**client])?;
            while let Some(r) = rows.next()? {
                messages.push(r.get::<_, i64>(0)? as u64);
                freed.messages += 1;
                freed.bytes += r.get::<_, i64>(1)? as u64;
            }
        }
        for sql in [
            "DELETE FROM subscriptions WHERE client_id = ?1",
            "DELETE FROM inbound_qos2 WHERE client_id = ?1",
            "DELETE FROM sessions WHERE client_id = ?1",
        ] {
            tx.prepare_cached(sql)?.execute([&**client])?;
        }
        messages.sort_unstable();
        messages.dedup();
        for id in messages {
            self.forget_message(id)?;
        }
        self.freed.push((client.clone(), freed));
        Ok(())
    }

    /// Deletes a message row no queue row refers to any more.
    fn forget_message(&mut self, id: u64) -> rusqlite::Result<()> {
        let gone = self
            .tx
            .prepare_cached(
                "DELETE FROM messages WHERE id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM queue WHERE msg_id = ?1)",
            )?
            .execute([id as i64])?;
        if gone > 0 {
            self.inserted.remove(&id);
        }
        Ok(())
    }
}

/// Answers the bridges' reads among `changes`, now that everything before them is committed.
fn answer_reads(conn: &Connection, path: &Path, changes: Vec<Change>) {
    for change in changes {
        let Change::BridgeRead {
            bridge,
            after,
            limit,
            reply,
        } = change
        else {
            continue;
        };
        match read_bridge_rows(conn, &bridge, after, limit) {
            Ok(rows) => {
                let _ = reply.send(rows);
            }
            // The bridge sees the channel close and keeps what it has; it asks again later.
            Err(e) => tracing::error!(
                path = %path.display(),
                bridge = %bridge,
                "cannot read the bridge cache: {e}"
            ),
        }
    }
}

fn read_bridge_rows(
    conn: &Connection,
    bridge: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<CachedForward>, String> {
    let clocks = (tokio::time::Instant::now(), SystemTime::now());
    let mut stmt = conn
        .prepare_cached(
            "SELECT row, packet, expires_at, accepted_at FROM bridge_cache \
             WHERE bridge = ?1 AND row > ?2 ORDER BY row LIMIT ?3",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map(params![bridge, after as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let (row, packet, expires_at, accepted_at) = row.map_err(|e| e.to_string())?;
        out.push(CachedForward {
            row: row as u64,
            message: decode_message(&packet, expires_at, 0, clocks)?,
            accepted_at: instant_of(accepted_at, clocks),
        });
    }
    Ok(out)
}
