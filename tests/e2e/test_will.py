"""Will messages: when they are sent, delayed, cancelled, and what they carry.

MQTT 5.0 section 3.1.2.5 / 3.1.3.2 (Will Properties) / 3.14.2.1 (DISCONNECT 0x04);
MQTT 3.1.1 section 3.1.2.5.
"""

import time

import pytest

import raw
from conftest import unique

WILL = dict(will_payload=b"gone", will_qos=1)


def watched_will_client(broker, raw_factory, client_factory, tag, cid=None, sub_qos=1,
                        **connect_kw):
    """A subscriber (at `sub_qos`) on a fresh will topic, then a raw client connected as
    `cid` (default: a unique id) with a will on that topic: WILL, overridden by `connect_kw`.

    Returns (topic, subscriber, raw client); the CONNECT must have been accepted.
    """
    topic = f"will/{unique(tag)}"
    sub = client_factory(broker, unique("will-sub"))
    sub.subscribe(topic, qos=sub_qos)
    a = raw_factory(broker)
    ack = a.connect(cid or unique("w"), will_topic=topic, **{**WILL, **connect_kw})
    assert ack.reason == 0, ack
    return topic, sub, a


@pytest.mark.parametrize("version", [raw.V5, raw.V311, raw.V31], ids=["v5", "v311", "v31"])
def test_will_sent_on_abnormal_close(broker, raw_factory, client_factory, version):
    topic, sub, a = watched_will_client(broker, raw_factory, client_factory, "drop",
                                        version=version)
    sub.expect_nothing(0.3)
    a.close()  # no DISCONNECT: the network connection just drops
    (m,) = sub.wait_for(1, timeout=5)
    assert (m.topic, m.payload, m.qos) == (topic, b"gone", 1)


@pytest.mark.parametrize("version", [raw.V5, raw.V311], ids=["v5", "v311"])
def test_will_not_sent_on_normal_disconnect(broker, raw_factory, client_factory, version):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "norm",
                                    version=version)
    a.disconnect(0x00)
    sub.expect_nothing(1.5)


def test_will_sent_on_disconnect_with_will_message(broker, raw_factory, client_factory):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "x04")
    a.disconnect(0x04)  # Disconnect with Will Message
    (m,) = sub.wait_for(1, timeout=5)
    assert m.payload == b"gone"


def test_will_sent_on_keepalive_timeout(broker, raw_factory, client_factory):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "ka", keepalive=1)
    # Stay silent with the socket open: the broker times the client out.
    (m,) = sub.wait_for(1, timeout=9)
    assert m.payload == b"gone"


def test_will_delay_interval_delays_will(broker, raw_factory, client_factory):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "delay", clean=False,
                                    props={"session_expiry_interval": 30},
                                    will_props={"will_delay_interval": 2})
    dropped = time.monotonic()
    a.close()
    sub.expect_nothing(1.3)
    (m,) = sub.wait_for(1, timeout=4)
    elapsed = time.monotonic() - dropped
    assert elapsed >= 1.8, f"will arrived after {elapsed:.2f}s, before the 2 s delay"
    assert m.payload == b"gone"


@pytest.mark.parametrize("how", ["reconnect-after-drop", "takeover"])
def test_will_not_sent_if_session_resumed_within_delay(broker, raw_factory, client_factory,
                                                      how):
    cid = unique("w")
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "resume", cid=cid,
                                    clean=False, props={"session_expiry_interval": 30},
                                    will_props={"will_delay_interval": 2})
    if how == "reconnect-after-drop":
        a.close()
        time.sleep(0.5)
    b = raw_factory(broker)
    ack = b.connect(cid, clean=False, props={"session_expiry_interval": 30})
    assert ack.reason == 0 and ack.session_present is True, ack
    sub.expect_nothing(3.5)
    b.disconnect()


def test_will_sent_at_session_expiry_if_shorter_than_delay(broker, raw_factory,
                                                         client_factory):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "exp", clean=False,
                                    props={"session_expiry_interval": 1},
                                    will_props={"will_delay_interval": 30})
    dropped = time.monotonic()
    a.close()
    (m,) = sub.wait_for(1, timeout=5)
    elapsed = time.monotonic() - dropped
    assert elapsed >= 0.8, f"will arrived after {elapsed:.2f}s, before the session expired"
    assert m.payload == b"gone"


def test_will_properties_passed_through(broker, raw_factory, client_factory):
    will_props = {
        "payload_format_indicator": 1,
        "message_expiry_interval": 60,
        "content_type": "text/plain; charset=utf-8",
        "response_topic": "will/reply",
        "correlation_data": b"\x00\x01corr",
        "user_property": [("who", "sensor-7"), ("why", "lost")],
    }
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "props",
                                    will_props=will_props)
    a.close()
    (m,) = sub.wait_for(1, timeout=5)
    p = m.properties
    assert p.PayloadFormatIndicator == 1
    assert 0 < p.MessageExpiryInterval <= 60
    assert p.ContentType == "text/plain; charset=utf-8"
    assert p.ResponseTopic == "will/reply"
    assert p.CorrelationData == b"\x00\x01corr"
    assert p.UserProperty == [("who", "sensor-7"), ("why", "lost")]


def test_will_retained(broker, raw_factory, client_factory):
    topic = f"will/{unique('ret')}"
    a = raw_factory(broker)
    assert a.connect(unique("w"), will_topic=topic, will_retain=True, **WILL).reason == 0
    a.close()
    time.sleep(0.5)
    late = client_factory(broker, unique("late"))
    late.subscribe(topic, qos=1)
    (m,) = late.wait_for(1, timeout=5)
    assert m.payload == b"gone" and m.retain


def test_will_qos_is_min_of_will_and_subscription(broker, raw_factory, client_factory):
    _, sub, a = watched_will_client(broker, raw_factory, client_factory, "qos", sub_qos=2,
                                    will_payload=b"q", will_qos=1)
    a.close()
    (m,) = sub.wait_for(1, timeout=5)
    assert m.qos == 1
