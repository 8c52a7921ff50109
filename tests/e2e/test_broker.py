"""Broker-wide behaviour: $SYS topics, malformed packets and protocol errors, enhanced
authentication, graceful shutdown, and MQTT 3.1 (MQIsdp) clients.

MQTT 5.0 section 4.13 (errors), 3.1.2.11.9 (Authentication Method), 3.14 (DISCONNECT);
MQTT 3.1.1 section 4.8; MQTT 3.1.
"""

import re
import time

import pytest

import raw
from conftest import IS_NANOMQ, unique

SYS_TOPICS = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
]
NUMBER = re.compile(rb"^\d+$")
UPTIME = re.compile(rb"^(\d+)( seconds)?$")  # mosquitto says "12 seconds"


def latest_values(client, topics, timeout):
    """Collect $SYS messages for `timeout` seconds; return {topic: [payloads...]}."""
    seen: dict = {}
    for m in client.drain(timeout):
        if m.topic in topics:
            seen.setdefault(m.topic, []).append(m.payload)
    return seen


# ------------------------------------------------------------- $SYS


def test_sys_topics_present(broker, client_factory):
    watcher = client_factory(broker, unique("sys"))
    watcher.subscribe("$SYS/#", qos=0)
    seen = latest_values(watcher, SYS_TOPICS, 3.0)
    missing = [t for t in SYS_TOPICS if t not in seen]
    assert not missing, f"$SYS topics missing after 3 s (interval 1 s): {missing}"
    assert seen["$SYS/broker/version"][-1].strip(), "version must not be empty"
    assert UPTIME.match(seen["$SYS/broker/uptime"][-1])
    for t in SYS_TOPICS[2:]:
        assert NUMBER.match(seen[t][-1]), f"{t} = {seen[t][-1]!r} is not a count"
    assert int(seen["$SYS/broker/clients/connected"][-1]) >= 1


def test_sys_topics_retained(broker, client_factory):
    time.sleep(1.5)  # at least one $SYS interval
    late = client_factory(broker, unique("sysr"))
    late.subscribe("$SYS/broker/version", qos=0)
    (m,) = late.wait_for(1, timeout=1.0)  # retained: no need to wait for the next tick
    assert m.retain


def test_sys_topics_update(broker, client_factory):
    watcher = client_factory(broker, unique("sysu"))
    watcher.subscribe("$SYS/broker/#", qos=0)
    first = latest_values(watcher, SYS_TOPICS, 1.5)
    up0 = int(UPTIME.match(first["$SYS/broker/uptime"][-1]).group(1))
    recv0 = int(first["$SYS/broker/messages/received"][-1])
    conn0 = int(first["$SYS/broker/clients/connected"][-1])
    retained0 = int(first["$SYS/broker/retained messages/count"][-1])

    others = [client_factory(broker, unique("sysc")) for _ in range(3)]
    for i, c in enumerate(others):
        c.publish(f"sysu/{i}", b"x", qos=1, retain=True)
    deadline = time.monotonic() + 6
    state = {}
    while time.monotonic() < deadline:
        for t, vals in latest_values(watcher, SYS_TOPICS, 1.0).items():
            state[t] = vals[-1]
        if (int(state.get("$SYS/broker/clients/connected", b"0")) >= conn0 + 3
                and int(state.get("$SYS/broker/messages/received", b"0")) >= recv0 + 3
                and int(state.get("$SYS/broker/retained messages/count", b"0"))
                >= retained0 + 3):
            break
    assert int(state["$SYS/broker/clients/connected"]) >= conn0 + 3, state
    assert int(state["$SYS/broker/messages/received"]) >= recv0 + 3, state
    assert int(state["$SYS/broker/retained messages/count"]) >= retained0 + 3, state
    assert int(UPTIME.match(state["$SYS/broker/uptime"]).group(1)) > up0, state


# ------------------------------------------------------------- malformed packets

MALFORMED = {
    "subscribe-reserved-flags": raw.subscribe(1, [("a/b", 0)], flags=0x00),
    "invalid-utf8-topic": raw.publish(b"a/\xff\xfe", b"x"),
    "nul-in-topic": raw.publish(b"a/\x00b", b"x"),
    "publish-qos3": raw.publish("a/b", b"x", qos=3, packet_id=1),
    "pubrel-reserved-flags": raw.packet(raw.PUBREL, 0x00, raw.u16(1) + b"\x00"),
    "remaining-length-5-bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    "subscribe-no-filters": raw.packet(raw.SUBSCRIBE, 0x02, raw.u16(1) + b"\x00"),
}


def assert_others_unaffected(broker, client_factory):
    a = client_factory(broker, unique("ok-sub"))
    a.subscribe("alive/t", qos=1)
    b = client_factory(broker, unique("ok-pub"))
    b.publish("alive/t", b"still here", qos=1)
    assert [m.payload for m in a.wait_for(1)] == [b"still here"]


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packet_closes_only_that_connection(broker, raw_factory, client_factory,
                                                      name):
    bystander = client_factory(broker, unique("bystander"))
    bystander.subscribe("#", qos=0)
    bad = raw_factory(broker)
    assert bad.connect(unique("bad")).reason == 0
    bad.try_send(MALFORMED[name])
    seen = bad.wait_closed(5)
    if IS_NANOMQ or seen:
        # 0x81 Malformed Packet; 0x82 Protocol Error for the semantic ones.
        allowed = {0x81, 0x82} if name in ("subscribe-no-filters", "nul-in-topic") else {0x81}
        assert len(seen) == 1 and seen[0].type == raw.DISCONNECT and seen[0].reason in allowed, \
            f"expected DISCONNECT {[hex(c) for c in allowed]}, saw {seen!r}"
    assert bystander.is_connected()
    bystander.expect_nothing(0.3)  # nothing of the bad packet leaked
    assert_others_unaffected(broker, client_factory)


def test_malformed_packet_v311_closes_without_disconnect(broker, raw_factory, client_factory):
    bad = raw_factory(broker)
    assert bad.connect(unique("bad3"), version=raw.V311).reason == 0
    bad.try_send(MALFORMED["publish-qos3"])
    assert bad.wait_closed(5) == [], "a v3.1.1 server never sends DISCONNECT"
    assert_others_unaffected(broker, client_factory)


@pytest.mark.parametrize("first", ["publish", "subscribe", "pingreq"])
def test_packet_before_connect_closes(broker, raw_factory, client_factory, first):
    watcher = client_factory(broker, unique("pbc-watch"))
    watcher.subscribe("pbc/#", qos=0)
    a = raw_factory(broker)
    a.send({
        "publish": raw.publish("pbc/t", b"sneaky", version=raw.V311),
        "subscribe": raw.subscribe(1, [("pbc/#", 0)], version=raw.V311),
        "pingreq": raw.pingreq(),
    }[first])
    assert a.wait_closed(5) == [], "no reply to anything before CONNECT"
    watcher.expect_nothing(0.5)


@pytest.mark.parametrize("case", ["reserved-flag", "will-qos3", "will-flags-without-will",
                                  "bad-protocol-name"])
def test_malformed_connect_refused(broker, raw_factory, case):
    a = raw_factory(broker)
    if case == "reserved-flag":
        pkt = raw.connect(unique("mc"), reserved_flag=True)
    elif case == "will-qos3":
        pkt = raw.connect(unique("mc"), will_topic="w", will_qos=3)
    elif case == "will-flags-without-will":
        # Will Retain set while the Will Flag is 0.
        body = raw.string("MQTT") + bytes([5, 0x22]) + raw.u16(30) + b"\x00" + raw.string("x")
        pkt = raw.packet(raw.CONNECT, 0, body)
    else:
        body = raw.string("MQTX") + bytes([5, 0x02]) + raw.u16(30) + b"\x00" + raw.string("x")
        pkt = raw.packet(raw.CONNECT, 0, body)
    a.send(pkt)
    seen = a.wait_closed(5)
    # The server MAY send CONNACK with 0x81/0x82/0x84 (or 0x01 for a bad protocol) first.
    assert all(p.type == raw.CONNACK and p.reason in (0x01, 0x81, 0x82, 0x84) for p in seen), \
        seen


def test_second_connect_is_protocol_error(broker, raw_factory, client_factory):
    a = raw_factory(broker)
    assert a.connect(unique("twice")).reason == 0
    a.try_send(raw.connect(unique("twice2")))
    seen = a.wait_closed(5)
    if IS_NANOMQ or seen:  # mosquitto just closes
        assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x82)], \
            f"expected DISCONNECT 0x82 (protocol error), saw {seen!r}"
    assert_others_unaffected(broker, client_factory)


def test_enhanced_auth_method_refused(broker, raw_factory):
    a = raw_factory(broker)
    ack = a.connect(unique("auth"), props={"authentication_method": "SCRAM-SHA-1",
                                           "authentication_data": b"n,,n=user,r=abc"})
    assert ack.reason == 0x8C, f"expected CONNACK 0x8C (bad authentication method): {ack!r}"
    assert a.wait_closed(5) == []


def test_client_disconnect_with_reason_is_clean(broker, raw_factory, client_factory):
    a = raw_factory(broker)
    assert a.connect(unique("dr")).reason == 0
    a.send(raw.disconnect(0x00, props={"reason_string": "bye",
                                       "user_property": [("k", "v")]}))
    assert a.wait_closed(5) == []
    assert_others_unaffected(broker, client_factory)


# ------------------------------------------------------------- shutdown


def test_graceful_shutdown_on_sigterm(broker, raw_factory):
    v5 = raw_factory(broker)
    assert v5.connect(unique("sd5")).reason == 0
    v3 = raw_factory(broker)
    assert v3.connect(unique("sd3"), version=raw.V311).reason == 0
    start = time.monotonic()
    code = broker.stop(timeout=10)
    assert code == 0, f"broker exit code {code} after SIGTERM"
    assert time.monotonic() - start < 10
    seen5 = v5.wait_closed(2)
    if IS_NANOMQ or seen5:  # mosquitto 2.0.11 just closes
        assert [(p.type, p.reason) for p in seen5] == [(raw.DISCONNECT, 0x8B)], \
            f"v5 client should get DISCONNECT 0x8B (server shutting down), saw {seen5!r}"
    assert v3.wait_closed(2) == []


def test_graceful_shutdown_idle_broker(broker):
    assert broker.stop(timeout=10) == 0


# ------------------------------------------------------------- MQTT 3.1


def test_mqtt31_mqisdp_connect_and_pubsub(broker, raw_factory, client_factory):
    old = raw_factory(broker)
    ack = old.connect("mqtt31-client", version=raw.V31, clean=True)
    assert ack.reason == 0, ack
    assert old.subscribe([("v31/#", 2)]).reasons == [2]
    old.publish("v31/a", b"from-31", qos=1)
    old.publish("v31/b", b"from-31-q2", qos=2)
    got = [old.expect(raw.PUBLISH) for _ in range(2)]
    for p in got:
        if p.qos == 1:
            old.send(raw.ack(raw.PUBACK, p.packet_id, version=raw.V31))
        elif p.qos == 2:
            old.send(raw.ack(raw.PUBREC, p.packet_id, version=raw.V31))
            old.expect(raw.PUBREL)
            old.send(raw.ack(raw.PUBCOMP, p.packet_id, version=raw.V31))
    assert sorted((p.topic, p.payload) for p in got) == [("v31/a", b"from-31"),
                                                         ("v31/b", b"from-31-q2")]
    # Interworks with a v5 client.
    v5 = client_factory(broker, unique("v5-peer"))
    v5.subscribe("v31/#", qos=1)
    old.publish("v31/c", b"to-v5", qos=1)
    assert [m.payload for m in v5.wait_for(1)] == [b"to-v5"]
