//! Codec throughput: bytes and packets per second through `mqtt::decode` and `mqtt::encode` for
//! the packets that dominate an edge broker's traffic, and the per-subscriber PUBLISH encode of
//! the fan-out path.
//!
//! Every input is made by the crate's own encoder and checked to decode back to itself before it
//! is timed, so a codec change that breaks a case fails `cargo test --benches` instead of quietly
//! timing an error path.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nanomq::config::LimitsConfig;
use nanomq::mqtt::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions, Will,
};

/// Publishes in the back-to-back buffer: one full socket read's worth at a busy connection.
const STREAM_LEN: usize = 1000;

/// Subscribers one message is encoded for in the fan-out case.
const FANOUT: u32 = 100;

/// A PUBLISH of `payload_len` bytes to a five-level sensor topic. With `props`, it carries the two
/// properties a typical v5 sensor sends: a message expiry and a content type.
fn publish(device: usize, qos: QoS, payload_len: usize, props: bool) -> Publish {
    let properties = if props {
        Properties {
            message_expiry_interval: Some(3600),
            content_type: Some("application/json".into()),
            ..Properties::default()
        }
    } else {
        Properties::default()
    };
    Publish {
        qos,
        topic: format!("site/{}/dev/{device}/temp", device % 100),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties,
        payload: Bytes::from(vec![b'x'; payload_len]),
        ..Publish::default()
    }
}

/// A v5 CONNECT as a persistent IoT client sends it: session expiry, flow-control limits, a user
/// property, credentials and a will with its own properties.
fn connect_v5() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        properties: Properties {
            session_expiry_interval: Some(86_400),
            receive_maximum: Some(32),
            maximum_packet_size: Some(262_144),
            topic_alias_maximum: Some(16),
            request_problem_information: Some(1),
            user_properties: vec![("fw".into(), "2.4.1".into())],
            ..Properties::default()
        },
        client_id: "sensor-site42-dev4242".into(),
        will: Some(Will {
            topic: "site/42/dev/4242/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(3600),
                ..Properties::default()
            },
        }),
        username: Some("site42".into()),
        password: Some(Bytes::from_static(b"0123456789abcdef")),
    }))
}

/// A SUBSCRIBE with ten filters, mixing wildcards and QoS, and a Subscription Identifier.
fn subscribe_10() -> Packet {
    let filters = (0..10)
        .map(|i| {
            let options = SubscriptionOptions {
                qos: QoS::from_u8(i % 3).expect("0..=2 is a QoS"),
                ..SubscriptionOptions::default()
            };
            (format!("site/{i}/dev/+/temp"), options)
        })
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        properties: Properties {
            subscription_identifiers: vec![7],
            ..Properties::default()
        },
        filters,
    })
}

/// Packets as a connection speaking `version` sends them, and their encoding.
struct Case {
    name: &'static str,
    version: ProtocolVersion,
    /// The broker's default limit, so decode makes the size check it makes in production.
    max_packet_size: u32,
    packets: Vec<Packet>,
    wire: Bytes,
}

impl Case {
    /// Encodes `packets` back to back and checks that decoding gives them back.
    fn new(name: &'static str, version: ProtocolVersion, packets: Vec<Packet>) -> Self {
        let mut wire = BytesMut::new();
        for packet in &packets {
            encode(packet, version, &mut wire);
        }
        let case = Case {
            name,
            version,
            max_packet_size: LimitsConfig::default().max_packet_size,
            packets,
            wire: wire.freeze(),
        };
        let mut decoded = Vec::new();
        case.decode_each(&mut case.read_buffer(), |packet| decoded.push(packet));
        assert_eq!(decoded, case.packets, "{name}");
        case
    }

    /// Both units, so the report shows MB/s and packets/s side by side.
    fn throughput(&self) -> Throughput {
        Throughput::ElementsAndBytes {
            elements: self.packets.len() as u64,
            bytes: self.wire.len() as u64,
        }
    }

    /// A fresh read buffer holding the encoding, as the connection's socket read leaves it.
    fn read_buffer(&self) -> BytesMut {
        BytesMut::from(&self.wire[..])
    }

    /// The connection's read loop: decode until the buffer holds no complete packet, handing each
    /// packet to `handle`.
    fn decode_each(&self, buf: &mut BytesMut, mut handle: impl FnMut(Packet)) {
        while let Some(packet) = decode(buf, self.version, self.max_packet_size).expect("valid") {
            handle(packet);
        }
    }
}

fn cases() -> Vec<Case> {
    use ProtocolVersion::{V311, V5};
    let stream = |name, version, props| {
        let packets = (0..STREAM_LEN)
            .map(|device| Packet::Publish(publish(device, QoS::AtMostOnce, 64, props)))
            .collect();
        Case::new(name, version, packets)
    };
    let single = |name, version, packet| Case::new(name, version, vec![packet]);
    vec![
        single(
            "publish_qos0_64B_v311",
            V311,
            Packet::Publish(publish(4242, QoS::AtMostOnce, 64, false)),
        ),
        single(
            "publish_qos0_64B_v5_2props",
            V5,
            Packet::Publish(publish(4242, QoS::AtMostOnce, 64, true)),
        ),
        single(
            "publish_qos1_16KiB_v5_2props",
            V5,
            Packet::Publish(publish(4242, QoS::AtLeastOnce, 16 * 1024, true)),
        ),
        stream("1000_publish_qos0_64B_v311", V311, false),
        stream("1000_publish_qos0_64B_v5_2props", V5, true),
        single("connect_v5_props_will", V5, connect_v5()),
        single("subscribe_10_filters_v5", V5, subscribe_10()),
    ]
}

/// Decode from a fresh read buffer per iteration (made outside the timing). The split-off frames
/// share that buffer, as in the broker, so this includes promoting it to shared storage once per
/// buffer; each packet is dropped when handled, as the broker drops it after handling.
fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        group.throughput(case.throughput());
        group.bench_function(case.name, |b| {
            b.iter_batched_ref(
                || case.read_buffer(),
                |buf| case.decode_each(buf, drop),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Encode into one reused buffer, as a connection drains its queue into its write buffer.
fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for case in cases() {
        let mut out = BytesMut::with_capacity(case.wire.len());
        group.throughput(case.throughput());
        group.bench_function(case.name, |b| {
            b.iter(|| {
                out.clear();
                for packet in black_box(&case.packets) {
                    encode(packet, case.version, &mut out);
                }
            })
        });
    }
    group.finish();
}

/// One received message written for [`FANOUT`] subscribers the way the session's write path does
/// it: per subscriber a delivery QoS (half downgraded to 0), packet id, topic alias, remaining
/// expiry and subscription identifier over the shared properties and payload, the size checked
/// against the subscriber's limit, then encoded into the connection's write buffer.
fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("encode_fanout_{FANOUT}_subscribers"));
    let message = publish(4242, QoS::AtLeastOnce, 64, true);
    let max_packet_size = LimitsConfig::default().max_packet_size as usize;
    for (name, version) in [
        ("publish_qos1_64B_v311", ProtocolVersion::V311),
        ("publish_qos1_64B_v5_2props", ProtocolVersion::V5),
    ] {
        let write_all = |out: &mut BytesMut| {
            for subscriber in 0..FANOUT {
                let ids = [subscriber + 1];
                let mut publish = message.as_outgoing();
                publish.qos = if subscriber.is_multiple_of(2) {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                publish.packet_id = if publish.qos == QoS::AtMostOnce {
                    0
                } else {
                    subscriber as u16 + 1
                };
                publish.topic_alias = Some(1);
                publish.message_expiry_interval = Some(3599);
                publish.subscription_identifiers = &ids;
                if publish.encoded_len(version) <= max_packet_size {
                    publish.encode(version, out);
                }
            }
        };
        let mut out = BytesMut::new();
        write_all(&mut out);
        group.throughput(Throughput::ElementsAndBytes {
            elements: u64::from(FANOUT),
            bytes: out.len() as u64,
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_all(black_box(&mut out));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode, bench_fanout);
criterion_main!(benches);
