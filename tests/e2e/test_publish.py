"""PUBLISH: QoS 0/1/2 flows, packet ids, Receive Maximum, DUP, expiry, properties.

MQTT 5.0 section 3.3, 4.3, 4.4, 4.9; MQTT 3.1.1 section 3.3, 4.3, 4.4.
"""

import time

import pytest

import raw
from conftest import V5, V311, pub_props, raw_subscriber, unique


# ------------------------------------------------------------- QoS both directions


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_delivered_qos_is_min_of_publish_and_subscription(broker, client_factory, protocol,
                                                         pub_qos, sub_qos):
    sub = client_factory(broker, unique("q-sub"), protocol=protocol)
    assert sub.subscribe("q/t", qos=sub_qos) == [sub_qos]
    pub = client_factory(broker, unique("q-pub"), protocol=protocol)
    for i in range(3):
        pub.publish("q/t", f"{pub_qos}{sub_qos}-{i}".encode(), qos=pub_qos)
    msgs = sub.wait_for(3)
    assert [m.payload for m in msgs] == [f"{pub_qos}{sub_qos}-{i}".encode() for i in range(3)]
    assert {m.qos for m in msgs} == {min(pub_qos, sub_qos)}
    sub.expect_nothing(0.3)


def test_qos2_exactly_once_flow_on_the_wire(broker, raw_factory):
    sub = raw_subscriber(raw_factory, broker, "q2s", "q2/t", qos=2)
    pub = raw_factory(broker)
    assert pub.connect(unique("q2p")).reason == 0

    pid = 77
    pub.send(raw.publish("q2/t", b"once", qos=2, packet_id=pid))
    rec = pub.expect(raw.PUBREC)
    assert rec.packet_id == pid and rec.reason in (0x00, 0x10), rec
    # A duplicate before PUBREL must not be delivered twice.
    pub.send(raw.publish("q2/t", b"once", qos=2, packet_id=pid, dup=True))
    assert pub.expect(raw.PUBREC).packet_id == pid
    pub.send(raw.ack(raw.PUBREL, pid))
    comp = pub.expect(raw.PUBCOMP)
    assert comp.packet_id == pid and comp.reason == 0

    p = sub.expect(raw.PUBLISH)
    assert (p.qos, p.payload, p.dup) == (2, b"once", False) and p.packet_id
    sub.send(raw.ack(raw.PUBREC, p.packet_id))
    rel = sub.expect(raw.PUBREL)
    assert rel.packet_id == p.packet_id and rel.flags == 0x02, rel
    sub.send(raw.ack(raw.PUBCOMP, p.packet_id))
    extra = sub.recv_all(1.0)
    assert extra == [], f"message delivered more than once: {extra!r}"


def test_qos1_publish_gets_puback_with_same_packet_id(broker, raw_factory):
    a = raw_factory(broker)
    assert a.connect(unique("q1")).reason == 0
    for pid in (1, 300, 65535):
        a.send(raw.publish("q1/t", b"x", qos=1, packet_id=pid))
        ack = a.expect(raw.PUBACK)
        # 0x10 = No matching subscribers, also a success.
        assert ack.packet_id == pid and ack.reason in (0x00, 0x10), ack


def test_qos_downgrade_on_the_wire(broker, raw_factory, client_factory):
    sub = raw_factory(broker)
    assert sub.connect(unique("dg")).reason == 0
    assert sub.subscribe([("dg/t", raw.sub_options(qos=0))]).reasons == [0]
    pub = client_factory(broker, unique("dg-pub"))
    pub.publish("dg/t", b"x", qos=2)
    p = sub.expect(raw.PUBLISH)
    assert p.qos == 0 and p.packet_id is None and p.payload == b"x", p


# ------------------------------------------------------------- packet ids


def test_inflight_packet_ids_are_unique(broker, raw_factory, client_factory):
    sub = raw_subscriber(raw_factory, broker, "pid", "pid/t", props={"receive_maximum": 20})
    pub = client_factory(broker, unique("pid-pub"))
    for i in range(10):
        pub.publish("pid/t", str(i).encode(), qos=1)
    got = [sub.expect(raw.PUBLISH) for _ in range(10)]
    ids = [p.packet_id for p in got]
    assert len(set(ids)) == 10 and 0 not in ids, f"in-flight packet ids not unique: {ids}"
    assert [p.payload for p in got] == [str(i).encode() for i in range(10)]


# ------------------------------------------------------------- broker's receive maximum


def test_connack_advertises_receive_maximum(broker, raw_factory):
    a = raw_factory(broker)
    ack = a.connect(unique("rmx"))
    assert ack.props.get("receive_maximum") == 10, ack


@pytest.mark.mosquitto_deviates("2.0.11 answers PUBREC 0x97 instead of DISCONNECT 0x93")
def test_broker_receive_maximum_enforced(broker, raw_factory):
    a = raw_factory(broker)
    assert a.connect(unique("rmv")).reason == 0
    for pid in range(1, 11):
        a.send(raw.publish("rmv/t", b"x", qos=2, packet_id=pid))
    recs = [a.expect(raw.PUBREC) for _ in range(10)]
    assert [r.packet_id for r in recs] == list(range(1, 11))
    a.try_send(raw.publish("rmv/t", b"x", qos=2, packet_id=11))  # one over the maximum
    seen = a.wait_closed(5)
    assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x93)], \
        f"expected DISCONNECT 0x93 (Receive Maximum exceeded), saw {seen!r}"


def test_broker_receive_maximum_window_frees_on_pubcomp(broker, raw_factory):
    """Staying within the window is fine however many messages flow through it."""
    a = raw_factory(broker)
    assert a.connect(unique("rmw")).reason == 0
    for round_ in range(3):
        ids = [round_ * 10 + i for i in range(1, 11)]
        for pid in ids:
            a.send(raw.publish("rmw/t", b"x", qos=2, packet_id=pid))
        for pid in ids:
            assert a.expect(raw.PUBREC).packet_id == pid
        for pid in ids:
            a.send(raw.ack(raw.PUBREL, pid))
        for pid in ids:
            assert a.expect(raw.PUBCOMP).packet_id == pid


# ------------------------------------------------------------- DUP on resend


@pytest.mark.parametrize("version", [raw.V5, raw.V311], ids=["v5", "v311"])
@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_publish_resent_with_dup_after_reconnect(broker, raw_factory, client_factory,
                                                         version, qos):
    cid = unique("dup")
    persistent = {"props": {"session_expiry_interval": 60}} if version == raw.V5 else {}
    sub = raw_factory(broker)
    assert sub.connect(cid, version=version, clean=False, **persistent).reason == 0
    sub.subscribe([("dup/t", qos)])
    pub = client_factory(broker, unique("dup-pub"))
    pub.publish("dup/t", b"resend-me", qos=qos)
    first = sub.expect(raw.PUBLISH)
    assert first.dup is False and first.qos == qos
    sub.close()  # no ack, no DISCONNECT
    time.sleep(0.3)

    again = raw_factory(broker)
    ack = again.connect(cid, version=version, clean=False, **persistent)
    assert ack.reason == 0 and ack.session_present is True, ack
    p = again.expect(raw.PUBLISH)
    assert (p.dup, p.packet_id, p.payload, p.qos) == (True, first.packet_id, b"resend-me", qos), \
        f"resend must carry DUP=1 and the same packet id {first.packet_id}: {p!r}"
    if qos == 1:
        again.send(raw.ack(raw.PUBACK, p.packet_id))
    else:
        again.send(raw.ack(raw.PUBREC, p.packet_id))
        assert again.expect(raw.PUBREL).packet_id == p.packet_id
        again.send(raw.ack(raw.PUBCOMP, p.packet_id))
    assert again.recv_all(0.8) == []


def test_pubrel_resent_after_reconnect(broker, raw_factory, client_factory):
    """After PUBREC the broker resends PUBREL (not the PUBLISH) on session resume."""
    cid = unique("rel")
    sub = raw_factory(broker)
    assert sub.connect(cid, clean=False, props={"session_expiry_interval": 60}).reason == 0
    sub.subscribe([("rel/t", 2)])
    pub = client_factory(broker, unique("rel-pub"))
    pub.publish("rel/t", b"x", qos=2)
    p = sub.expect(raw.PUBLISH)
    sub.send(raw.ack(raw.PUBREC, p.packet_id))
    assert sub.expect(raw.PUBREL).packet_id == p.packet_id
    sub.close()
    time.sleep(0.3)
    again = raw_factory(broker)
    assert again.connect(cid, clean=False,
                         props={"session_expiry_interval": 60}).session_present is True
    rel = again.expect(raw.PUBREL)
    assert rel.packet_id == p.packet_id
    again.send(raw.ack(raw.PUBCOMP, rel.packet_id))
    assert again.recv_all(0.8) == []


# ------------------------------------------------------------- message expiry


def test_queued_message_expires_for_offline_session(broker, client_factory):
    cid = unique("expq")
    sub = client_factory(broker, cid, clean_start=False, session_expiry=60)
    sub.subscribe("expq/t", qos=1)
    sub.disconnect()
    pub = client_factory(broker, unique("expq-pub"))
    pub.publish("expq/t", b"dies", qos=1, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("expq/t", b"lives", qos=1, properties=pub_props(MessageExpiryInterval=30))
    pub.publish("expq/t", b"forever", qos=1)
    time.sleep(2.5)
    again = client_factory(broker, cid, clean_start=False, session_expiry=60)
    assert again.session_present
    got = again.drain(1.5)
    assert [m.payload for m in got] == [b"lives", b"forever"], [m.payload for m in got]
    lives = got[0].properties.MessageExpiryInterval
    assert 1 <= lives <= 28, f"expiry must be decremented by the time queued: {lives}"
    assert not hasattr(got[1].properties, "MessageExpiryInterval")


def test_delivered_message_carries_expiry(broker, client_factory):
    sub = client_factory(broker, unique("expd"))
    sub.subscribe("expd/t", qos=1)
    pub = client_factory(broker, unique("expd-pub"))
    pub.publish("expd/t", b"x", qos=1, properties=pub_props(MessageExpiryInterval=100))
    (m,) = sub.wait_for(1)
    assert 98 <= m.properties.MessageExpiryInterval <= 100


def test_retained_expiry_decremented_on_delivery(broker, client_factory):
    pub = client_factory(broker, unique("expr-pub"))
    pub.publish("expr/t", b"x", qos=1, retain=True,
                properties=pub_props(MessageExpiryInterval=30))
    time.sleep(2.2)
    sub = client_factory(broker, unique("expr"))
    sub.subscribe("expr/t", qos=1)
    (m,) = sub.wait_for(1)
    assert 1 <= m.properties.MessageExpiryInterval <= 28, m.properties.MessageExpiryInterval


# ------------------------------------------------------------- properties pass through


def test_request_response_properties_pass_through(broker, client_factory):
    requester = client_factory(broker, unique("req"))
    responder = client_factory(broker, unique("resp"))
    reply_topic = f"rr/reply/{unique('r')}"
    requester.subscribe(reply_topic, qos=1)
    responder.subscribe("rr/service", qos=1)

    user = [("trace", "abc"), ("trace", "def")]
    requester.publish("rr/service", "¿qué?".encode(), qos=1, properties=pub_props(
        PayloadFormatIndicator=1, ContentType="text/plain", ResponseTopic=reply_topic,
        CorrelationData=b"\x00\xffid-42", UserProperty=user))
    (req,) = responder.wait_for(1)
    p = req.properties
    assert req.payload == "¿qué?".encode()
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == "text/plain"
    assert p.ResponseTopic == reply_topic
    assert p.CorrelationData == b"\x00\xffid-42"
    assert p.UserProperty == user

    responder.publish(p.ResponseTopic, b"\x00\x01answer", qos=1, properties=pub_props(
        CorrelationData=p.CorrelationData, ContentType="application/octet-stream"))
    (resp,) = requester.wait_for(1)
    assert resp.payload == b"\x00\x01answer"
    assert resp.properties.CorrelationData == b"\x00\xffid-42"
    assert resp.properties.ContentType == "application/octet-stream"
    assert not hasattr(resp.properties, "PayloadFormatIndicator")


def test_payload_bytes_unchanged(broker, client_factory):
    sub = client_factory(broker, unique("bin"))
    sub.subscribe("bin/t", qos=1)
    pub = client_factory(broker, unique("bin-pub"))
    payloads = [bytes(range(256)), b"", b"\x00" * 1000, bytes(range(256)) * 100]
    for p in payloads:
        pub.publish("bin/t", p, qos=1)
    assert [m.payload for m in sub.wait_for(len(payloads))] == payloads


def test_publish_to_wildcard_topic_is_rejected(broker, raw_factory, client_factory):
    watcher = client_factory(broker, unique("wild-watch"))
    watcher.subscribe("#", qos=1)
    a = raw_factory(broker)
    assert a.connect(unique("wild")).reason == 0
    a.try_send(raw.publish("a/+/b", b"x", qos=1, packet_id=1))
    try:
        p = a.recv(3)
    except raw.Closed:
        p = None
    # A wildcard in a Topic Name is refused: PUBACK 0x90 (Topic Name invalid), or
    # DISCONNECT 0x81/0x82/0x90, or a plain close.
    if p is not None and p.type == raw.PUBACK:
        assert p.reason == 0x90, p
    elif p is not None:
        assert p.type == raw.DISCONNECT and p.reason in (0x81, 0x82, 0x90), p
    watcher.expect_nothing(0.5)
