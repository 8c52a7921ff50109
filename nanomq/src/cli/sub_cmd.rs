//! `nanomq sub`: subscribe, print each message on its own line, and exit after `--count`
//! messages, after `--timeout` seconds, on Ctrl-C, or with an error when the connection fails.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::client::Connection;
use super::client_args::SubArgs;
use crate::mqtt::{
    Packet, PubAck, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions,
};

/// Runs `nanomq sub`, printing to standard output.
pub(super) fn run(args: SubArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    super::client_runtime()?.block_on(subscribe(&args, &mut stdout.lock()))
}

async fn subscribe(args: &SubArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let default_id = format!("nanomq-sub-{}", std::process::id());
    let (mut conn, _) = Connection::open(&args.connect, &default_id).await?;
    let options = SubscriptionOptions {
        qos: args.qos,
        ..SubscriptionOptions::default()
    };
    let subscribe = Subscribe {
        packet_id: 1,
        filters: args.topics.iter().map(|t| (t.clone(), options)).collect(),
        ..Subscribe::default()
    };
    conn.send(&Packet::Subscribe(subscribe)).await?;

    let deadline = tokio::time::sleep(Duration::from_secs(args.timeout.unwrap_or(0)));
    tokio::pin!(deadline);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut inbound = Inbound::default();
    let mut received = 0;
    while args.count.is_none_or(|n| received < n) {
        let packet = tokio::select! {
            packet = conn.next_packet() => packet?,
            () = &mut deadline, if args.timeout.is_some() => {
                conn.disconnect().await?;
                return match args.count {
                    Some(n) => Err(anyhow!("timed out: {received} of {n} messages received")),
                    None => Ok(()),
                };
            }
            signal = &mut interrupt => {
                signal.context("cannot listen for Ctrl-C")?;
                break;
            }
        };
        let (reply, deliver) = match packet {
            Packet::SubAck(suback) => {
                check_suback(&args.topics, &suback)?;
                (None, None)
            }
            Packet::Publish(publish) => inbound.on_publish(publish),
            Packet::PubRel(release) => inbound.on_release(release.packet_id),
            _ => (None, None),
        };
        if let Some(reply) = reply {
            conn.send(&reply).await?;
        }
        if let Some(message) = deliver {
            print_message(out, &message, args.verbose)
                .context("cannot write to standard output")?;
            received += 1;
        }
    }
    conn.disconnect().await
}

/// Warns about each refused filter on stderr; fails only when every filter was refused, since
/// then nothing can ever arrive.
fn check_suback(topics: &[String], suback: &SubAck) -> anyhow::Result<()> {
    for (topic, reason) in topics.iter().zip(&suback.reasons) {
        if reason.is_error() {
            eprintln!(
                "warning: subscription to {topic} refused: {}",
                reason.describe()
            );
        }
    }
    if suback.reasons.iter().all(|r| r.is_error()) {
        bail!("the broker refused every subscription");
    }
    Ok(())
}

/// Writes `payload` or `topic payload` and a newline, then flushes so that a reader sees each
/// message as it arrives, even through a pipe.
fn print_message(out: &mut impl Write, message: &Publish, verbose: bool) -> std::io::Result<()> {
    if verbose {
        out.write_all(message.topic.as_bytes())?;
        out.write_all(b" ")?;
    }
    out.write_all(&message.payload)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Incoming QoS 1/2 handshakes, without I/O. QoS 2 messages are held until PUBREL and delivered
/// then (as libmosquitto does), so a redelivered PUBLISH before PUBREL is printed once, and a
/// `--count` exit never leaves a handshake half done.
#[derive(Debug, Default)]
struct Inbound {
    awaiting_release: HashMap<u16, Publish>,
}

impl Inbound {
    /// Returns the acknowledgement to send and the message to deliver now, if any.
    fn on_publish(&mut self, publish: Publish) -> (Option<Packet>, Option<Publish>) {
        let id = publish.packet_id;
        match publish.qos {
            QoS::AtMostOnce => (None, Some(publish)),
            QoS::AtLeastOnce => (
                Some(Packet::PubAck(ack(id, ReasonCode::SUCCESS))),
                Some(publish),
            ),
            QoS::ExactlyOnce => {
                self.awaiting_release.insert(id, publish);
                (Some(Packet::PubRec(ack(id, ReasonCode::SUCCESS))), None)
            }
        }
    }

    /// Completes a QoS 2 handshake: PUBCOMP to send and the held message to deliver. An unknown
    /// id (a release already completed before a reconnect) is answered but delivers nothing.
    fn on_release(&mut self, id: u16) -> (Option<Packet>, Option<Publish>) {
        let message = self.awaiting_release.remove(&id);
        let reason = match message {
            Some(_) => ReasonCode::SUCCESS,
            None => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        };
        (Some(Packet::PubComp(ack(id, reason))), message)
    }
}

fn ack(packet_id: u16, reason: ReasonCode) -> PubAck {
    PubAck {
        packet_id,
        reason,
        ..PubAck::default()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn publish(qos: QoS, packet_id: u16, payload: &'static str) -> Publish {
        Publish {
            qos,
            packet_id,
            topic: "a/b".to_owned(),
            payload: Bytes::from_static(payload.as_bytes()),
            ..Publish::default()
        }
    }

    #[test]
    fn qos0_and_qos1_are_delivered_at_once() {
        let mut inbound = Inbound::default();
        let p = publish(QoS::AtMostOnce, 0, "x");
        assert_eq!(inbound.on_publish(p.clone()), (None, Some(p)));
        let p = publish(QoS::AtLeastOnce, 5, "y");
        let puback = Packet::PubAck(ack(5, ReasonCode::SUCCESS));
        assert_eq!(inbound.on_publish(p.clone()), (Some(puback), Some(p)));
    }

    #[test]
    fn qos2_is_delivered_once_on_release() {
        let mut inbound = Inbound::default();
        let p = publish(QoS::ExactlyOnce, 9, "z");
        let pubrec = Packet::PubRec(ack(9, ReasonCode::SUCCESS));
        assert_eq!(inbound.on_publish(p.clone()), (Some(pubrec.clone()), None));
        let mut dup = p.clone();
        dup.dup = true;
        assert_eq!(inbound.on_publish(dup.clone()), (Some(pubrec), None));
        let pubcomp = Packet::PubComp(ack(9, ReasonCode::SUCCESS));
        assert_eq!(inbound.on_release(9), (Some(pubcomp), Some(dup)));
        let unknown = Packet::PubComp(ack(9, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND));
        assert_eq!(inbound.on_release(9), (Some(unknown), None));
    }

    #[test]
    fn output_format() {
        let mut out = Vec::new();
        print_message(&mut out, &publish(QoS::AtMostOnce, 0, "hello"), false).unwrap();
        print_message(&mut out, &publish(QoS::AtMostOnce, 0, "world"), true).unwrap();
        print_message(&mut out, &publish(QoS::AtMostOnce, 0, ""), false).unwrap();
        assert_eq!(out, b"hello\na/b world\n\n");
    }

    #[test]
    fn suback_fails_only_when_everything_is_refused() {
        let topics = ["a".to_owned(), "b".to_owned()];
        let suback = |reasons: Vec<ReasonCode>| SubAck {
            packet_id: 1,
            reasons,
            ..SubAck::default()
        };
        let some = suback(vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED]);
        check_suback(&topics, &some).unwrap();
        let none = suback(vec![ReasonCode::NOT_AUTHORIZED, ReasonCode(0x80)]);
        assert!(check_suback(&topics, &none).is_err());
    }
}
