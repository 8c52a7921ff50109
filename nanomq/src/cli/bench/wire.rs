//! One benchmark client's connection: a TCP stream with TCP_NODELAY, one read buffer, one
//! write buffer, and the packet handling of the hot path without allocation.
//!
//! PUBLISH and the four acknowledgements are read in place: [`mqtt::frame_size`] finds the end of
//! the packet and only the fields the measurements need are taken from the slice. Everything
//! else (CONNACK, SUBACK, DISCONNECT, …) goes through the codec's [`mqtt::decode`]. Writes are
//! queued into the write buffer and go out together with [`BenchConn::flush`], so a publisher's
//! batch or a subscriber's acknowledgements cost one system call.

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::payload::Header;
use crate::config::MAX_PACKET_SIZE;
use crate::mqtt::{self, OutgoingPublish, Packet, ProtocolVersion, PubAck, QoS, ReasonCode};

/// Initial size of each buffer; they grow to the largest batch and stay there.
const BUFFER_SIZE: usize = 64 * 1024;

/// The acknowledgements of the QoS 1 and 2 flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckKind {
    /// PUBACK: QoS 1 done.
    Ack,
    /// PUBREC: QoS 2 received.
    Received,
    /// PUBREL: QoS 2 released.
    Release,
    /// PUBCOMP: QoS 2 done.
    Complete,
}

/// A packet from the broker, reduced to what the benchmark looks at.
#[derive(Debug)]
pub(super) enum Incoming {
    /// An application message; `header` is `None` when the payload is not one of ours.
    Publish {
        /// Delivery QoS, which says what acknowledgement is due.
        qos: QoS,
        /// Zero at QoS 0.
        packet_id: u16,
        /// The measurement header at the start of the payload.
        header: Option<Header>,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack {
        /// Which one.
        kind: AckKind,
        /// The packet id it acknowledges.
        packet_id: u16,
        /// Success unless the broker refused the message (MQTT 5).
        reason: ReasonCode,
    },
    /// DISCONNECT from the broker, with its reason.
    Disconnect(ReasonCode),
    /// Any other packet, decoded by the codec (boxed: rare, and much larger than the rest).
    Other(Box<Packet>),
}

/// An open TCP connection to the broker with its buffers.
pub(super) struct BenchConn {
    stream: TcpStream,
    version: ProtocolVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl BenchConn {
    /// Wraps a connected stream that will speak `version`.
    pub(super) fn new(stream: TcpStream, version: ProtocolVersion) -> anyhow::Result<Self> {
        stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
        Ok(BenchConn {
            stream,
            version,
            read_buf: BytesMut::with_capacity(BUFFER_SIZE),
            write_buf: BytesMut::with_capacity(BUFFER_SIZE),
        })
    }

    /// Waits until the broker sends more bytes and buffers them. A closed connection is an
    /// error. Cancel-safe.
    pub(super) async fn read(&mut self) -> anyhow::Result<()> {
        crate::cli::read_more(&mut self.stream, &mut self.read_buf).await
    }

    /// Buffers whatever the broker has sent without waiting; true when something arrived.
    /// Costs no system call while the socket is not readable.
    pub(super) fn try_read(&mut self) -> anyhow::Result<bool> {
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => bail!("connection closed by broker"),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e).context("cannot read from broker"),
        }
    }

    /// Resolves when the socket has something to read (or has failed); cancel-safe, for a
    /// `select!` next to other wake-ups.
    pub(super) async fn readable(&self) {
        // An error shows up again on the next read, with context.
        let _ = self.stream.readable().await;
    }

    /// Takes the next whole packet out of the read buffer; `None` until one is buffered.
    pub(super) fn next_incoming(&mut self) -> anyhow::Result<Option<Incoming>> {
        let size = mqtt::frame_size(&self.read_buf, self.version, MAX_PACKET_SIZE)
            .context("invalid packet from broker")?;
        let Some(size) = size else {
            return Ok(None);
        };
        let first = self.read_buf[0];
        let body = &self.read_buf[size.header_len..size.total];
        let incoming = match first >> 4 {
            3 => read_publish(first, body, self.version)?,
            kind @ 4..=7 => read_ack(kind, body, self.version)?,
            _ => {
                let packet = mqtt::decode(&mut self.read_buf, self.version, MAX_PACKET_SIZE)
                    .context("invalid packet from broker")?;
                // frame_size just saw a whole packet, so decode returns it.
                return Ok(packet.map(|packet| match packet {
                    Packet::Disconnect(d) => Incoming::Disconnect(d.reason),
                    other => Incoming::Other(Box::new(other)),
                }));
            }
        };
        self.read_buf.advance(size.total);
        Ok(Some(incoming))
    }

    /// Queues any packet; it goes out with the next [`Self::flush`].
    pub(super) fn queue(&mut self, packet: &Packet) {
        mqtt::encode(packet, self.version, &mut self.write_buf);
    }

    /// Queues an acknowledgement with reason Success.
    pub(super) fn queue_ack(&mut self, kind: AckKind, packet_id: u16) {
        let ack = PubAck {
            packet_id,
            ..PubAck::default()
        };
        let packet = match kind {
            AckKind::Ack => Packet::PubAck(ack),
            AckKind::Received => Packet::PubRec(ack),
            AckKind::Release => Packet::PubRel(ack),
            AckKind::Complete => Packet::PubComp(ack),
        };
        self.queue(&packet);
    }

    /// Queues a PUBLISH whose payload is `publish.payload` (a zero-filled template) with `header`
    /// written over its start: encoded straight into the write buffer, nothing allocated.
    pub(super) fn queue_publish(&mut self, publish: &OutgoingPublish<'_>, header: Header) {
        publish.encode(self.version, &mut self.write_buf);
        let payload_at = self.write_buf.len() - publish.payload.len();
        header.write_to(&mut self.write_buf[payload_at..]);
    }

    /// True when nothing is queued.
    pub(super) fn nothing_queued(&self) -> bool {
        self.write_buf.is_empty()
    }

    /// Writes everything queued in as few system calls as the socket allows. Cancel-safe: what
    /// was not written stays queued.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream
            .write_all_buf(&mut self.write_buf)
            .await
            .context("cannot write to broker")
    }

    /// Sends `packet` and waits for the broker's next packet other than a PUBLISH or an
    /// acknowledgement: the CONNACK or SUBACK of a handshake. A DISCONNECT is an error.
    pub(super) async fn request(&mut self, packet: &Packet) -> anyhow::Result<Packet> {
        self.queue(packet);
        self.flush().await?;
        loop {
            while let Some(incoming) = self.next_incoming()? {
                match incoming {
                    Incoming::Disconnect(reason) => {
                        bail!("broker closed the connection: {}", reason.describe())
                    }
                    Incoming::Other(reply) => return Ok(*reply),
                    Incoming::Publish { .. } | Incoming::Ack { .. } => {}
                }
            }
            self.read().await?;
        }
    }

    /// Sends DISCONNECT (normal) and closes the write side; errors are ignored, since the
    /// broker may already be gone and the measurement is over.
    pub(super) async fn close(mut self) {
        self.queue(&Packet::Disconnect(mqtt::Disconnect::default()));
        if self.flush().await.is_ok() {
            let _ = self.stream.shutdown().await;
        }
    }
}

/// The QoS, packet id and payload header of a PUBLISH body, read in place (spec 3.3.2).
fn read_publish(first: u8, body: &[u8], version: ProtocolVersion) -> anyhow::Result<Incoming> {
    let Some(qos) = QoS::from_u8((first >> 1) & 0x03) else {
        bail!("invalid packet from broker: PUBLISH QoS 3");
    };
    let truncated = || anyhow::anyhow!("invalid packet from broker: truncated PUBLISH");
    let topic_len = usize::from(u16::from_be_bytes([
        *body.first().ok_or_else(truncated)?,
        *body.get(1).ok_or_else(truncated)?,
    ]));
    let mut at = 2 + topic_len;
    let mut packet_id = 0;
    if qos != QoS::AtMostOnce {
        let id = body.get(at..at + 2).ok_or_else(truncated)?;
        packet_id = u16::from_be_bytes([id[0], id[1]]);
        at += 2;
    }
    if version.is_v5() {
        let (props_len, varint_len) = read_varint(body.get(at..).ok_or_else(truncated)?)
            .ok_or_else(|| anyhow::anyhow!("invalid packet from broker: bad property length"))?;
        at += varint_len + props_len;
    }
    let payload = body.get(at..).ok_or_else(truncated)?;
    Ok(Incoming::Publish {
        qos,
        packet_id,
        header: Header::read_from(payload),
    })
}

/// The packet id and reason code of PUBACK (type 4) to PUBCOMP (type 7) (spec 3.4 to 3.7).
fn read_ack(kind: u8, body: &[u8], version: ProtocolVersion) -> anyhow::Result<Incoming> {
    let kind = match kind {
        4 => AckKind::Ack,
        5 => AckKind::Received,
        6 => AckKind::Release,
        _ => AckKind::Complete,
    };
    let Some(id) = body.get(..2) else {
        bail!("invalid packet from broker: acknowledgement without a packet id");
    };
    let reason = match body.get(2) {
        Some(&code) if version.is_v5() => ReasonCode(code),
        _ => ReasonCode::SUCCESS,
    };
    Ok(Incoming::Ack {
        kind,
        packet_id: u16::from_be_bytes([id[0], id[1]]),
        reason,
    })
}

/// An MQTT variable byte integer: its value and its length in bytes.
fn read_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::mqtt::{Properties, Publish};

    /// A connection to a local listener, and the listener's end of it.
    async fn pair(version: ProtocolVersion) -> (BenchConn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        (
            BenchConn::new(client.unwrap(), version).unwrap(),
            server.unwrap().0,
        )
    }

    #[tokio::test]
    async fn publishes_and_acks_are_read_in_place() {
        for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
            let (mut conn, mut server) = pair(version).await;
            let header = Header {
                publisher: 3,
                seq: 9,
                sent_ns: 77,
            };
            let mut payload = vec![0; 32];
            header.write_to(&mut payload);
            let mut props = Properties::default();
            props.user_properties.push(("k".into(), "v".into()));
            let mut wire = BytesMut::new();
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: "bench/3".into(),
                packet_id: 12,
                properties: props,
                payload: Bytes::from(payload),
                ..Publish::default()
            };
            mqtt::encode(&Packet::Publish(publish), version, &mut wire);
            let refused = PubAck {
                packet_id: 4,
                reason: ReasonCode::NOT_AUTHORIZED,
                ..PubAck::default()
            };
            mqtt::encode(&Packet::PubRec(refused), version, &mut wire);
            mqtt::encode(&Packet::PingResp, version, &mut wire);
            server.write_all(&wire).await.unwrap();
            while conn.read_buf.len() < wire.len() {
                conn.read().await.unwrap();
            }
            match conn.next_incoming().unwrap() {
                Some(Incoming::Publish {
                    qos: QoS::AtLeastOnce,
                    packet_id: 12,
                    header: Some(h),
                }) => assert_eq!(h, header),
                other => panic!("{other:?}"),
            }
            let expected = match version {
                ProtocolVersion::V5 => ReasonCode::NOT_AUTHORIZED,
                _ => ReasonCode::SUCCESS,
            };
            match conn.next_incoming().unwrap() {
                Some(Incoming::Ack {
                    kind: AckKind::Received,
                    packet_id: 4,
                    reason,
                }) => assert_eq!(reason, expected),
                other => panic!("{other:?}"),
            }
            match conn.next_incoming().unwrap() {
                Some(Incoming::Other(p)) => assert_eq!(*p, Packet::PingResp),
                other => panic!("{other:?}"),
            }
            assert!(conn.next_incoming().unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn queued_publish_carries_the_header_and_decodes() {
        let (mut conn, mut server) = pair(ProtocolVersion::V5).await;
        let template = Bytes::from(vec![0; 64]);
        let props = Properties::default();
        let publish = OutgoingPublish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t",
            packet_id: 0,
            topic_alias: None,
            message_expiry_interval: None,
            subscription_identifiers: &[],
            properties: &props,
            payload: &template,
        };
        for seq in 0..2 {
            let header = Header {
                publisher: 1,
                seq,
                sent_ns: 5,
            };
            conn.queue_publish(&publish, header);
        }
        conn.queue_ack(AckKind::Complete, 8);
        conn.flush().await.unwrap();
        assert!(conn.nothing_queued());
        drop(conn);
        let mut wire = Vec::new();
        server.read_to_end(&mut wire).await.unwrap();
        let mut buf = BytesMut::from(&wire[..]);
        for seq in 0..2 {
            match mqtt::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE) {
                Ok(Some(Packet::Publish(p))) => {
                    assert_eq!((p.topic.as_str(), p.payload.len()), ("t", 64));
                    assert_eq!(Header::read_from(&p.payload).unwrap().seq, seq);
                    assert!(p.payload[20..].iter().all(|&b| b == 0));
                }
                other => panic!("{other:?}"),
            }
        }
        match mqtt::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE) {
            Ok(Some(Packet::PubComp(a))) => assert_eq!(a.packet_id, 8),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0]), Some((0, 1)));
        assert_eq!(read_varint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0x7F]),
            Some((268_435_455, 4))
        );
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0x80; 5]), None);
    }
}
