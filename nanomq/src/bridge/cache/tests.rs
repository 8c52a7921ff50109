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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
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
    let mut c = Cache::new(config(3, CacheFullPolicy::DropOldest));
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
    let mut c = Cache::new(config(2, CacheFullPolicy::DropNew));
    let dropped: usize = (0..5)
        .map(|n| c.push(entry(n, QoS::AtLeastOnce)).len())
        .sum();
    assert_eq!(dropped, 3);
    c.connected(false);
    assert_eq!(payloads(&sent(&mut c, 10)), ["0", "1"]);
}

#[test]
fn byte_bound_drops_as_many_as_needed() {
    let mut c = Cache::new(BridgeCacheConfig {
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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
    c.connected(false);
    c.push(entry(0, QoS::ExactlyOnce));
    let id = sent(&mut c, 10)[0].1;
    let (release, refused) = c.received(id, true);
    assert!(!release && refused.is_some());
    assert!(c.is_empty());
}

#[test]
fn qos0_is_dropped_offline_unless_cached() {
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
    assert_eq!(c.push(entry(0, QoS::AtMostOnce))[0].1, DropReason::Offline);
    c.connected(false);
    c.push(entry(1, QoS::AtMostOnce));
    assert_eq!(
        c.disconnected().len(),
        1,
        "waiting QoS 0 goes with the link"
    );
    let mut kept = Cache::new(BridgeCacheConfig {
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
    let mut c = Cache::new(BridgeCacheConfig {
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

    let mut c = Cache::new(BridgeCacheConfig::default());
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
    let mut c = Cache::new(config(100, CacheFullPolicy::DropOldest));
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
