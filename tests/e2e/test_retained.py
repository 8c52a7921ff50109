"""Retained messages: set, replace, clear, delivery on subscribe, expiry.

MQTT 5.0 section 3.3.1.3 and 3.3.2.3.3; MQTT 3.1.1 section 3.3.1.3.
"""

import time

import pytest

from conftest import V5, V311, pub_props, unique


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_retained_delivered_on_subscribe(broker, client_factory, protocol):
    pub = client_factory(broker, unique("ret-pub"), protocol=protocol)
    pub.publish("ret/a", b"state-a", qos=1, retain=True)
    sub = client_factory(broker, unique("ret-sub"), protocol=protocol)
    sub.subscribe("ret/a", qos=1)
    (m,) = sub.wait_for(1)
    assert (m.topic, m.payload, m.retain, m.qos) == ("ret/a", b"state-a", True, 1)
    sub.expect_nothing(0.5)


def test_retained_qos_is_min_of_stored_and_subscription(broker, client_factory):
    pub = client_factory(broker, unique("retq-pub"))
    pub.publish("retq/t", b"x", qos=2, retain=True)
    sub = client_factory(broker, unique("retq"))
    sub.subscribe("retq/t", qos=1)
    (m,) = sub.wait_for(1)
    assert m.qos == 1 and m.retain


def test_retained_replaced(broker, client_factory):
    pub = client_factory(broker, unique("rep-pub"))
    pub.publish("retr/t", b"v1", qos=1, retain=True)
    pub.publish("retr/t", b"v2", qos=1, retain=True)
    pub.publish("retr/t", b"not-retained", qos=1, retain=False)
    sub = client_factory(broker, unique("rep-sub"))
    sub.subscribe("retr/t", qos=1)
    got = sub.drain(1.0)
    assert [(m.payload, m.retain) for m in got] == [(b"v2", True)]


def test_retained_cleared_by_empty_payload(broker, client_factory):
    live = client_factory(broker, unique("clr-live"))
    live.subscribe("retc/t", qos=1)
    pub = client_factory(broker, unique("clr-pub"))
    pub.publish("retc/t", b"v1", qos=1, retain=True)
    pub.publish("retc/t", b"", qos=1, retain=True)
    # Current subscribers still get the empty message.
    assert [m.payload for m in live.wait_for(2)] == [b"v1", b""]
    sub = client_factory(broker, unique("clr-sub"))
    sub.subscribe("retc/t", qos=1)
    sub.expect_nothing(1.0)


def test_retained_delivered_for_wildcard_subscription(broker, client_factory):
    pub = client_factory(broker, unique("retw-pub"))
    for t in ("retw/a", "retw/b/c", "retw/d", "other/x"):
        pub.publish(t, t.encode(), qos=1, retain=True)
    sub = client_factory(broker, unique("retw"))
    sub.subscribe("retw/#", qos=1)
    got = sub.drain(1.0)
    assert sorted(m.topic for m in got) == ["retw/a", "retw/b/c", "retw/d"]
    assert all(m.retain and m.payload == m.topic.encode() for m in got)


def test_retained_qos0_message_is_kept(broker, client_factory):
    pub = client_factory(broker, unique("ret0-pub"))
    pub.publish("ret0/t", b"q0", qos=0, retain=True)
    time.sleep(0.3)
    sub = client_factory(broker, unique("ret0"))
    sub.subscribe("ret0/t", qos=1)
    (m,) = sub.wait_for(1)
    assert (m.payload, m.qos, m.retain) == (b"q0", 0, True)


def test_retained_properties_kept(broker, client_factory):
    pub = client_factory(broker, unique("retp-pub"))
    pub.publish("retp/t", b"x", qos=1, retain=True, properties=pub_props(
        ContentType="application/json", UserProperty=[("k", "v")]))
    sub = client_factory(broker, unique("retp"))
    sub.subscribe("retp/t", qos=1)
    (m,) = sub.wait_for(1)
    assert m.properties.ContentType == "application/json"
    assert m.properties.UserProperty == [("k", "v")]


def test_retained_message_expires(broker, client_factory):
    pub = client_factory(broker, unique("exp-pub"))
    pub.publish("exp/ret", b"short", qos=1, retain=True,
                properties=pub_props(MessageExpiryInterval=2))
    pub.publish("exp/keep", b"long", qos=1, retain=True)
    early = client_factory(broker, unique("exp-early"))
    early.subscribe("exp/ret", qos=1)
    (m,) = early.wait_for(1)
    assert m.payload == b"short" and m.retain
    time.sleep(3)
    late = client_factory(broker, unique("exp-late"))
    late.subscribe("exp/#", qos=1)
    got = late.drain(1.0)
    assert [(m.topic, m.payload) for m in got] == [("exp/keep", b"long")], \
        "retained message with expiry 2 s must be gone after 3 s"
