"""SUBSCRIBE / UNSUBSCRIBE: wildcards, $-topics, shared subscriptions, subscription
options (No Local, Retain As Published, Retain Handling), Subscription Identifiers, and
reason codes.

MQTT 5.0 section 3.8-3.11, 4.7, 4.8; MQTT 3.1.1 section 3.8-3.11, 4.7.
"""

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

import raw
from conftest import V5, V311, props, unique


def topics_of(msgs):
    return sorted(m.topic for m in msgs)


# ------------------------------------------------------------- wildcards


def test_single_level_wildcard(broker, client_factory):
    sub = client_factory(broker, unique("plus"))
    sub.subscribe("w1/+/c", qos=1)
    sub.subscribe("+/only", qos=1)
    pub = client_factory(broker, unique("plus-pub"))
    for t in ["w1/b/c", "w1/x/c", "w1//c", "w1/b/d", "w1/b/c/d", "w1/c", "x/only", "/only",
              "x/y/only"]:
        pub.publish(t, t.encode(), qos=1)
    got = sub.drain(1.5)
    assert topics_of(got) == sorted(["w1/b/c", "w1/x/c", "w1//c", "x/only", "/only"])


def test_multi_level_wildcard(broker, client_factory):
    sub = client_factory(broker, unique("hash"))
    sub.subscribe("w2/#", qos=1)
    pub = client_factory(broker, unique("hash-pub"))
    for t in ["w2", "w2/a", "w2/a/b/c", "w2/", "other/w2", "w2x/a"]:
        pub.publish(t, b"x", qos=1)
    got = sub.drain(1.5)
    assert topics_of(got) == sorted(["w2", "w2/a", "w2/a/b/c", "w2/"])


def test_hash_alone_matches_everything_but_dollar_topics(broker, client_factory):
    sub = client_factory(broker, unique("all"))
    sub.subscribe("#", qos=0)
    sub.subscribe("+/broker/#", qos=0)
    sub.subscribe("+/broker/version", qos=0)
    sys_sub = client_factory(broker, unique("sys"))
    sys_sub.subscribe("$SYS/broker/version", qos=0)
    pub = client_factory(broker, unique("all-pub"))
    pub.publish("plain/topic", b"x", qos=1)
    # $SYS is published every second (sys.interval_secs = 1) and retained.
    (v,) = sys_sub.wait_for(1, timeout=4)
    assert v.topic == "$SYS/broker/version"
    got = sub.drain(2.5)
    assert got, "the plain message must arrive"
    assert all(not m.topic.startswith("$") for m in got), \
        f"wildcards at the first level must not match $ topics: {topics_of(got)}"
    assert {m.topic for m in got} == {"plain/topic"}


def test_overlapping_wildcards_match_once_per_subscription_or_once(broker, client_factory):
    """Without subscription ids, a message matching two filters arrives at least once at
    the higher QoS (one copy per match or one copy overall are both allowed)."""
    sub = client_factory(broker, unique("ovl"))
    sub.subscribe("ovl/+", qos=0)
    sub.subscribe("ovl/#", qos=1)
    pub = client_factory(broker, unique("ovl-pub"))
    pub.publish("ovl/a", b"x", qos=1)
    got = sub.drain(1.0)
    assert 1 <= len(got) <= 2 and max(m.qos for m in got) == 1, \
        [(m.topic, m.qos) for m in got]


# ------------------------------------------------------------- shared subscriptions


def test_shared_subscription_round_robin(broker, client_factory):
    members = [client_factory(broker, unique(f"sh{i}")) for i in range(2)]
    for m in members:
        assert m.subscribe("$share/g/sh/t", qos=1) == [1]
    plain = client_factory(broker, unique("sh-plain"))
    plain.subscribe("sh/t", qos=1)
    pub = client_factory(broker, unique("sh-pub"))
    for i in range(10):
        pub.publish("sh/t", str(i).encode(), qos=1)

    assert sorted(int(m.payload) for m in plain.wait_for(10)) == list(range(10))
    per_member = [m.drain(1.5) for m in members]
    counts = [len(x) for x in per_member]
    payloads = [int(msg.payload) for x in per_member for msg in x]
    assert sum(counts) == 10, f"group must get each message once: {counts}"
    assert sorted(payloads) == list(range(10)), f"duplicates or losses: {sorted(payloads)}"
    assert all(c > 0 for c in counts), f"both members should share the load: {counts}"
    assert all(msg.topic == "sh/t" for x in per_member for msg in x)


def test_shared_subscription_groups_are_independent(broker, client_factory):
    g1 = client_factory(broker, unique("g1"))
    g2 = client_factory(broker, unique("g2"))
    g1.subscribe("$share/one/shg/t", qos=1)
    g2.subscribe("$share/two/shg/t", qos=1)
    pub = client_factory(broker, unique("shg-pub"))
    for i in range(4):
        pub.publish("shg/t", str(i).encode(), qos=1)
    assert len(g1.wait_for(4)) == 4
    assert len(g2.wait_for(4)) == 4


def test_shared_subscription_survives_member_leaving(broker, client_factory):
    a = client_factory(broker, unique("sha"))
    b = client_factory(broker, unique("shb"))
    a.subscribe("$share/g/shl/t", qos=1)
    b.subscribe("$share/g/shl/t", qos=1)
    assert b.unsubscribe("$share/g/shl/t") == [0]
    pub = client_factory(broker, unique("shl-pub"))
    for i in range(4):
        pub.publish("shl/t", str(i).encode(), qos=1)
    assert [int(m.payload) for m in a.wait_for(4)] == [0, 1, 2, 3]
    b.expect_nothing(0.5)


# ------------------------------------------------------------- subscription options


def test_no_local(broker, client_factory):
    me = client_factory(broker, unique("nl"))
    me.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))
    other_sub = client_factory(broker, unique("nl-other"))
    other_sub.subscribe("nl/t", qos=1)
    me.publish("nl/t", b"mine", qos=1)
    assert [m.payload for m in other_sub.wait_for(1)] == [b"mine"]
    me.expect_nothing(0.7)
    other = client_factory(broker, unique("nl-pub"))
    other.publish("nl/t", b"theirs", qos=1)
    assert [m.payload for m in me.wait_for(1)] == [b"theirs"]


def test_retain_as_published(broker, client_factory):
    rap = client_factory(broker, unique("rap1"))
    rap.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))
    norap = client_factory(broker, unique("rap0"))
    norap.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=False))
    old = client_factory(broker, unique("rap-v311"), protocol=V311)
    old.subscribe("rap/t", qos=1)
    pub = client_factory(broker, unique("rap-pub"))
    pub.publish("rap/t", b"r", qos=1, retain=True)
    pub.publish("rap/t", b"n", qos=1, retain=False)
    assert [(m.payload, m.retain) for m in rap.wait_for(2)] == [(b"r", True), (b"n", False)]
    assert [(m.payload, m.retain) for m in norap.wait_for(2)] == [(b"r", False), (b"n", False)]
    assert [(m.payload, m.retain) for m in old.wait_for(2)] == [(b"r", False), (b"n", False)]
    # Retained messages sent because of a new subscription always carry RETAIN=1.
    late = client_factory(broker, unique("rap-late"))
    late.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=False))
    assert [(m.payload, m.retain) for m in late.wait_for(1)] == [(b"r", True)]


@pytest.mark.parametrize("handling,first,again", [(0, 1, 1), (1, 1, 0), (2, 0, 0)])
def test_retain_handling(broker, client_factory, handling, first, again):
    pub = client_factory(broker, unique("rh-pub"))
    pub.publish("rh/t", b"kept", qos=1, retain=True)
    sub = client_factory(broker, unique("rh"))
    opts = SubscribeOptions(qos=1, retainHandling=handling)
    sub.subscribe("rh/t", options=opts)
    got = sub.drain(0.8)
    assert len(got) == first, f"retain handling {handling} on a new subscription: {got}"
    assert all(m.retain and m.payload == b"kept" for m in got)
    sub.subscribe("rh/t", options=opts)  # the subscription exists now
    got = sub.drain(0.8)
    assert len(got) == again, f"retain handling {handling} on a re-subscription: {got}"
    # Live messages flow regardless of retain handling.
    pub.publish("rh/t", b"live", qos=1)
    assert [m.payload for m in sub.wait_for(1)] == [b"live"]


# ------------------------------------------------------------- subscription identifiers


def test_subscription_identifier_delivered(broker, raw_factory, client_factory):
    sub = raw_factory(broker)
    ack = sub.connect(unique("sid"))
    assert ack.props.get("subscription_identifier_available", 1) == 1
    sub.subscribe([("sid/a", 1)], props={"subscription_identifier": 7})
    sub.subscribe([("sid/b", 1)], props={"subscription_identifier": 268435455})
    sub.subscribe([("sid/c", 1)])
    pub = client_factory(broker, unique("sid-pub"))
    for t in ("sid/a", "sid/b", "sid/c"):
        pub.publish(t, b"x", qos=1)
    got = {}
    for _ in range(3):
        p = sub.expect(raw.PUBLISH)
        sub.send(raw.ack(raw.PUBACK, p.packet_id))
        got[p.topic] = p.props.get("subscription_identifier")
    assert got == {"sid/a": [7], "sid/b": [268435455], "sid/c": None}


def test_subscription_identifier_via_paho(broker, client_factory):
    sub = client_factory(broker, unique("sidp"))
    sub.subscribe("sidp/t", qos=1,
                  properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42))
    pub = client_factory(broker, unique("sidp-pub"))
    pub.publish("sidp/t", b"x", qos=1)
    (m,) = sub.wait_for(1)
    assert m.properties.SubscriptionIdentifier == [42]


@pytest.mark.nanomq_only("the spec allows one copy per match; nanomq promises one copy")
def test_overlapping_subscriptions_one_copy_with_all_identifiers(broker, raw_factory,
                                                                 client_factory):
    sub = raw_factory(broker)
    assert sub.connect(unique("sido")).reason == 0
    sub.subscribe([("sido/+", raw.sub_options(qos=0))], props={"subscription_identifier": 1})
    sub.subscribe([("sido/#", raw.sub_options(qos=1))], props={"subscription_identifier": 2})
    pub = client_factory(broker, unique("sido-pub"))
    pub.publish("sido/a", b"x", qos=2)
    got = sub.recv_all(1.0)
    assert len(got) == 1, f"expected one copy, got {got!r}"
    (p,) = got
    assert p.qos == 1, "one copy at the highest granted QoS"
    assert sorted(p.props.get("subscription_identifier", [])) == [1, 2], p


# ------------------------------------------------------------- reason codes


def test_suback_grants_requested_qos(broker, raw_factory):
    a = raw_factory(broker)
    assert a.connect(unique("sa")).reason == 0
    ack = a.subscribe([("sa/0", 0), ("sa/1", 1), ("sa/2", 2), ("sa/+/x/#", 2)])
    assert ack.reasons == [0, 1, 2, 2]


@pytest.mark.nanomq_only("mosquitto disconnects on a malformed filter")
def test_suback_reason_codes_per_filter_v5(broker, raw_factory):
    a = raw_factory(broker)
    assert a.connect(unique("sav5")).reason == 0
    ack = a.subscribe([("a/#/b", 1), ("ok/+", 1), ("ok2", 2), ("bad+", 0)])
    assert ack.reasons == [0x8F, 0x01, 0x02, 0x8F], [hex(r) for r in ack.reasons]
    # The valid filters are really subscribed and the connection lives on.
    a.publish("ok/x", b"1", qos=1)
    assert a.expect(raw.PUBLISH).payload == b"1"


@pytest.mark.nanomq_only("mosquitto disconnects on a malformed filter")
def test_suback_failure_code_v311(broker, raw_factory):
    a = raw_factory(broker)
    assert a.connect(unique("sa3"), version=raw.V311).reason == 0
    ack = a.subscribe([("a/#/b", 1), ("ok/+", 1), ("x#", 2)])
    assert ack.reasons == [0x80, 0x01, 0x80], [hex(r) for r in ack.reasons]
    a.publish("ok/y", b"1", qos=1)
    assert a.expect(raw.PUBLISH).payload == b"1"


def test_suback_downgrades_to_max_qos(broker_factory, raw_factory):
    broker = broker_factory({"mqtt": {"max_qos": 1}})
    a = raw_factory(broker)
    ack = a.connect(unique("mq"))
    assert ack.props.get("maximum_qos") == 1, ack
    assert a.subscribe([("mq/t", 2)]).reasons == [1]


def test_unsuback_reason_codes(broker, raw_factory, client_factory):
    a = raw_factory(broker)
    assert a.connect(unique("us")).reason == 0
    a.subscribe([("us/a", 1), ("us/b", 1)])
    a.send(raw.unsubscribe(9, ["us/a", "us/none", "us/b"]))
    ack = a.expect(raw.UNSUBACK)
    assert ack.packet_id == 9
    assert ack.reasons == [0x00, 0x11, 0x00], [hex(r) for r in ack.reasons]
    pub = client_factory(broker, unique("us-pub"))
    pub.publish("us/a", b"x", qos=1)
    pub.publish("us/b", b"x", qos=1)
    assert a.recv_all(0.7) == [], "no delivery after unsubscribe"


def test_unsubscribe_v311(broker, client_factory):
    sub = client_factory(broker, unique("us3"), protocol=V311)
    sub.subscribe("us3/t", qos=1)
    sub.unsubscribe("us3/t")
    pub = client_factory(broker, unique("us3-pub"), protocol=V5)
    pub.publish("us3/t", b"x", qos=1)
    sub.expect_nothing(0.7)


def test_subscribe_replaces_existing_subscription_qos(broker, client_factory):
    sub = client_factory(broker, unique("rep"))
    assert sub.subscribe("rep/t", qos=0) == [0]
    assert sub.subscribe("rep/t", qos=2) == [2]
    pub = client_factory(broker, unique("rep-pub"))
    pub.publish("rep/t", b"x", qos=2)
    got = sub.drain(1.0)
    assert [(m.payload, m.qos) for m in got] == [(b"x", 2)], "one subscription, new QoS"
