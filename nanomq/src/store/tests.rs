//! State database tests on real files: what is written comes back, in order; bounds; damaged
//! and locked files.

use std::future::poll_fn;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;

use super::*;
use crate::mqtt::{Properties, RetainHandling};
use crate::session::{Phase, StoreId};

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("nanomq-store-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> PersistenceConfig {
    PersistenceConfig {
        dir: None,
        ..PersistenceConfig::default()
    }
}

fn open_with(
    dir: &Scratch,
    config: &PersistenceConfig,
    recover: bool,
) -> Result<Opened, StoreError> {
    let options = OpenOptions {
        recover,
        beat: Box::new(|| {}),
        beat_every: Duration::from_secs(1),
        stall_after: None,
    };
    Store::open(config, &dir.0, options)
}

fn open(dir: &Scratch) -> Opened {
    open_with(dir, &config(), false).unwrap()
}

fn message(topic: &str, payload: &str, qos: QoS) -> Arc<Message> {
    let properties = Properties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    Arc::new(Message {
        topic: Arc::from(topic),
        payload: Bytes::from(payload.to_owned()),
        qos,
        retain: false,
        properties,
        expires_at: None,
        store_id: StoreId::default(),
    })
}

fn item(m: &Arc<Message>, qos: QoS) -> Outgoing {
    Outgoing {
        message: m.clone(),
        qos,
        retain: false,
        subscription_identifiers: vec![7],
        stored: false,
    }
}

fn entry(qos: QoS) -> SubscriptionEntry {
    SubscriptionEntry {
        options: crate::mqtt::SubscriptionOptions {
            qos,
            no_local: true,
            retain_as_published: false,
            retain_handling: RetainHandling::OnNewSubscribe,
        },
        identifier: Some(7),
    }
}

/// Waits until everything appended so far is committed.
async fn committed(store: &Store, ticket: Ticket) {
    poll_fn(|cx| store.poll_durable(ticket, cx)).await;
}

/// `owner` is done with `m`: its row goes, and its bytes count no more.
async fn settle(store: &Store, owner: &Arc<str>, m: &Message) {
    let settled = StoreEvent::Settled {
        message: m.store_id.get(),
        packet_id: None,
    };
    let t = store.journal(owner, vec![settled]).unwrap();
    committed(store, t).await;
}

#[tokio::test]
async fn what_is_written_comes_back_after_reopening() {
    let dir = Scratch::new("roundtrip");
    let client: Arc<str> = Arc::from("c1");
    let (m1, m2, m3) = (
        message("a/1", "one", QoS::AtLeastOnce),
        message("a/2", "two", QoS::ExactlyOnce),
        message("a/3", "three", QoS::ExactlyOnce),
    );
    {
        let Opened { store, restored } = open(&dir);
        assert!(restored.sessions.is_empty() && restored.retained.is_empty());
        store.put_session(&client, 600, Some("alice"));
        store.subscribe(&client, "a/#", entry(QoS::ExactlyOnce));
        store.subscribe(&client, "gone", entry(QoS::AtMostOnce));
        store.unsubscribe(&client, "gone");
        store
            .enqueue(&client, &item(&m1, QoS::AtLeastOnce))
            .unwrap();
        store
            .enqueue(&client, &item(&m2, QoS::ExactlyOnce))
            .unwrap();
        store
            .enqueue(&client, &item(&m3, QoS::ExactlyOnce))
            .unwrap();
        let (id2, id3) = (m2.store_id.get(), m3.store_id.get());
        store.journal(
            &client,
            vec![
                StoreEvent::Sent {
                    message: id2,
                    packet_id: 5,
                },
                StoreEvent::Sent {
                    message: id3,
                    packet_id: 6,
                },
                StoreEvent::Released { packet_id: 6 },
                StoreEvent::InboundAdded(9),
                StoreEvent::InboundAdded(10),
                StoreEvent::InboundReleased(10),
            ],
        );
        let retained = message("r", "kept", QoS::AtLeastOnce);
        store.retain(&Arc::from("r"), Some(&retained));
        let t = store.detached(&client, 600);
        committed(&store, t).await;
        assert_eq!(store.usage(), (3, 3 + 3 + 3 + 3 + 3 + 5));
    }
    let Opened { store, restored } = open(&dir);
    assert_eq!(restored.retained.len(), 1);
    let r = &restored.retained[0];
    assert_eq!((&*r.topic, &r.payload[..]), ("r", &b"kept"[..]));
    assert_eq!(r.properties.content_type.as_deref(), Some("text/plain"));
    let [(id, s)] = &restored.sessions[..] else {
        panic!("one session expected: {:?}", restored.sessions)
    };
    assert_eq!(id, "c1");
    assert_eq!(s.owner.as_deref(), Some("alice"));
    assert!((599..=600).contains(&s.expiry_interval));
    assert_eq!(s.subscriptions.keys().collect::<Vec<_>>(), ["a/#"]);
    assert_eq!(s.subscriptions["a/#"], entry(QoS::ExactlyOnce));
    assert_eq!(s.inbound_qos2.iter().copied().collect::<Vec<_>>(), [9]);
    let queue: Vec<_> = s.queue.iter().map(|o| &o.message.payload[..]).collect();
    assert_eq!(queue, [&b"one"[..]]);
    assert!(s
        .queue
        .iter()
        .all(|o| o.stored && o.subscription_identifiers == [7]));
    let inflight: Vec<_> = s
        .inflight
        .iter()
        .map(|(id, phase, o)| (*id, *phase, &o.message.payload[..]))
        .collect();
    assert_eq!(
        inflight,
        [
            (5, Phase::AwaitRec, &b"two"[..]),
            (6, Phase::AwaitComp, &b"three"[..])
        ]
    );
    assert_eq!(store.usage().0, 3);
}

#[tokio::test]
async fn settled_messages_and_ended_sessions_leave_nothing() {
    let dir = Scratch::new("settle");
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let shared = message("t", "shared by two sessions", QoS::AtLeastOnce);
    {
        let Opened { store, .. } = open(&dir);
        for c in [&a, &b] {
            store.put_session(c, 60, None);
            store.enqueue(c, &item(&shared, QoS::AtLeastOnce)).unwrap();
        }
        let id = shared.store_id.get();
        let settled = StoreEvent::Settled {
            message: id,
            packet_id: None,
        };
        let t = store.journal(&a, vec![settled]).unwrap();
        committed(&store, t).await;
        assert_eq!(store.usage().0, 1, "a's copy is gone, b's stays");
        let t = store.end_session(&b);
        committed(&store, t).await;
        assert_eq!(store.usage(), (0, 0));
    }
    let Opened { restored, store } = open(&dir);
    let sessions: Vec<_> = restored
        .sessions
        .iter()
        .map(|(c, s)| (c.as_str(), s.queue.len()))
        .collect();
    assert_eq!(sessions, [("a", 0)]);
    drop(store);
    let db = rusqlite::Connection::open(dir.0.join(DATABASE_FILE)).unwrap();
    let messages: i64 = db
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(messages, 0, "a message no queue refers to is deleted");
}

#[tokio::test]
async fn bounds_refuse_and_give_back() {
    let dir = Scratch::new("bounds");
    let config = PersistenceConfig {
        max_messages: 3,
        max_session_bytes: 20,
        ..config()
    };
    let Opened { store, .. } = open_with(&dir, &config, false).unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let m = message("t", "123456789", QoS::AtLeastOnce); // 10 bytes with its topic
    assert!(store.enqueue(&a, &item(&m, QoS::AtLeastOnce)).is_some());
    assert!(store.enqueue(&a, &item(&m, QoS::AtLeastOnce)).is_some());
    assert!(
        store.enqueue(&a, &item(&m, QoS::AtLeastOnce)).is_none(),
        "a's 20 bytes"
    );
    assert!(store.enqueue(&b, &item(&m, QoS::AtLeastOnce)).is_some());
    assert!(
        store.enqueue(&b, &item(&m, QoS::AtLeastOnce)).is_none(),
        "3 in total"
    );
    settle(&store, &a, &m).await;
    assert!(
        store.enqueue(&b, &item(&m, QoS::AtLeastOnce)).is_some(),
        "room again"
    );
}

#[tokio::test]
async fn total_bytes_bound_every_session_together() {
    let dir = Scratch::new("bytes");
    let config = PersistenceConfig {
        max_bytes: 30,
        ..config()
    };
    let Opened { store, .. } = open_with(&dir, &config, false).unwrap();
    let m = message("t", "123456789", QoS::AtLeastOnce); // 10 bytes with its topic
    for owner in ["a", "b", "c"] {
        let owner: Arc<str> = Arc::from(owner);
        assert!(store.enqueue(&owner, &item(&m, QoS::AtLeastOnce)).is_some());
    }
    let d: Arc<str> = Arc::from("d");
    assert!(
        store.enqueue(&d, &item(&m, QoS::AtLeastOnce)).is_none(),
        "30 bytes in total, each session far below max_session_bytes"
    );
    settle(&store, &Arc::from("a"), &m).await;
    assert!(
        store.enqueue(&d, &item(&m, QoS::AtLeastOnce)).is_some(),
        "room again"
    );
}

#[tokio::test]
async fn a_backlog_makes_batch_acknowledgements_wait() {
    let dir = Scratch::new("backlog");
    let config = PersistenceConfig {
        sync: SyncMode::Batch,
        // The writer's first commit comes this long after it starts: time enough to queue
        // MAX_BACKLOG changes on a loaded machine.
        batch_window_ms: 2000,
        ..config()
    };
    let Opened { store, .. } = open_with(&dir, &config, false).unwrap();
    let topic: Arc<str> = Arc::from("t");
    let m = message("t", "x", QoS::AtLeastOnce);
    let mut last = store.retain(&topic, Some(&m));
    assert!(!store.acks_wait(), "batch: acknowledgements do not wait");
    for _ in 0..MAX_BACKLOG {
        last = store.retain(&topic, Some(&m));
    }
    assert!(
        store.acks_wait(),
        "more than MAX_BACKLOG changes wait for the writer"
    );
    committed(&store, last).await;
    assert!(!store.acks_wait(), "the writer caught up");
}

#[test]
fn a_damaged_file_is_refused_and_moved_aside_only_when_asked() {
    let dir = Scratch::new("corrupt");
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join(DATABASE_FILE);
    std::fs::write(&path, b"garbage, not SQLite ".repeat(200)).unwrap();
    let err = open_with(&dir, &config(), false)
        .err()
        .expect("a corrupt file must not open");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("--recover-store") && text.contains(DATABASE_FILE),
        "{text}"
    );
    assert!(
        std::fs::read(&path).unwrap().starts_with(b"garbage"),
        "left as it was"
    );

    let Opened { restored, .. } = open_with(&dir, &config(), true).unwrap();
    assert!(restored.sessions.is_empty());
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("nanomq.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn a_second_broker_on_the_same_directory_is_refused() {
    let dir = Scratch::new("locked");
    let _first = open(&dir);
    let err = open_with(&dir, &config(), false)
        .err()
        .expect("second open");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = Scratch::new("newer");
    drop(open(&dir));
    let db = rusqlite::Connection::open(dir.0.join(DATABASE_FILE)).unwrap();
    db.pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    drop(db);
    let err = open_with(&dir, &config(), true)
        .err()
        .expect("newer schema");
    assert!(matches!(err, StoreError::Newer { .. }), "{err}");
}

#[tokio::test]
async fn sessions_that_expired_while_detached_are_deleted_at_start() {
    let dir = Scratch::new("expired");
    {
        let Opened { store, .. } = open(&dir);
        let (short, long): (Arc<str>, Arc<str>) = (Arc::from("short"), Arc::from("long"));
        store.put_session(&short, 1, None);
        store.put_session(&long, 3600, None);
        store.detached(&long, 3600);
        let t = store.detached(&short, 1);
        committed(&store, t).await;
    }
    // Backdate the detach so no test has to sleep through an expiry.
    let db = rusqlite::Connection::open(dir.0.join(DATABASE_FILE)).unwrap();
    db.execute("UPDATE sessions SET detached_at = detached_at - 5000", [])
        .unwrap();
    drop(db);
    let Opened { restored, .. } = open(&dir);
    let names: Vec<_> = restored.sessions.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["long"]);
    assert_eq!(restored.expired_sessions, 1);
    assert!(restored.sessions[0].1.expiry_interval < 3600);
}

#[test]
fn the_writer_beats_while_idle() {
    let dir = Scratch::new("beat");
    let beats = Arc::new(AtomicUsize::new(0));
    let counter = beats.clone();
    let options = OpenOptions {
        recover: false,
        beat: Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }),
        beat_every: Duration::from_millis(10),
        stall_after: None,
    };
    let Opened { store, .. } = Store::open(&config(), &dir.0, options).unwrap();
    // Nothing is written: the beats come from the idle wake-ups alone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while beats.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        beats.load(Ordering::Relaxed) >= 5,
        "the idle writer stopped beating"
    );
    store.close();
}

#[tokio::test]
async fn bridge_rows_come_back_in_order_until_removed() {
    let dir = Scratch::new("bridge");
    let (cloud, other): (Arc<str>, Arc<str>) = (Arc::from("cloud"), Arc::from("other"));
    let remote: Arc<str> = Arc::from("site1/a");
    {
        let Opened { store, .. } = open(&dir);
        let m = message("a", "one", QoS::ExactlyOnce);
        let (first, _) = store.bridge_append(&cloud, &remote, QoS::AtLeastOnce, true, &m);
        let (second, _) = store.bridge_append(&other, &remote, QoS::ExactlyOnce, false, &m);
        let (third, t) = store.bridge_append(&cloud, &remote, QoS::AtLeastOnce, false, &m);
        assert!(first < second && second < third);
        committed(&store, t).await;
        store.bridge_remove([second]);
        // Appended and removed before the writer sees either: never written.
        let (fourth, _) = store.bridge_append(&cloud, &remote, QoS::AtLeastOnce, false, &m);
        store.bridge_remove([fourth]);
        let (_, t) = store.bridge_append(&cloud, &remote, QoS::AtLeastOnce, false, &m);
        committed(&store, t).await;
    }
    let Opened { store, restored } = open(&dir);
    let size = (remote.len() + "one".len()) as u64;
    let mut summary = restored.bridge_cache.clone();
    summary.sort();
    assert_eq!(summary, [("cloud".to_owned(), 3, 3 * size)]);
    let rows = store.bridge_read(&cloud, 0, 10).await.unwrap();
    let seen: Vec<_> = rows
        .iter()
        .map(|c| (&*c.message.topic, c.message.qos, c.message.retain))
        .collect();
    assert_eq!(
        seen,
        [
            ("site1/a", QoS::AtLeastOnce, true),
            ("site1/a", QoS::AtLeastOnce, false),
            ("site1/a", QoS::AtLeastOnce, false),
        ]
    );
    let c = &rows[0];
    assert_eq!(c.message.payload, "one");
    assert_eq!(
        c.message.properties.content_type.as_deref(),
        Some("text/plain")
    );
    assert!(c.accepted_at <= tokio::time::Instant::now());
    assert!(rows.windows(2).all(|w| w[0].row < w[1].row));
    // Paged: after a row, at most a limit; a read sees what was appended just before it.
    let page = store.bridge_read(&cloud, rows[0].row, 1).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.row).collect::<Vec<_>>(),
        [rows[1].row]
    );
    let m = message("a", "two", QoS::AtLeastOnce);
    let (fresh, _) = store.bridge_append(&cloud, &remote, QoS::AtLeastOnce, false, &m);
    let tail = store.bridge_read(&cloud, rows[2].row, 10).await.unwrap();
    assert_eq!(tail.iter().map(|c| c.row).collect::<Vec<_>>(), [fresh]);
    store.bridge_forget("cloud");
    assert!(store.bridge_read(&cloud, 0, 10).await.unwrap().is_empty());
}

#[test]
fn a_version_1_database_gains_the_bridge_cache() {
    let dir = Scratch::new("v1");
    drop(open(&dir));
    let db = rusqlite::Connection::open(dir.0.join(DATABASE_FILE)).unwrap();
    db.execute_batch("DROP TABLE bridge_cache; PRAGMA user_version = 1;")
        .unwrap();
    drop(db);
    let Opened { store, restored } = open(&dir);
    assert!(restored.bridge_cache.is_empty());
    drop(store);
    let db = rusqlite::Connection::open(dir.0.join(DATABASE_FILE)).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM bridge_cache", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}
