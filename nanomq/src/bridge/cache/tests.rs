use bytes::Bytes;

use super::*;
use crate::mqtt::{decode, Properties};

fn config(max_messages: u64, policy: CacheFullPolicy) -> BridgeCacheConfig {
    BridgeCacheConfig {
        max_messages,
        full_policy: policy,
        ..BridgeCacheConfig::default()
    }
}

/// A cache with no state database behind it.
fn cache(config: BridgeCacheConfig) -> Cache {
    Cache::new(config, false)
}

fn entry(n: u32, qos: QoS) -> Entry {
    let message = Message {
        topic: Arc::from("t"),
        payload: Bytes::from(n.to_string()),
        qos,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
        store_id: Default::default(),
    };
    Entry::new(Arc::from("up/t"), Arc::new(message), qos, false)
}

fn link(window: usize) -> Link {
    Link {
        version: ProtocolVersion::V5,
        window,
        max_packet_size: 1 << 20,
        budget: 1 << 20,
        max_qos: QoS::ExactlyOnce,
        retain_available: true,
    }
}

/// Every packet `write` produced: (name, packet id, dup, payload).
fn sent(cache: &mut Cache, window: usize) -> Vec<(&'static str, u16, bool, String)> {
    let mut out = BytesMut::new();
    cache.write(&link(window), Instant::now(), &mut out);
    let mut packets = Vec::new();
    while let Some(p) = decode(&mut out, ProtocolVersion::V5, u32::MAX).unwrap() {
        packets.push(match p {
            Packet::Publish(p) => (
                "PUBLISH",
                p.packet_id,
                p.dup,
                String::from_utf8(p.payload.to_vec()).unwrap(),
            ),
            Packet::PubRel(r) => ("PUBREL", r.packet_id, false, String::new()),
            other => panic!("unexpected {other:?}"),
        });
    }
    packets
}

fn payloads(packets: &[(&str, u16, bool, String)]) -> Vec<String> {
    packets.iter().map(|p| p.3.clone()).collect()
}

#[test]
fn keeps_order_while_offline_and_sends_within_the_window() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    for n in 0..5 {
        assert!(c.push(entry(n, QoS::AtLeastOnce)).is_empty());
    }
    assert!(sent(&mut c, 10).is_empty(), "nothing goes while offline");
    c.connected(false);
    let first = sent(&mut c, 3);
    assert_eq!(payloads(&first), ["0", "1", "2"]);
    assert!(sent(&mut c, 3).is_empty(), "the window is full");
    assert!(c.acknowledged(first[1].1, false).is_some());
    assert_eq!(payloads(&sent(&mut c, 3)), ["3"]);
    assert_eq!(c.len(), 4, "in flight still counts");
}

#[test]
fn drop_oldest_drops_waiting_messages_never_in_flight_ones() {
    let mut c = cache(config(3, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::AtLeastOnce));
    sent(&mut c, 10);
    for n in 1..6 {
        c.push(entry(n, QoS::AtLeastOnce));
    }
    // 0 is in flight; of 1..5 the newest two fit.
    assert_eq!(c.len(), 3);
    c.disconnected();
    c.connected(false);
    assert_eq!(payloads(&sent(&mut c, 10)), ["0", "4", "5"]);
}

#[test]
fn drop_new_keeps_the_first() {
    let mut c = cache(config(2, CacheFullPolicy::DropNew));
    let dropped: usize = (0..5)
        .map(|n| c.push(entry(n, QoS::AtLeastOnce)).len())
        .sum();
    assert_eq!(dropped, 3);
    c.connected(false);
    assert_eq!(payloads(&sent(&mut c, 10)), ["0", "1"]);
}

#[test]
fn byte_bound_drops_as_many_as_needed() {
    let mut c = cache(BridgeCacheConfig {
        max_bytes: 3 * entry(0, QoS::AtLeastOnce).size(),
        ..BridgeCacheConfig::default()
    });
    for n in 0..5 {
        c.push(entry(n, QoS::AtLeastOnce));
    }
    assert_eq!(c.len(), 3);
    assert_eq!(c.bytes(), 3 * entry(0, QoS::AtLeastOnce).size());
}

#[test]
fn reconnect_resends_in_flight_first_with_dup_when_the_session_lives_on() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    for n in 0..3 {
        c.push(entry(n, QoS::AtLeastOnce));
    }
    let first = sent(&mut c, 2);
    c.disconnected();
    c.connected(true);
    let again = sent(&mut c, 10);
    assert_eq!(payloads(&again), ["0", "1", "2"]);
    assert_eq!((again[0].1, again[0].2), (first[0].1, true));
    assert_eq!((again[1].1, again[1].2), (first[1].1, true));
    assert!(!again[2].2, "never sent before: no DUP");
    assert_ne!(again[2].1, again[0].1);
    assert_ne!(again[2].1, again[1].1);
}

#[test]
fn reconnect_without_session_sends_in_flight_again_as_new() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::ExactlyOnce));
    let first = sent(&mut c, 10);
    assert!(matches!(c.received(first[0].1, false), (true, None)));
    c.disconnected();
    c.connected(false);
    let again = sent(&mut c, 10);
    assert_eq!(again[0].0, "PUBLISH");
    assert!(!again[0].2);
}

#[test]
fn qos2_flow_ends_at_pubcomp_and_pubrel_is_resent() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::ExactlyOnce));
    let id = sent(&mut c, 10)[0].1;
    assert!(
        c.acknowledged(id, false).is_none(),
        "PUBACK does not end QoS 2"
    );
    assert!(matches!(c.received(id, false), (true, None)));
    c.disconnected();
    c.connected(true);
    assert_eq!(sent(&mut c, 10), [("PUBREL", id, false, String::new())]);
    assert!(c.acknowledged(id, true).is_some());
    assert!(c.is_empty());
}

#[test]
fn refused_pubrec_ends_the_flow() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::ExactlyOnce));
    let id = sent(&mut c, 10)[0].1;
    let (release, refused) = c.received(id, true);
    assert!(!release && refused.is_some());
    assert!(c.is_empty());
}

#[test]
fn qos0_is_dropped_offline_unless_cached() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    assert_eq!(c.push(entry(0, QoS::AtMostOnce))[0].1, DropReason::Offline);
    c.connected(false);
    c.push(entry(1, QoS::AtMostOnce));
    assert_eq!(
        c.disconnected().len(),
        1,
        "waiting QoS 0 goes with the link"
    );
    let mut kept = cache(BridgeCacheConfig {
        qos0: true,
        ..BridgeCacheConfig::default()
    });
    assert!(kept.push(entry(0, QoS::AtMostOnce)).is_empty());
    kept.connected(false);
    assert_eq!(payloads(&sent(&mut kept, 1)), ["0"]);
    assert!(kept.is_empty(), "QoS 0 is done once written");
}

#[test]
fn too_old_and_too_large_are_dropped_not_sent() {
    let mut c = cache(BridgeCacheConfig {
        max_age_secs: 5,
        ..BridgeCacheConfig::default()
    });
    let mut old = entry(0, QoS::AtLeastOnce);
    old.at = Instant::now() - Duration::from_secs(6);
    c.push(old);
    c.push(entry(1, QoS::AtLeastOnce));
    c.connected(false);
    let mut out = BytesMut::new();
    let w = c.write(&link(10), Instant::now(), &mut out);
    assert_eq!(w.published, 1);
    assert_eq!(w.dropped[0].1, DropReason::Expired);

    let mut c = cache(BridgeCacheConfig::default());
    c.push(entry(0, QoS::AtLeastOnce));
    c.connected(false);
    let small = Link {
        max_packet_size: 8,
        ..link(10)
    };
    let w = c.write(&small, Instant::now(), &mut BytesMut::new());
    assert_eq!(w.dropped[0].1, DropReason::TooLarge);
    assert!(c.is_empty());
}

#[test]
fn packet_ids_skip_those_in_use() {
    let mut c = cache(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::AtLeastOnce));
    let held = sent(&mut c, 10)[0].1;
    let mut seen = vec![held];
    for n in 1..200u32 {
        c.push(entry(n, QoS::AtLeastOnce));
        let id = sent(&mut c, 10)[0].1;
        assert_ne!(id, held);
        c.acknowledged(id, false);
        seen.push(id);
    }
    assert!(seen.iter().all(|id| *id != 0));
}

/// An entry with its row in the state database (rows follow n).
fn stored(n: u32) -> Entry {
    let mut e = entry(n, QoS::AtLeastOnce);
    e.row = u64::from(n) + 1;
    e
}

fn on_disk(memory_messages: usize, max_messages: u64) -> Cache {
    let config = BridgeCacheConfig {
        memory_messages,
        max_messages,
        ..BridgeCacheConfig::default()
    };
    Cache::new(config, true)
}

#[test]
fn beyond_the_memory_window_messages_wait_on_disk_and_come_back_in_order() {
    let mut c = on_disk(4, 100);
    for n in 0..10 {
        assert!(c.push(stored(n)).is_empty());
    }
    assert_eq!(c.len(), 10, "spilled messages count");
    assert_eq!(c.bytes(), 10 * stored(0).size());
    assert_eq!(c.needs_refill(), None, "the window is full");
    c.connected(false);
    assert_eq!(c.push(entry(99, QoS::AtMostOnce))[0].1, DropReason::NoRow);
    let mut got = payloads(&sent(&mut c, 100));
    assert_eq!(got, ["0", "1", "2", "3"]);
    while let Some((after, limit)) = c.needs_refill() {
        // What the database would answer: the rows after `after`, at most `limit`.
        let rows = (0..10u32)
            .map(stored)
            .filter(|e| e.row > after)
            .take(limit)
            .collect();
        c.refilled(rows);
        got.extend(payloads(&sent(&mut c, 100)));
    }
    assert_eq!(got, (0..10).map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(c.len(), 10, "all in flight now");
    assert!(c.push(stored(10)).is_empty());
    assert_eq!(c.needs_refill(), None, "nothing on disk: back to memory");
}

#[test]
fn drop_oldest_with_a_backlog_on_disk_drops_from_memory() {
    let mut c = on_disk(2, 5);
    for n in 0..5 {
        c.push(stored(n));
    }
    let dropped = c.push(stored(5));
    assert_eq!(payloads_of(&dropped), ["0"]);
    assert_eq!(c.len(), 5);
    c.connected(false);
    assert_eq!(payloads(&sent(&mut c, 100)), ["1"]);
    let (after, _) = c.needs_refill().unwrap();
    assert_eq!(after, 2, "row of the last message held in memory");
}

#[cfg(feature = "persistence")]
#[test]
fn restored_counts_are_read_back_and_an_empty_answer_resets_them() {
    let mut c = on_disk(10, 100);
    c.restore_spilled(3, 300);
    assert_eq!((c.len(), c.bytes()), (3, 300));
    assert_eq!(c.needs_refill(), Some((0, 10)));
    c.refilled(Vec::new());
    assert_eq!((c.len(), c.bytes()), (0, 0));
    assert_eq!(c.needs_refill(), None);
}

fn payloads_of(dropped: &[(Entry, DropReason)]) -> Vec<String> {
    dropped
        .iter()
        .map(|(e, _)| String::from_utf8(e.message.payload.to_vec()).unwrap())
        .collect()
}

#[test]
fn the_upstreams_maximum_qos_and_retain_availability_are_respected() {
    let mut c = cache(BridgeCacheConfig::default());
    c.connected(false);
    let mut two = entry(0, QoS::ExactlyOnce);
    two.retain = true;
    two.row = 7;
    c.push(two);
    c.push(entry(1, QoS::AtLeastOnce));
    let capped = Link {
        max_qos: QoS::AtMostOnce,
        retain_available: false,
        ..link(10)
    };
    let mut out = BytesMut::new();
    let w = c.write(&capped, Instant::now(), &mut out);
    assert_eq!(w.published, 2);
    assert_eq!(w.done.iter().map(|e| e.row).collect::<Vec<_>>(), [7]);
    assert!(
        c.is_empty(),
        "sent at QoS 0: nothing waits for an acknowledgement"
    );
    while let Some(Packet::Publish(p)) = decode(&mut out, ProtocolVersion::V5, u32::MAX).unwrap() {
        assert_eq!((p.qos, p.retain, p.packet_id), (QoS::AtMostOnce, false, 0));
    }
}
