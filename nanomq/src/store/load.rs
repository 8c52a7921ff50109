//! Opening the database: checks, the layout, moving a corrupt file aside on request, and
//! reading back what it holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::time::Instant;

use super::schema::{self, decode_ids, decode_message, unix_ms};
use super::{Restored, StoreError, Usage};
use crate::config::SyncMode;
use crate::mqtt::{ProtocolVersion, QoS, SubscriptionOptions};
use crate::session::{Message, Outgoing, Phase, SavedSession, SubscriptionEntry};

/// Stored usage per client id.
pub(super) type UsageMap = HashMap<Arc<str>, Usage>;

/// Opens the database at `path` (creating `dir` and the file if needed), checks it and reads it
/// back. With `recover`, a corrupt file is renamed and an empty database takes its place.
pub(super) fn open(
    dir: &Path,
    path: &Path,
    sync: SyncMode,
    recover: bool,
) -> Result<(Connection, Restored, UsageMap), StoreError> {
    std::fs::create_dir_all(dir).map_err(|error| StoreError::Directory {
        path: dir.to_owned(),
        error,
    })?;
    match open_checked(path, sync) {
        Err(StoreError::Corrupt { reason, .. }) if recover => {
            let aside = move_aside(path)?;
            tracing::error!(
                "state database {} was corrupt ({reason}): moved to {}, starting with empty state",
                path.display(),
                aside.display()
            );
            open_checked(path, sync)
        }
        other => other,
    }
}

/// Opens, checks and reads the database; every failure says what is wrong with which file.
fn open_checked(
    path: &Path,
    sync: SyncMode,
) -> Result<(Connection, Restored, UsageMap), StoreError> {
    let sqlite = |error| classify(path, error);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    // Exclusive locking: a second broker on the same directory fails here instead of
    // interleaving its writes, and WAL needs no shared-memory file.
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")
        .map_err(sqlite)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("cannot switch to WAL mode (journal mode {mode})"),
        });
    }
    let synchronous = match sync {
        SyncMode::Always | SyncMode::Batch => "FULL",
        SyncMode::Off => "OFF",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
        .map_err(sqlite)?;
    // Taking the write lock now: another process holding the file is found at start.
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(sqlite)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sqlite)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("integrity check: {check}"),
        });
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    match version {
        0 | 1 => {
            // 0 is a new file; 1 lacks the bridges' caches.
            let tx = conn.transaction().map_err(sqlite)?;
            if version == 0 {
                tx.execute_batch(schema::CREATE).map_err(sqlite)?;
            }
            tx.execute_batch(schema::CREATE_V2).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", schema::VERSION)
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        schema::VERSION => {}
        found if found > schema::VERSION => {
            return Err(StoreError::Newer {
                path: path.to_owned(),
                found,
                known: schema::VERSION,
            })
        }
        found => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("unknown schema version {found}"),
            })
        }
    }
    let (restored, usage) = read_back(&conn, path)?;
    Ok((conn, restored, usage))
}

/// Sorts SQLite's errors into what the operator can act on.
fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path,
            reason: error.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        _ => StoreError::Sqlite { path, error },
    }
}

/// Renames the database and its WAL to `<file>.corrupt-<unix seconds>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = unix_ms(SystemTime::now()) / 1000;
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if !from.exists() {
            continue;
        }
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        std::fs::rename(&from, &to).map_err(|error| StoreError::Directory {
            path: from.clone(),
            error,
        })?;
    }
    Ok(aside)
}

/// The next free `messages` row id.
pub(super) fn next_message_id(conn: &Connection, path: &Path) -> Result<u64, StoreError> {
    let max: i64 = conn
        .query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })
        .map_err(|e| classify(path, e))?;
    Ok(max as u64 + 1)
}

/// One past the highest bridge cache row.
pub(super) fn next_bridge_row(conn: &Connection, path: &Path) -> Result<u64, StoreError> {
    let max: i64 = conn
        .query_row("SELECT COALESCE(MAX(row), 0) FROM bridge_cache", [], |r| {
            r.get(0)
        })
        .map_err(|e| classify(path, e))?;
    Ok(max as u64 + 1)
}

/// Reads every table back; expired sessions and retained messages are deleted on the way.
fn read_back(conn: &Connection, path: &Path) -> Result<(Restored, UsageMap), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let sqlite = |e| classify(path, e);
    let clocks = (Instant::now(), SystemTime::now());
    let now_ms = unix_ms(clocks.1);
    let mut restored = Restored::default();

    conn.execute(
        "DELETE FROM retained WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now_ms],
    )
    .map_err(sqlite)?;
    let mut stmt = conn
        .prepare("SELECT packet, expires_at FROM retained")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))
        .map_err(sqlite)?;
    for row in rows {
        let (packet, expires_at) = row.map_err(sqlite)?;
        let m = decode_message(&packet, expires_at, 0, clocks).map_err(corrupt)?;
        restored.retained.push(Arc::new(m));
    }

    restored.expired_sessions = delete_expired_sessions(conn, now_ms).map_err(sqlite)?;
    let mut sessions: BTreeMap<String, SavedSession> = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT client_id, expiry, owner, detached_at FROM sessions")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .map_err(sqlite)?;
    for row in rows {
        let (client, expiry, owner, detached_at) = row.map_err(sqlite)?;
        let expiry = u32::try_from(expiry).map_err(|_| corrupt("a session expiry".into()))?;
        let saved = SavedSession {
            expiry_interval: remaining_expiry(expiry, detached_at, now_ms),
            owner,
            ..SavedSession::default()
        };
        sessions.insert(client, saved);
    }

    let mut stmt = conn
        .prepare("SELECT client_id, filter, options, identifier FROM subscriptions")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u8>(2)?,
                r.get::<_, Option<u32>>(3)?,
            ))
        })
        .map_err(sqlite)?;
    for row in rows {
        let (client, filter, options, identifier) = row.map_err(sqlite)?;
        let options = SubscriptionOptions::decode(options, ProtocolVersion::V5)
            .map_err(|e| corrupt(format!("subscription options of {client}: {e}")))?;
        if let Some(s) = sessions.get_mut(&client) {
            s.subscriptions.insert(
                filter,
                SubscriptionEntry {
                    options,
                    identifier,
                },
            );
        }
    }

    let mut stmt = conn
        .prepare("SELECT client_id, packet_id FROM inbound_qos2")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?)))
        .map_err(sqlite)?;
    for row in rows {
        let (client, packet_id) = row.map_err(sqlite)?;
        if let Some(s) = sessions.get_mut(&client) {
            s.inbound_qos2.insert(packet_id);
        }
    }

    let usage = read_queues(conn, &mut sessions, clocks).map_err(|e| match e {
        QueueError::Sqlite(e) => sqlite(e),
        QueueError::Corrupt(reason) => corrupt(reason),
    })?;
    restored.sessions = sessions.into_iter().collect();

    let mut stmt = conn
        .prepare("SELECT bridge, COUNT(*), SUM(bytes) FROM bridge_cache GROUP BY bridge")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sqlite)?;
    for row in rows {
        let (bridge, messages, bytes) = row.map_err(sqlite)?;
        restored
            .bridge_cache
            .push((bridge, messages as u64, bytes as u64));
    }
    Ok((restored, usage))
}

/// Deletes sessions whose expiry ran out while detached (before or during the downtime), with
/// everything stored for them. Returns how many.
fn delete_expired_sessions(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    let expired = "SELECT client_id FROM sessions WHERE detached_at IS NOT NULL \
                   AND expiry != 4294967295 AND detached_at + expiry * 1000 <= ?1";
    conn.execute(
        &format!("DELETE FROM subscriptions WHERE client_id IN ({expired})"),
        [now_ms],
    )?;
    conn.execute(
        &format!("DELETE FROM queue WHERE client_id IN ({expired})"),
        [now_ms],
    )?;
    conn.execute(
        &format!("DELETE FROM inbound_qos2 WHERE client_id IN ({expired})"),
        [now_ms],
    )?;
    let sessions = conn.execute(
        "DELETE FROM sessions WHERE detached_at IS NOT NULL AND expiry != 4294967295 \
         AND detached_at + expiry * 1000 <= ?1",
        [now_ms],
    )?;
    conn.execute(
        "DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM queue WHERE msg_id = messages.id)",
        [],
    )?;
    Ok(sessions)
}

/// Seconds of expiry left to a session that was detached at `detached_at` (None: it was online
/// when the broker stopped, and its expiry starts now).
fn remaining_expiry(expiry: u32, detached_at: Option<i64>, now_ms: i64) -> u32 {
    match detached_at {
        Some(at) if expiry != u32::MAX => {
            let gone = u64::try_from((now_ms - at).max(0) / 1000).unwrap_or(0);
            u32::try_from(u64::from(expiry).saturating_sub(gone))
                .unwrap_or(0)
                .max(1)
        }
        _ => expiry,
    }
}

enum QueueError {
    Sqlite(rusqlite::Error),
    Corrupt(String),
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::Sqlite(e)
    }
}

/// Reads every queued and in-flight message into its session, in stored order; one message
/// shared by several sessions is read once. Returns the stored usage per session.
fn read_queues(
    conn: &Connection,
    sessions: &mut BTreeMap<String, SavedSession>,
    clocks: (Instant, SystemTime),
) -> Result<UsageMap, QueueError> {
    let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
    let mut usage = UsageMap::new();
    let mut stmt = conn.prepare(
        "SELECT q.client_id, q.msg_id, q.qos, q.retain, q.subscription_ids, q.bytes, \
         q.packet_id, q.released, m.packet, m.expires_at \
         FROM queue q JOIN messages m ON m.id = q.msg_id ORDER BY q.seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let client: String = r.get(0)?;
        let Some(session) = sessions.get_mut(&client) else {
            continue;
        };
        let id = r.get::<_, i64>(1)? as u64;
        let qos = QoS::from_u8(r.get(2)?)
            .filter(|q| *q != QoS::AtMostOnce)
            .ok_or_else(|| QueueError::Corrupt(format!("a queued message of {client}: QoS")))?;
        let message = match messages.get(&id) {
            Some(m) => m.clone(),
            None => {
                let packet: Vec<u8> = r.get(8)?;
                let m =
                    decode_message(&packet, r.get(9)?, id, clocks).map_err(QueueError::Corrupt)?;
                let m = Arc::new(m);
                messages.insert(id, m.clone());
                m
            }
        };
        let item = Outgoing {
            message,
            qos,
            retain: r.get(3)?,
            subscription_identifiers: decode_ids(r.get(4)?),
            stored: true,
        };
        let u = usage.entry(Arc::from(client.as_str())).or_default();
        u.messages += 1;
        u.bytes += r.get::<_, i64>(5)? as u64;
        match r.get::<_, Option<u16>>(6)? {
            Some(packet_id) if qos == QoS::ExactlyOnce => {
                let phase = if r.get(7)? {
                    Phase::AwaitComp
                } else {
                    Phase::AwaitRec
                };
                session.inflight.push((packet_id, phase, item));
            }
            _ => session.queue.push(item),
        }
    }
    Ok(usage)
}
