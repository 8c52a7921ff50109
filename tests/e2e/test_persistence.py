"""Durable state: persistent sessions and retained messages survive a restart, and a broker
killed with SIGKILL at random moments loses nothing it acknowledged (sync = "always").

The clients are raw sockets (raw.py), so every acknowledgement the broker sent is seen and
counted exactly, and a QoS 2 publisher can resume its flows after the restart the way the
protocol says (PUBLISH again with DUP for packet ids without PUBREC, PUBREL for the others).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import pytest

import raw
from conftest import V5, V311
from raw import PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient

pytestmark = pytest.mark.nanomq_only("nanomq's [persistence] section and state database")

SESSION = {"session_expiry_interval": 3600}
QUEUE = {"max_queued_messages": 100000, "receive_maximum": 64}


def durable_broker(broker_factory, tmp_path, sync="always", **persistence):
    state = tmp_path / "state"
    return broker_factory({
        "limits": QUEUE,
        "log": {"level": "info"},
        "persistence": {"dir": str(state), "sync": sync, **persistence},
    }), state


def connect(broker, client_id, clean=False, **kw) -> tuple[RawClient, raw.Packet]:
    c = RawClient(broker.host, broker.port)
    ack = c.connect(client_id, clean=clean, props=SESSION, **kw)
    assert ack.reason == 0, ack
    return c, ack


def drain(broker, client_id, quiet=1.0, expect_present=True, until=()) -> list[bytes]:
    """Connects a persistent v5 session, takes every message it is sent (acknowledging each,
    QoS 2 flows to the end) until every payload in `until` has come (or 30 s passed) and then
    nothing more for `quiet` seconds, and leaves with the session kept. Returns the payloads in
    arrival order, each QoS 2 message once."""
    c, ack = connect(broker, client_id)
    assert ack.session_present is expect_present, ack
    got = []
    open_qos2 = set()
    waiting = set(until)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                p = c.recv(quiet)
            except raw.Timeout:
                if not waiting or time.monotonic() > deadline:
                    break
                continue
            if p.type == PUBLISH:
                waiting.discard(p.payload)
                if p.qos == 1:
                    c.send(raw.ack(PUBACK, p.packet_id))
                    got.append(p.payload)
                elif p.qos == 2:
                    if p.packet_id not in open_qos2:
                        open_qos2.add(p.packet_id)
                        got.append(p.payload)
                    c.send(raw.ack(PUBREC, p.packet_id))
                else:
                    got.append(p.payload)
            elif p.type == PUBREL:
                open_qos2.discard(p.packet_id)
                c.send(raw.ack(PUBCOMP, p.packet_id))
    finally:
        c.disconnect()
    return got


def subscribe_persistent(broker, client_id, topic, qos):
    c, _ = connect(broker, client_id, clean=True)
    suback = c.subscribe([(topic, qos)])
    assert suback.reasons == [qos]
    c.disconnect()


MEMORY_ONLY = "kept in memory only and lost on restart"


def test_memory_only_without_a_state_directory_is_said_in_the_log(broker_factory, tmp_path):
    memory = broker_factory({"log": {"level": "info"}})
    durable, state = durable_broker(broker_factory, tmp_path)
    for broker in (memory, durable):
        # The line comes before "listening on", so a broker that listens has logged it.
        with RawClient(broker.host, broker.port) as c:
            c.connect("probe")
    assert MEMORY_ONLY in memory.log_text(), memory.log_text()
    durable_log = durable.log_text()
    assert MEMORY_ONLY not in durable_log and "state database open" in durable_log, durable_log
    assert (state / "nanomq.db").exists()


def test_restart_restores_sessions_subscriptions_queues_and_retained(broker_factory, tmp_path):
    broker, _ = durable_broker(broker_factory, tmp_path)
    subscribe_persistent(broker, "keeper", "r/#", 1)
    with RawClient(broker.host, broker.port) as pub:
        pub.connect("pub")
        for i in range(20):
            assert pub.publish("r/q", f"m{i}".encode(), qos=1).reason in (0, 0x10)
        pub.publish("r/retained", b"kept", qos=1, retain=True)
        pub.disconnect()
    assert broker.stop() == 0
    broker.restart()
    assert "state restored" in broker.log_text()

    got = drain(broker, "keeper")
    assert got == [f"m{i}".encode() for i in range(20)] + [b"kept"]

    # The subscription came back too: a message published now reaches the session.
    with RawClient(broker.host, broker.port) as pub:
        pub.connect("pub")
        pub.publish("r/after", b"new", qos=1)
        pub.disconnect()
    assert drain(broker, "keeper") == [b"new"]

    # The retained message is there for a new subscriber.
    with RawClient(broker.host, broker.port) as c:
        c.connect("fresh")
        c.send(raw.subscribe(1, [("r/retained", 1)]))
        publish = c.expect(PUBLISH, skip=(raw.SUBACK,))
        assert (publish.payload, publish.retain) == (b"kept", True)


def test_clean_start_and_expiry_zero_leave_nothing_behind(broker_factory, tmp_path):
    broker, state = durable_broker(broker_factory, tmp_path)
    subscribe_persistent(broker, "gone", "g/#", 1)
    c, _ = connect(broker, "gone", clean=True)
    c.disconnect(props={"session_expiry_interval": 0})
    assert broker.stop() == 0
    db = sqlite3.connect(state / "nanomq.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM subscriptions").fetchone() == (0,)
    finally:
        db.close()


class Publisher(threading.Thread):
    """Publishes numbered messages with a window of packet ids until the connection dies,
    recording which the broker acknowledged (PUBACK, or PUBREC for QoS 2)."""

    WINDOW = 16

    def __init__(self, broker, client_id, qos, first, retained_every=0):
        super().__init__(daemon=True)
        self.broker, self.client_id, self.qos = broker, client_id, qos
        self.next = first
        self.retained_every = retained_every
        self.acked: set[int] = set()
        self.retained_acked: dict[str, int] = {}
        # QoS 2 flows: packet id -> (seq, topic, released?)
        self.flows: dict[int, list] = {}
        self.error: BaseException | None = None

    def topic_of(self, seq):
        if self.retained_every and seq % self.retained_every == 0:
            return f"crash/r/{seq // self.retained_every % 4}", True
        return "crash/q", False

    def run(self):
        try:
            c, _ = connect(self.broker, self.client_id)
        except (OSError, raw.Closed, raw.Timeout):
            return
        pid = 0
        try:
            while True:
                while len(self.flows) < self.WINDOW:
                    pid = pid % 65535 + 1
                    seq = self.next
                    self.next += 1
                    topic, retain = self.topic_of(seq)
                    self.flows[pid] = [seq, topic, False]
                    c.send(raw.publish(topic, str(seq).encode(), qos=self.qos, packet_id=pid,
                                       retain=retain))
                p = c.recv(5)
                self.on_ack(c, p)
        except (OSError, raw.Closed, raw.Timeout):
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            c.close()

    def on_ack(self, c, p):
        if p.type in (PUBACK, PUBREC):
            assert p.reason in (0, 0x10), p
            seq, topic, _ = self.flows[p.packet_id]
            self.acked.add(seq)
            if topic.startswith("crash/r/"):
                self.retained_acked[topic] = max(self.retained_acked.get(topic, -1), seq)
            if p.type == PUBACK:
                del self.flows[p.packet_id]
            else:
                self.flows[p.packet_id][2] = True
                c.send(raw.ack(PUBREL, p.packet_id))
        elif p.type == PUBCOMP:
            del self.flows[p.packet_id]

    def resume(self):
        """After a restart: finish every open QoS 2 flow as the protocol says."""
        c, ack = connect(self.broker, self.client_id)
        assert ack.session_present, "the publisher's session did not survive"
        for pid, (seq, topic, released) in sorted(self.flows.items()):
            if released:
                c.send(raw.ack(PUBREL, pid))
            else:
                c.send(raw.publish(topic, str(seq).encode(), qos=2, packet_id=pid, dup=True,
                                   retain=topic.startswith("crash/r/")))
        while self.flows:
            self.on_ack(c, c.recv(5))
        c.disconnect()


@pytest.mark.parametrize("qos", [1, 2])
def test_sigkill_at_random_moments_loses_nothing_acknowledged(broker_factory, tmp_path, qos):
    """Several rounds: an offline persistent session subscribed at `qos`, a publisher sending
    as fast as it can (every fifth message retained, on four topics), SIGKILL at a random
    moment, restart, then the session's queue and the retained messages are checked against
    what the broker acknowledged: all of it there, QoS 2 exactly once."""
    rng = random.Random(1000 + qos)
    broker, _ = durable_broker(broker_factory, tmp_path)
    subscribe_persistent(broker, "offline", "crash/#", qos)
    # The publisher's own session must survive too, for its QoS 2 flows.
    connect(broker, "publisher", clean=True)[0].disconnect()
    first = 0
    received_total = 0
    for round_ in range(4):
        publisher = Publisher(broker, "publisher", qos, first, retained_every=5)
        publisher.start()
        time.sleep(rng.uniform(0.05, 0.6))
        broker.kill()
        publisher.join(10)
        assert not publisher.is_alive() and publisher.error is None, publisher.error
        assert publisher.acked, f"round {round_}: nothing was acknowledged before the kill"
        broker.restart()
        if qos == 2:
            publisher.resume()
        acked = {str(s).encode() for s in publisher.acked}
        got = [int(p) for p in drain(broker, "offline", until=acked)]
        missing = publisher.acked - set(got)
        assert not missing, (f"round {round_}: {len(missing)} acknowledged messages lost, "
                             f"e.g. {sorted(missing)[:10]}")
        assert all(first <= s < publisher.next for s in got), "a message from an earlier round"
        if qos == 2:
            assert len(got) == len(set(got)), "a QoS 2 message was delivered twice"
        # Queued messages come in publish order.
        assert got == sorted(got)
        with RawClient(broker.host, broker.port) as c:
            c.connect(f"check{round_}")
            c.send(raw.subscribe(1, [("crash/r/#", 0)]))
            retained = {p.topic: int(p.payload) for p in c.recv_all(1.0) if p.type == PUBLISH}
        for topic, seq in publisher.retained_acked.items():
            assert retained.get(topic, -1) >= seq, (round_, topic, seq, retained, first)
        received_total += len(got)
        first = publisher.next
    assert received_total > 0
    assert "corrupt" not in broker.log_text()


def test_sync_batch_and_off_acknowledge_without_waiting_and_still_restore(broker_factory,
                                                                        tmp_path):
    for sync in ("batch", "off"):
        broker, _ = durable_broker(broker_factory, tmp_path / sync, sync=sync, batch_window_ms=5)
        subscribe_persistent(broker, "s", "b/#", 1)
        with RawClient(broker.host, broker.port) as pub:
            pub.connect("pub")
            for i in range(10):
                pub.publish("b/x", str(i).encode(), qos=1)
            pub.disconnect()
        assert broker.stop() == 0
        broker.restart()
        assert drain(broker, "s") == [str(i).encode() for i in range(10)], sync


def test_store_bounds_drop_and_count(broker_factory, tmp_path):
    broker, _ = durable_broker(broker_factory, tmp_path, max_session_bytes=100)
    subscribe_persistent(broker, "small", "s/#", 1)
    with RawClient(broker.host, broker.port) as pub:
        pub.connect("pub")
        for i in range(10):
            pub.publish("s/x", b"x" * 30, qos=1)  # 33 bytes stored each: 3 fit
        pub.disconnect()
    assert len(drain(broker, "small")) == 3
    assert "state database bound reached: message dropped" in broker.log_text()


def test_corrupt_database_refuses_to_start_and_recovers_on_request(broker_factory, tmp_path):
    broker, state = durable_broker(broker_factory, tmp_path)
    subscribe_persistent(broker, "s", "c/#", 1)
    assert broker.stop() == 0
    db = state / "nanomq.db"
    db.write_bytes(b"this is not an SQLite database, it was overwritten" * 100)

    with pytest.raises(pytest.fail.Exception):
        broker.restart()
    log = broker.log_text()
    assert "corrupt or unreadable" in log and "--recover-store" in log
    assert db.read_bytes().startswith(b"this is not"), "the file was changed"

    broker.extra_args = ["--recover-store"]
    broker.restart()
    log = broker.log_text()
    assert "moved to" in log and "starting with empty state" in log
    aside = [p for p in state.iterdir() if p.name.startswith("nanomq.db.corrupt-")]
    assert aside and aside[0].read_bytes().startswith(b"this is not")
    # It starts empty: the old session is gone, and new state is kept again.
    subscribe_persistent(broker, "s", "c/#", 1)
    assert broker.stop() == 0
    broker.restart()
    drain(broker, "s", quiet=0.2)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_paho_sessions_survive_a_restart(broker_factory, client_factory, tmp_path, protocol):
    """The same with a real SDK: a 3.1.1 session without Clean Session (kept forever), or an
    MQTT 5 session with an expiry, resumes after a restart with `session present`."""
    broker, _ = durable_broker(broker_factory, tmp_path)
    kw = {"session_expiry": 600} if protocol == V5 else {}
    sub = client_factory(broker, "paho-keeper", protocol=protocol, clean_start=False, **kw)
    sub.subscribe("paho/#", qos=1)
    sub.disconnect()
    pub = client_factory(broker, "paho-pub", protocol=protocol)
    for i in range(5):
        pub.publish("paho/t", f"p{i}".encode(), qos=1)
    pub.disconnect()
    assert broker.stop() == 0
    broker.restart()
    sub = client_factory(broker, "paho-keeper", protocol=protocol, clean_start=False, **kw)
    assert sub.connack[1], "session present after the restart"
    got = sub.wait_for(5)
    assert [m.payload for m in got] == [f"p{i}".encode() for i in range(5)]
    # The restored subscription still routes.
    pub = client_factory(broker, "paho-pub2", protocol=protocol)
    pub.publish("paho/t", b"after", qos=1)
    assert sub.wait_for(1)[0].payload == b"after"
