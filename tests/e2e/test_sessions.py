"""Persistent sessions: offline queueing, resume, expiry, queue limits.

MQTT 5.0 section 3.1.2.4 (Clean Start), 3.1.2.11.2 (Session Expiry Interval), 4.1;
MQTT 3.1.1 section 3.1.2.4 (Clean Session), 4.1.
"""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from conftest import V5, V311, props, unique


def persistent(broker, client_factory, cid, protocol, expiry=60):
    if protocol == V5:
        return client_factory(broker, cid, protocol=V5, clean_start=False, session_expiry=expiry)
    return client_factory(broker, cid, protocol=V311, clean_start=False)


def leave_subscribed(broker, client_factory, cid, topic, qos=1, protocol=V5, expiry=60):
    """Connect `cid` with a persistent session, subscribe to `topic` and disconnect, so the
    session stays on the broker with no connection. Returns the disconnected client."""
    sub = persistent(broker, client_factory, cid, protocol, expiry)
    sub.subscribe(topic, qos=qos)
    sub.disconnect()
    return sub


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_offline_messages_delivered_on_resume(broker, client_factory, protocol):
    cid = unique("ps")
    sub = leave_subscribed(broker, client_factory, cid, "ps/t", protocol=protocol)
    assert not sub.session_present  # in its CONNACK: a new session

    pub = client_factory(broker, unique("ps-pub"))
    for i in range(50):
        pub.publish("ps/t", str(i).encode(), qos=1)

    start = time.monotonic()
    again = persistent(broker, client_factory, cid, protocol)
    assert again.session_present, "CONNACK must say session present"
    msgs = again.wait_for(50, timeout=2.0)
    elapsed = time.monotonic() - start
    assert [int(m.payload) for m in msgs] == list(range(50)), "in order, none lost"
    assert all(m.qos == 1 for m in msgs)
    assert elapsed <= 2.0, f"queued messages took {elapsed:.2f}s"
    again.expect_nothing(0.5)
    # The subscription itself survived: live messages flow without re-subscribing.
    pub.publish("ps/t", b"live", qos=1)
    assert [m.payload for m in again.wait_for(1)] == [b"live"]


def test_offline_qos2_messages_delivered_once(broker, client_factory):
    cid = unique("ps2")
    leave_subscribed(broker, client_factory, cid, "ps2/t", qos=2)
    pub = client_factory(broker, unique("ps2-pub"))
    for i in range(5):
        pub.publish("ps2/t", str(i).encode(), qos=2)
    again = persistent(broker, client_factory, cid, V5)
    msgs = again.wait_for(5)
    assert [(int(m.payload), m.qos) for m in msgs] == [(i, 2) for i in range(5)]
    again.expect_nothing(0.5)


def test_session_expiry_honoured(broker, client_factory):
    cid = unique("se")
    leave_subscribed(broker, client_factory, cid, "se/t", expiry=1)
    pub = client_factory(broker, unique("se-pub"))
    pub.publish("se/t", b"lost", qos=1)
    time.sleep(2.2)
    again = persistent(broker, client_factory, cid, V5)
    assert not again.session_present, "session with expiry 1 s must be gone after 2 s"
    again.expect_nothing(1.0)
    pub.publish("se/t", b"no-subscription", qos=1)
    again.expect_nothing(0.5)


def test_session_kept_within_expiry(broker, client_factory):
    cid = unique("sk")
    leave_subscribed(broker, client_factory, cid, "sk/t", expiry=5)
    time.sleep(1.0)
    again = persistent(broker, client_factory, cid, V5)
    assert again.session_present


def test_disconnect_can_end_session(broker, client_factory):
    cid = unique("sd")
    sub = persistent(broker, client_factory, cid, V5, expiry=60)
    sub.subscribe("sd/t", qos=1)
    sub.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    time.sleep(0.3)
    again = persistent(broker, client_factory, cid, V5)
    assert not again.session_present


def test_clean_start_discards_queued_messages(broker, client_factory):
    cid = unique("cs")
    leave_subscribed(broker, client_factory, cid, "cs/t")
    pub = client_factory(broker, unique("cs-pub"))
    pub.publish("cs/t", b"old", qos=1)
    fresh = client_factory(broker, cid, protocol=V5, clean_start=True, session_expiry=60)
    assert not fresh.session_present
    fresh.expect_nothing(1.0)
    pub.publish("cs/t", b"after", qos=1)
    fresh.expect_nothing(0.5)  # the old subscription went with the old session


@pytest.mark.parametrize("policy, kept", [
    pytest.param("drop-new", range(100), id="drop-new"),
    pytest.param("drop-oldest", range(50, 150), id="drop-oldest",
                 marks=pytest.mark.nanomq_only("queue_full_policy is nanomq config")),
])
def test_offline_queue_limit(broker_factory, client_factory, policy, kept):
    """150 messages for an offline session with room for 100: drop-new keeps the first
    100 (what mosquitto does too), drop-oldest the newest 100."""
    broker = broker_factory({"limits": {"max_queued_messages": 100,
                                        "queue_full_policy": policy}})
    cid = unique("ql")
    leave_subscribed(broker, client_factory, cid, "ql/t")
    pub = client_factory(broker, unique("ql-pub"))
    for i in range(150):
        pub.publish("ql/t", str(i).encode(), qos=1)
    again = persistent(broker, client_factory, cid, V5)
    got = [int(m.payload) for m in again.wait_for(100, timeout=5)]
    got += [int(m.payload) for m in again.drain(1.0)]
    assert got == list(kept), f"{policy}: got {len(got)}: {got[:3]}...{got[-3:]}"
