//! Session state machine tests: the outbound flow decoded back with the codec.

use super::*;

/// A QoS `qos` delivery of a one-byte message `tag` on topic "t".
pub(crate) fn outgoing(tag: u8, qos: QoS) -> Outgoing {
    Outgoing {
        message: Arc::new(Message {
            topic: Arc::from("t"),
            payload: Bytes::from(vec![tag]),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            store_id: StoreId::default(),
        }),
        qos,
        retain: false,
        subscription_identifiers: Vec::new(),
        stored: false,
    }
}

const LIMITS: SessionLimits = SessionLimits {
    max_queued: 100,
    full_policy: FullPolicy::DropNew,
    max_inflight: 10,
    max_outgoing_alias: 5,
};

fn params(receive_maximum: u16) -> ConnectionParams {
    ConnectionParams {
        version: ProtocolVersion::V5,
        receive_maximum,
        max_packet_size: u32::MAX,
        topic_alias_maximum: 0,
    }
}

fn on_topic(topic: &str, tag: u8, qos: QoS) -> Outgoing {
    let mut o = outgoing(tag, qos);
    let m = Arc::get_mut(&mut o.message).unwrap();
    m.topic = Arc::from(topic);
    o
}

/// Writes what is pending and decodes it back into packets.
fn drain(s: &mut Session, now: Instant) -> Vec<crate::mqtt::Packet> {
    let mut out = BytesMut::new();
    s.write_pending(now, &mut out, usize::MAX);
    let mut packets = Vec::new();
    while let Some(p) = crate::mqtt::decode(&mut out, ProtocolVersion::V5, u32::MAX).unwrap() {
        packets.push(p);
    }
    assert!(out.is_empty());
    packets
}

fn publishes(packets: &[crate::mqtt::Packet]) -> Vec<&crate::mqtt::Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            crate::mqtt::Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn window_follows_the_clients_receive_maximum() {
    let mut s = Session::new(LIMITS);
    s.attach(params(2));
    for i in 0..5 {
        s.enqueue(outgoing(i, QoS::AtLeastOnce));
    }
    let now = Instant::now();
    let sent = drain(&mut s, now);
    let p = publishes(&sent);
    assert_eq!(p.len(), 2);
    assert_ne!(p[0].packet_id, p[1].packet_id);
    assert!(!s.has_pending());
    assert!(s.on_puback(p[0].packet_id));
    assert!(!s.on_puback(p[0].packet_id), "an id is acknowledged once");
    let next = drain(&mut s, now);
    let n = publishes(&next);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payload[0], 2, "order is kept");
    assert_ne!(
        n[0].packet_id, p[1].packet_id,
        "an id in flight is not reused"
    );
}

#[test]
fn broker_cap_applies_when_client_allows_more() {
    let mut s = Session::new(LIMITS);
    s.attach(params(u16::MAX));
    for i in 0..20 {
        s.enqueue(outgoing(i, QoS::ExactlyOnce));
    }
    assert_eq!(publishes(&drain(&mut s, Instant::now())).len(), 10);
    assert_eq!(s.outbound_in_flight(), 10);
}

#[test]
fn qos2_outbound_flow() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    s.enqueue(outgoing(1, QoS::ExactlyOnce));
    let sent = drain(&mut s, Instant::now());
    let id = publishes(&sent)[0].packet_id;
    assert!(
        !s.on_pubcomp(id),
        "PUBCOMP before PUBREC is not a completion"
    );
    assert!(s.on_pubrec(id, false));
    assert!(
        s.on_pubrec(id, false),
        "a repeated PUBREC gets PUBREL again"
    );
    assert!(s.on_pubcomp(id));
    assert_eq!(s.outbound_in_flight(), 0);
}

#[test]
fn resend_after_reconnect_sets_dup_and_keeps_ids() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    s.enqueue(outgoing(1, QoS::AtLeastOnce));
    s.enqueue(outgoing(2, QoS::ExactlyOnce));
    let now = Instant::now();
    let first = drain(&mut s, now);
    let ids: Vec<u16> = publishes(&first).iter().map(|p| p.packet_id).collect();
    assert!(s.on_pubrec(ids[1], false));
    s.detach();
    s.enqueue(outgoing(3, QoS::AtLeastOnce));
    s.attach(params(10));
    let again = drain(&mut s, now);
    match &again[..] {
        [crate::mqtt::Packet::Publish(p1), crate::mqtt::Packet::PubRel(rel), crate::mqtt::Packet::Publish(p3)] =>
        {
            assert!(p1.dup && p1.packet_id == ids[0]);
            assert_eq!(rel.packet_id, ids[1]);
            assert!(!p3.dup && p3.payload[0] == 3);
        }
        other => panic!("unexpected resend {other:?}"),
    }
}

#[test]
fn offline_session_keeps_qos1_not_qos0() {
    let mut s = Session::new(LIMITS);
    s.enqueue(outgoing(1, QoS::AtMostOnce));
    s.enqueue(outgoing(2, QoS::AtLeastOnce));
    assert_eq!(s.queued(), 1);
    s.attach(params(10));
    s.enqueue(outgoing(3, QoS::AtMostOnce));
    assert_eq!(s.queued(), 2);
    assert_eq!(
        s.detach(),
        1,
        "the online QoS 0 message is dropped at detach"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_messages_are_dropped_and_expiry_counts_down() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    let mk = |tag, secs: u64| {
        let mut o = outgoing(tag, QoS::AtLeastOnce);
        Arc::get_mut(&mut o.message).unwrap().expires_at =
            Some(Instant::now() + std::time::Duration::from_secs(secs));
        o
    };
    s.enqueue(mk(1, 2));
    s.enqueue(mk(2, 10));
    tokio::time::advance(std::time::Duration::from_millis(3500)).await;
    let mut out = BytesMut::new();
    let stats = s.write_pending(Instant::now(), &mut out, usize::MAX);
    assert_eq!((stats.expired, stats.published), (1, 1));
    match crate::mqtt::decode(&mut out, ProtocolVersion::V5, u32::MAX).unwrap() {
        Some(crate::mqtt::Packet::Publish(p)) => {
            assert_eq!(p.payload[0], 2);
            assert_eq!(p.properties.message_expiry_interval, Some(7));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outgoing_topic_aliases_are_assigned_then_reused() {
    let mut s = Session::new(LIMITS);
    let mut p = params(100);
    p.topic_alias_maximum = 2;
    s.attach(p);
    for (i, t) in ["a", "b", "c", "a", "b", "c"].iter().enumerate() {
        s.enqueue(on_topic(t, i as u8, QoS::AtMostOnce));
    }
    let sent = drain(&mut s, Instant::now());
    let seen: Vec<(&str, Option<u16>)> = publishes(&sent)
        .iter()
        .map(|p| (p.topic.as_str(), p.properties.topic_alias))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a", Some(1)),
            ("b", Some(2)),
            ("c", None),
            ("", Some(1)),
            ("", Some(2)),
            ("c", None)
        ]
    );
}

/// With both limits at the protocol's maximum, all 65,535 aliases are handed out and the next
/// topic goes without one: the counter never wraps to the invalid alias 0.
#[test]
fn every_alias_up_to_65535_then_none() {
    let limits = SessionLimits {
        max_queued: 70_000,
        max_outgoing_alias: u16::MAX,
        ..LIMITS
    };
    let mut s = Session::new(limits);
    let mut p = params(100);
    p.topic_alias_maximum = u16::MAX;
    s.attach(p);
    let mut last = None;
    for batch in 0..2u32 {
        for i in 0..35_000u32 {
            s.enqueue(on_topic(
                &format!("t/{}", batch * 35_000 + i),
                0,
                QoS::AtMostOnce,
            ));
        }
        for p in publishes(&drain(&mut s, Instant::now())) {
            let alias = p.properties.topic_alias;
            assert_ne!(alias, Some(0), "alias 0 on {}", p.topic);
            last = Some((p.topic.clone(), alias));
        }
    }
    assert_eq!(last, Some(("t/69999".to_owned(), None)));
}

#[test]
fn messages_over_the_clients_maximum_packet_size_are_discarded() {
    let mut s = Session::new(LIMITS);
    let mut p = params(100);
    p.max_packet_size = 20;
    s.attach(p);
    let mut big = outgoing(1, QoS::AtLeastOnce);
    Arc::get_mut(&mut big.message).unwrap().payload = Bytes::from(vec![0u8; 64]);
    s.enqueue(big);
    s.enqueue(outgoing(2, QoS::AtLeastOnce));
    let mut out = BytesMut::new();
    let stats = s.write_pending(Instant::now(), &mut out, usize::MAX);
    assert_eq!((stats.too_large, stats.published), (1, 1));
    assert_eq!(s.outbound_in_flight(), 1);
}

#[test]
fn inbound_qos2_is_routed_once() {
    let mut s = Session::new(LIMITS);
    assert!(s.on_inbound_qos2(7));
    assert!(
        !s.on_inbound_qos2(7),
        "a retransmission is not routed again"
    );
    assert_eq!(s.inbound_in_flight(), 1);
    assert!(s.on_pubrel(7));
    assert!(!s.on_pubrel(7));
    assert!(s.on_inbound_qos2(7), "the id is free again after PUBREL");
}

/// Found by the `session` fuzz target: a client back with a smaller Receive Maximum got every
/// message in flight resent at once (MQTT-3.3.4-9 counts resends too).
#[test]
fn resends_keep_within_a_smaller_receive_maximum() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    for i in 0..3 {
        s.enqueue(outgoing(i, QoS::AtLeastOnce));
    }
    let now = Instant::now();
    let ids: Vec<u16> = publishes(&drain(&mut s, now))
        .iter()
        .map(|p| p.packet_id)
        .collect();
    s.detach();
    s.enqueue(outgoing(3, QoS::AtLeastOnce));
    s.attach(params(1));
    for (i, &id) in ids.iter().enumerate() {
        let sent = drain(&mut s, now);
        let p = publishes(&sent);
        assert_eq!(p.len(), 1, "resend {i}: one at a time");
        assert!(p[0].dup && p[0].packet_id == id, "in the original order");
        assert!(!s.has_pending(), "the rest waits for the window");
        assert!(s.on_puback(id));
    }
    let last = drain(&mut s, now);
    assert!(matches!(publishes(&last)[..], [p] if !p.dup && p.payload[0] == 3));
}

/// Found by the `session` fuzz target: a resend larger than the new connection's Maximum Packet
/// Size was sent anyway; it is discarded as if delivered (MQTT-3.1.2-25).
#[test]
fn resends_too_large_for_the_new_connection_are_discarded() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    let mut big = outgoing(1, QoS::ExactlyOnce);
    Arc::get_mut(&mut big.message).unwrap().payload = Bytes::from(vec![1u8; 64]);
    s.enqueue(big);
    s.enqueue(outgoing(2, QoS::AtLeastOnce));
    let now = Instant::now();
    assert_eq!(publishes(&drain(&mut s, now)).len(), 2);
    s.detach();
    let mut small = params(10);
    small.max_packet_size = 20;
    s.attach(small);
    let mut out = BytesMut::new();
    let stats = s.write_pending(now, &mut out, usize::MAX);
    assert_eq!((stats.too_large, stats.published), (1, 1));
    assert_eq!(s.outbound_in_flight(), 1);
    match crate::mqtt::decode(&mut out, ProtocolVersion::V5, 20).unwrap() {
        Some(crate::mqtt::Packet::Publish(p)) => assert!(p.dup && p.payload[0] == 2),
        other => panic!("{other:?}"),
    }
}

/// Found by the `session` fuzz target: a message that fit without a new topic alias was
/// discarded because the alias property made it three bytes too large.
#[test]
fn an_alias_that_does_not_fit_is_left_out() {
    let mut s = Session::new(LIMITS);
    let mut p = params(10);
    p.topic_alias_maximum = 5;
    let plain = OutgoingPublish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: 0,
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &[],
        properties: &Properties::default(),
        payload: &Bytes::from_static(&[7]),
    };
    p.max_packet_size = plain.encoded_len(ProtocolVersion::V5) as u32;
    s.attach(p);
    s.enqueue(outgoing(7, QoS::AtMostOnce));
    let mut out = BytesMut::new();
    let stats = s.write_pending(Instant::now(), &mut out, usize::MAX);
    assert_eq!((stats.too_large, stats.published), (0, 1));
    match crate::mqtt::decode(&mut out, ProtocolVersion::V5, p.max_packet_size).unwrap() {
        Some(crate::mqtt::Packet::Publish(m)) => {
            assert_eq!((m.topic.as_str(), m.properties.topic_alias), ("t", None));
        }
        other => panic!("{other:?}"),
    }
}

/// Found by the `session` fuzz target: after a reconnect whose messages in flight were all
/// acknowledged before the resend, `has_pending` stayed true with nothing to write.
#[test]
fn nothing_is_pending_once_every_resend_is_acknowledged() {
    let mut s = Session::new(LIMITS);
    s.attach(params(10));
    s.enqueue(outgoing(1, QoS::AtLeastOnce));
    let id = publishes(&drain(&mut s, Instant::now()))[0].packet_id;
    s.detach();
    s.attach(params(10));
    assert!(s.has_pending());
    assert!(s.on_puback(id));
    assert!(!s.has_pending());
}

/// The `session` fuzz target's committed corpus, replayed so its invariants are checked by every
/// `cargo test`, with or without cargo-fuzz.
#[test]
fn fuzz_corpus_keeps_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/session");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 5,
        "seed corpus missing in {}",
        dir.display()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| super::fuzzing::run(&data));
        assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
    }
}
