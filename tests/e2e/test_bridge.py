"""Bridges (`[[bridges]]`): nanomq as an MQTT client of an upstream ("cloud") broker, forwarding
local messages up (`[[bridges.forwards]]`) and bringing remote ones down
(`[[bridges.subscriptions]]`), with an offline cache for what cannot go up yet.

The upstream is a real Debian mosquitto per test (conftest.Mosquitto through `upstream_factory`)
on free loopback ports that stay the same across its stop() / start(), so outages are real:
the process is gone and comes back on the same address. Tests that need messages queued at the
upstream while its test subscriber is away run it with `persistence true`: the subscriber (a
3.1.1 session with clean session off, `Collector`) keeps its subscription and queue across the
restart whichever reconnects first, the subscriber or the bridge.

What the bridge reports is read two ways: its log lines on stderr (`bridge NAME connected to
HOST:PORT` at info, a warn line naming the bridge and the reason of a failed connect) and the
retained `$SYS/broker/bridges/NAME/...` topics, published every `sys.interval_secs` (1 s in the
shared test config; `SysWatcher`).

Every wait has a timeout; every process is stopped at teardown by the fixtures.
"""

from __future__ import annotations

import queue
import re
import signal
import ssl
import threading
import time
from collections import Counter, defaultdict

import pytest

from conftest import V311, Broker, Mosquitto, to_toml, unique
from pki import Pki

pytestmark = pytest.mark.nanomq_only("bridges")

PROTOCOLS = [pytest.param("5", id="v5"), pytest.param("3.1.1", id="v311")]
# How mosquitto logs the protocol of a client: p2 is 3.1.1, p5 is MQTT 5.
MOSQUITTO_P = {"5": "p5", "3.1.1": "p2"}
# The reasons an upstream gives for bad credentials: mosquitto 2.0 sends "Not authorized"
# (0x87) in MQTT 5 and "not authorised" (5) in 3.1.1; other brokers say "Bad user name or
# password" (0x86 / 4).
REFUSED_CREDENTIALS = re.compile(r"not authori[sz]ed|bad user ?name or password", re.I)
CONNECT_TIMEOUT = 20.0  # seconds for a bridge to (re)connect once its upstream is up


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("bridge-pki"))


# ------------------------------------------------------------------ config and waiting


def bridge(name: str, upstream: Mosquitto, *, port: int | None = None, forwards=(),
           subscriptions=(), **kw) -> dict:
    """One `[[bridges]]` entry to `upstream` (its plain listener unless `port`), reconnecting
    quickly (200 ms doubling to 2 s) unless `kw` says otherwise."""
    cfg = {"name": name, "address": f"127.0.0.1:{port or upstream.port}",
           "reconnect_min_ms": 200, "reconnect_max_ms": 2000, **kw}
    if forwards:
        cfg["forwards"] = list(forwards)
    if subscriptions:
        cfg["subscriptions"] = list(subscriptions)
    return cfg


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """predicate()'s first truthy value within `timeout` s; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def log_count(broker: Broker, pattern: str) -> int:
    """Lines of the broker's whole log (every start so far) matching `pattern`."""
    rx = re.compile(pattern)
    return sum(1 for line in broker.log_text(tail=10**9).splitlines() if rx.search(line))


def connected_pattern(name: str, port: int) -> str:
    return rf"bridge {re.escape(name)} connected to 127\.0\.0\.1:{port}\b"


def wait_connected(broker: Broker, name: str, upstream: Mosquitto, n: int = 1,
                   port: int | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Until the broker has logged `bridge NAME connected to 127.0.0.1:PORT` n times."""
    pattern = connected_pattern(name, port or upstream.port)
    wait_until(lambda: log_count(broker, pattern) >= n, timeout,
               f"log line #{n} matching {pattern!r}")


def warn_pattern(name: str) -> str:
    return rf"\bWARN\b.*\bbridge {re.escape(name)}\b"


class SysWatcher:
    """A local client subscribed to `$SYS/broker/bridges/#` that keeps every value it sees, per
    bridge and key (`state`, `cache/messages`, ...), with the time it came."""

    def __init__(self, client_factory, broker: Broker):
        self.client = client_factory(broker, unique("sysw"))
        self._cond = threading.Condition()
        self.history: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        self.client.c.on_message = self._on_message
        self.client.subscribe("$SYS/broker/bridges/#", qos=0)

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/", 4)  # $SYS broker bridges NAME KEY...
        if len(parts) < 5:
            return
        with self._cond:
            self.history[(parts[3], parts[4])].append(
                (time.monotonic(), msg.payload.decode("utf-8", "replace")))
            self._cond.notify_all()

    def latest(self, name: str, key: str) -> str | None:
        with self._cond:
            values = self.history.get((name, key))
            return values[-1][1] if values else None

    def values(self, name: str, key: str, since: float = 0.0, until: float = float("inf")):
        with self._cond:
            return [v for t, v in self.history.get((name, key), []) if since <= t <= until]

    def wait(self, name: str, key: str, predicate, timeout: float = 10.0,
             what: str = "") -> str:
        """Until the latest value of NAME/KEY satisfies predicate(str); returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                values = self.history.get((name, key))
                if values and predicate(values[-1][1]):
                    return values[-1][1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [v for _, v in (values or [])][-10:]
                    raise AssertionError(
                        f"$SYS/broker/bridges/{name}/{key} {what or 'as expected'}: not within "
                        f"{timeout:.0f}s; last values {seen}")
                self._cond.wait(min(left, 0.2))

    def wait_int(self, name: str, key: str, predicate, timeout: float = 10.0,
                 what: str = "") -> int:
        return int(self.wait(name, key, lambda v: v.strip().isdigit() and predicate(int(v)),
                             timeout, what))


class Collector:
    """A QoS 1 subscriber at the upstream with a kept session (3.1.1, clean session off):
    against Mosquitto(persistence=True) its subscription and queued messages survive the
    upstream's restart, after which reconnect() takes them. messages() is everything it got
    since it was made, from every connection, in arrival order."""

    def __init__(self, client_factory, upstream: Mosquitto, topic_filter: str):
        self.client_factory = client_factory
        self.upstream = upstream
        self.client_id = unique("collector")
        self.clients = [client_factory(upstream, self.client_id, V311, clean_start=False)]
        assert self.clients[0].subscribe(topic_filter, qos=1) == [1]
        self.got: list = []

    def reconnect(self) -> None:
        self._take()
        self.clients[-1].close()
        c = self.client_factory(self.upstream, self.client_id, V311, clean_start=False)
        self.clients.append(c)
        assert c.session_present, "the upstream lost the collector's session over its restart"

    def _take(self) -> None:
        for c in self.clients:
            while True:
                try:
                    self.got.append(c.messages.get_nowait())
                except queue.Empty:
                    break

    def messages(self) -> list:
        self._take()
        return list(self.got)

    def seqs(self, topic: str) -> list[int]:
        """The payloads (sequence numbers) of every message on `topic`, in arrival order."""
        return [int(m.payload) for m in self.messages() if m.topic == topic]

    def wait_seqs(self, topic: str, expected, timeout: float) -> list[int]:
        """Until every number of `expected` has come on `topic`; returns all that came."""
        expected = set(expected)

        def done():
            return expected <= set(self.seqs(topic))
        try:
            wait_until(done, timeout, "upstream messages", interval=0.1)
        except AssertionError:
            got = set(self.seqs(topic))
            missing = sorted(expected - got)
            raise AssertionError(
                f"{len(missing)} of {len(expected)} messages never reached the upstream within "
                f"{timeout:.0f}s; first missing {missing[:20]}, {len(got)} distinct "
                f"arrived") from None
        return self.seqs(topic)


class SteadyPublisher(threading.Thread):
    """Publishes 0, 1, 2, ... as payloads to `topic` at QoS 1, `rate` per second, each
    acknowledged before the next; `acked` is every number the broker acknowledged. Stops at
    stop() or at the first failure (kept in `error`)."""

    def __init__(self, client, topic: str, rate: float):
        super().__init__(daemon=True)
        self.client = client
        self.topic = topic
        self.rate = rate
        self.acked: list[int] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self._halt.is_set():
            delay = start + n / self.rate - time.monotonic()
            if delay > 0 and self._halt.wait(delay):
                break
            try:
                self.client.publish(self.topic, str(n).encode(), qos=1, timeout=5)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                self.error = e
                return
            self.acked.append(n)
            n += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(15)
        assert not self.is_alive(), "publisher thread did not stop"


def check_in_order(got: list[int], expected: list[int]) -> int:
    """Every number of `expected` is in `got`, their first arrivals in increasing order, and
    nothing else came; returns the number of duplicates (QoS 1 may resend) and prints it."""
    first: list[int] = []
    seen: set[int] = set()
    for n in got:
        if n not in seen:
            seen.add(n)
            first.append(n)
    missing = sorted(set(expected) - seen)
    assert not missing, f"{len(missing)} messages lost: {missing[:30]}"
    unexpected = sorted(seen - set(expected))
    assert not unexpected, f"messages nobody published or acknowledged: {unexpected[:30]}"
    out_of_order = [(a, b) for a, b in zip(first, first[1:]) if b < a]
    assert not out_of_order, f"first arrivals out of order (earlier, later): {out_of_order[:10]}"
    dups = len(got) - len(first)
    print(f"{len(first)} distinct messages upstream in order, {dups} duplicates: "
          f"{sorted(n for n, c in Counter(got).items() if c > 1)[:30]}")
    return dups


def probe(publisher, topic: str, receiver, expect_topic: str, timeout: float = 15.0) -> None:
    """Publishes `topic` (QoS 1, payload `probe`) every 0.3 s until `receiver` gets
    `expect_topic`: the path (and the bridge's upstream subscriptions) works. Then lets the
    stragglers come and throws away everything `receiver` got."""
    deadline = time.monotonic() + timeout
    while True:
        publisher.publish(topic, b"probe", qos=1)
        if any(m.topic == expect_topic for m in receiver.drain(0.3)):
            receiver.drain(0.7)
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic!r} never arrived as {expect_topic!r} within "
                                 f"{timeout:.0f}s")


def one(client, topic: str, timeout: float = 10.0):
    """The next message `client` gets, which must be on `topic`."""
    (m,) = client.wait_for(1, timeout=timeout)
    assert m.topic == topic, f"expected a message on {topic!r}, got {m.topic!r} {m.payload!r}"
    return m


# ------------------------------------------------------------------ forwards and subscriptions


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forward_maps_topics_downgrades_qos_and_keeps_retain(
        broker_factory, upstream_factory, client_factory, protocol):
    """Local -> upstream: `remote` templates ({topic} prefix, {N} levels), QoS = min(the
    message's, the forward's), RETAIN kept only where `retain = true`; the upstream sees the
    configured client id, protocol, clean start off and keep alive."""
    up = upstream_factory()
    live = client_factory(up, unique("live"))
    assert live.subscribe("site1/#", qos=2) == [2]
    local = broker_factory({"bridges": [bridge("cloud", up, protocol=protocol,
                                               client_id="edge1", keepalive_secs=60,
                                               clean_start=False, forwards=[
        {"filter": "sensors/#", "remote": "site1/{topic}", "qos": 1, "retain": True},
        {"filter": "slow/#", "remote": "site1/{topic}", "qos": 0, "retain": True},
        {"filter": "plain/#", "remote": "site1/{topic}", "qos": 1, "retain": False},
        {"filter": "meter/+/+", "remote": "site1/m/{3}/{2}", "qos": 1},
    ])]})
    wait_connected(local, "cloud", up)
    seen = up.count_log(rf"New client connected from 127\.0\.0\.1:\d+ as edge1 "
                        rf"\({MOSQUITTO_P[protocol]}, c0, k60")
    assert seen == 1, f"upstream log has {seen} matching CONNECTs of edge1"

    pub = client_factory(local, unique("pub"))
    pub.publish("sensors/a/b", b"reading-1", qos=1)
    m = one(live, "site1/sensors/a/b")
    assert (m.payload, m.qos) == (b"reading-1", 1)

    pub.publish("sensors/q2", b"exactly once here", qos=2)
    m = one(live, "site1/sensors/q2")
    assert (m.payload, m.qos) == (b"exactly once here", 1), "QoS 2 must go up at the forward's 1"

    pub.publish("slow/x", b"zero", qos=1)
    m = one(live, "site1/slow/x")
    assert (m.payload, m.qos) == (b"zero", 0), "QoS 1 must go up at the forward's 0"

    pub.publish("meter/a/b", b"levels", qos=1)
    assert one(live, "site1/m/b/a").payload == b"levels"

    pub.publish("sensors/r", b"kept", qos=1, retain=True)
    assert one(live, "site1/sensors/r").payload == b"kept"
    pub.publish("plain/r", b"not kept", qos=1, retain=True)
    assert one(live, "site1/plain/r").payload == b"not kept"

    late = client_factory(up, unique("late"))
    late.subscribe("site1/sensors/r", qos=1)
    m = one(late, "site1/sensors/r", timeout=5)
    assert (m.payload, m.retain) == (b"kept", True), "retain = true must keep the RETAIN flag"
    late.subscribe("site1/plain/r", qos=1)
    late.expect_nothing(1.0)
    live.expect_nothing(0.5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscription_maps_remote_topics_down(broker_factory, upstream_factory, client_factory,
                                              protocol):
    """Upstream -> local: `local` templates ({N..} from a level on, {N} one level, default
    unchanged), QoS = min(the publisher's, the subscription's); nothing else comes down."""
    up = upstream_factory()
    local = broker_factory({"bridges": [bridge("cloud", up, protocol=protocol, subscriptions=[
        {"filter": "cmd/site1/#", "local": "commands/{3..}", "qos": 1},
        {"filter": "dev/+/status", "local": "status/{2}", "qos": 1},
        {"filter": "bcast/#", "qos": 0},
    ])]})
    wait_connected(local, "cloud", up)
    sub = client_factory(local, unique("sub"))
    for f in ("commands/#", "status/#", "bcast/#", "other/#", "cmd/#"):
        sub.subscribe(f, qos=2)
    cloud = client_factory(up, unique("cloud"))
    probe(cloud, "cmd/site1/probe", sub, "commands/probe")

    cloud.publish("cmd/site1/x/y", b"go", qos=1)
    m = one(sub, "commands/x/y")
    assert (m.payload, m.qos) == (b"go", 1)
    cloud.publish("cmd/site1/z", b"z", qos=1)
    assert one(sub, "commands/z").payload == b"z"

    cloud.publish("dev/abc/status", b"up", qos=1)
    m = one(sub, "status/abc")
    assert (m.payload, m.qos) == (b"up", 1)

    cloud.publish("bcast/all", b"hello", qos=1)
    m = one(sub, "bcast/all")
    assert (m.payload, m.qos) == (b"hello", 0), "the subscription's QoS 0 caps it"

    cloud.publish("other/x", b"not bridged", qos=1)
    cloud.publish("dev/abc/other", b"not bridged", qos=1)
    sub.expect_nothing(1.0)


def overlapping_bridge(up: Mosquitto, protocol: str) -> dict:
    return bridge("cloud", up, protocol=protocol,
                  forwards=[{"filter": "t/#", "remote": "{topic}", "qos": 1}],
                  subscriptions=[{"filter": "t/#", "local": "{topic}", "qos": 1}])


def both_ways_setup(broker_factory, upstream_factory, client_factory, protocol):
    """A bridge forwarding t/# up and subscribing t/# down, a subscriber to t/# on each side
    and a publisher on each side, after a probe each way."""
    up = upstream_factory()
    local = broker_factory({"bridges": [overlapping_bridge(up, protocol)]})
    wait_connected(local, "cloud", up)
    loc_sub = client_factory(local, unique("locsub"))
    loc_sub.subscribe("t/#", qos=1)
    cloud_sub = client_factory(up, unique("cloudsub"))
    cloud_sub.subscribe("t/#", qos=1)
    loc_pub = client_factory(local, unique("locpub"))
    cloud_pub = client_factory(up, unique("cloudpub"))
    probe(loc_pub, "t/probe-up", cloud_sub, "t/probe-up")
    probe(cloud_pub, "t/probe-down", loc_sub, "t/probe-down")
    copies(0.3, cloud_sub, loc_sub)  # the probes' copies on the other side
    return loc_sub, cloud_sub, loc_pub, cloud_pub


def copies(seconds: float, *clients) -> list[Counter]:
    """Per client, how many messages per topic it got within the next `seconds`."""
    time.sleep(seconds)
    return [Counter(m.topic for m in c.drain(0.05)) for c in clients]


def test_both_directions_overlapping_topics_no_echo_v5(broker_factory, upstream_factory,
                                                       client_factory):
    """Forward t/# and subscription t/# on one MQTT 5 bridge: a local message goes up once and
    does not come back down (No Local); a remote one comes down once and is not sent back up."""
    loc_sub, cloud_sub, loc_pub, cloud_pub = both_ways_setup(
        broker_factory, upstream_factory, client_factory, "5")

    loc_pub.publish("t/up", b"from the edge", qos=1)
    up_copies, local_copies = copies(2.0, cloud_sub, loc_sub)
    assert up_copies == {"t/up": 1}, f"upstream got {dict(up_copies)}"
    assert local_copies == {"t/up": 1}, f"local subscriber got {dict(local_copies)} (echo?)"

    cloud_pub.publish("t/down", b"from the cloud", qos=1)
    local_copies, up_copies = copies(2.0, loc_sub, cloud_sub)
    assert local_copies == {"t/down": 1}, f"local subscriber got {dict(local_copies)}"
    assert up_copies == {"t/down": 1}, f"upstream got {dict(up_copies)} (sent back up?)"


def test_both_directions_overlapping_topics_no_loop_v311(broker_factory, upstream_factory,
                                                         client_factory):
    """The same over MQTT 3.1.1, which has no No Local: the upstream sends the bridge's own
    message back and it may come down once more, but what came down is never forwarded up
    again, so nothing loops: the upstream sees each message exactly once."""
    loc_sub, cloud_sub, loc_pub, cloud_pub = both_ways_setup(
        broker_factory, upstream_factory, client_factory, "3.1.1")

    loc_pub.publish("t/up", b"from the edge", qos=1)
    up_copies, local_copies = copies(3.0, cloud_sub, loc_sub)
    assert up_copies == {"t/up": 1}, f"upstream got {dict(up_copies)} (loop?)"
    assert set(local_copies) == {"t/up"} and local_copies["t/up"] in (1, 2), \
        f"local subscriber got {dict(local_copies)}"

    cloud_pub.publish("t/down", b"from the cloud", qos=1)
    local_copies, up_copies = copies(2.0, loc_sub, cloud_sub)
    assert local_copies == {"t/down": 1}, f"local subscriber got {dict(local_copies)}"
    assert up_copies == {"t/down": 1}, f"upstream got {dict(up_copies)} (sent back up?)"


# ------------------------------------------------------------------ TLS

TLS_CASES = ["ca", "ca-server-name", "client-certificate"]


def paho_tls_context(pki: Pki, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if client_cert:
        ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    return ctx


@pytest.mark.parametrize("case", TLS_CASES)
def test_tls_upstream(broker_factory, upstream_factory, client_factory, pki, case):
    """A bridge over TLS to mosquitto's TLS listener: the server verified against `ca` (by the
    address's IP, or by `server_name` = localhost), and with `require_certificate true` the
    bridge's client certificate; messages flow both ways; default client id."""
    need_cert = case == "client-certificate"
    tls = {"certfile": pki.server.cert, "keyfile": pki.server.key}
    if need_cert:
        tls.update(cafile=pki.clients_ca, require_certificate=True)
    up = upstream_factory(tls=tls)
    # The listener works for paho first, so a failure below is the bridge's.
    direct = client_factory(up, unique("direct"), transport="tls", port=up.tls_port,
                            tls={"context": paho_tls_context(pki, need_cert)})
    direct.disconnect()

    bridge_tls = {"ca": str(pki.ca)}
    if case == "ca-server-name":
        bridge_tls["server_name"] = "localhost"
    if need_cert:
        bridge_tls.update(cert=str(pki.client.cert), key=str(pki.client.key))
    local = broker_factory({"bridges": [bridge(
        "cloud", up, port=up.tls_port, tls=bridge_tls,
        forwards=[{"filter": "up/#", "remote": "{topic}", "qos": 1}],
        subscriptions=[{"filter": "down/#", "local": "{topic}", "qos": 1}])]})
    wait_connected(local, "cloud", up, port=up.tls_port)
    assert up.count_log(rf"New connection from 127\.0\.0\.1:\d+ on port {up.tls_port}\.") >= 1
    assert up.count_log(r"New client connected from 127\.0\.0\.1:\d+ as nanomq-bridge-cloud "
                        r"\(p5,") == 1, "expected the default client id, MQTT 5"

    cloud = client_factory(up, unique("cloud"))  # on the plain listener
    cloud.subscribe("up/#", qos=1)
    loc = client_factory(local, unique("loc"))
    loc.subscribe("down/#", qos=1)
    loc_pub = client_factory(local, unique("locpub"))
    loc_pub.publish("up/x", b"over tls", qos=1)
    assert one(cloud, "up/x").payload == b"over tls"
    probe(cloud, "down/probe", loc, "down/probe")
    cloud.publish("down/y", b"back over tls", qos=1)
    assert one(loc, "down/y").payload == b"back over tls"


@pytest.mark.parametrize("case", ["no-client-certificate", "unknown-server-ca"])
def test_tls_upstream_refused(broker_factory, upstream_factory, client_factory, pki, case):
    """A TLS upstream the bridge cannot use (it asks for a client certificate the bridge does
    not have; its certificate is from a CA the bridge does not trust): a warn line, never
    connected, and the local broker keeps serving."""
    tls = {"certfile": pki.server.cert, "keyfile": pki.server.key}
    if case == "no-client-certificate":
        tls.update(cafile=pki.clients_ca, require_certificate=True)
    up = upstream_factory(tls=tls)
    trust = pki.rogue_ca if case == "unknown-server-ca" else pki.ca
    local = broker_factory({"bridges": [bridge(
        "cloud", up, port=up.tls_port, tls={"ca": str(trust)},
        forwards=[{"filter": "up/#", "qos": 1}])]})
    watcher = SysWatcher(client_factory, local)
    wait_until(lambda: log_count(local, warn_pattern("cloud")), 10, "warn line for bridge cloud")
    watcher.wait("cloud", "state", lambda v: v in ("connecting", "backing-off"), 5,
                 "connecting or backing-off")
    time.sleep(1.5)
    assert log_count(local, connected_pattern("cloud", up.tls_port)) == 0
    assert "connected" not in watcher.values("cloud", "state")
    assert up.count_log(r"New client connected from .* as nanomq-bridge-cloud") == 0
    assert watcher.latest("cloud", "last_error"), "last_error must say why"

    sub = client_factory(local, unique("sub"))
    sub.subscribe("up/#", qos=1)
    client_factory(local, unique("pub")).publish("up/z", b"still local", qos=1)
    assert one(sub, "up/z").payload == b"still local"


# ------------------------------------------------------------------ several bridges, $SYS


def test_two_bridges_to_two_upstreams(broker_factory, upstream_factory, client_factory):
    """Two bridges (MQTT 5 and 3.1.1) to two mosquittos: each forwards only its own filters
    (one filter forwarded by both), and each brings its own subscription down."""
    north, south = upstream_factory(), upstream_factory()
    local = broker_factory({"bridges": [
        bridge("north", north, protocol="5",
               forwards=[{"filter": "n/#", "remote": "north/{topic}"}, {"filter": "both/#"}],
               subscriptions=[{"filter": "cmd/#", "local": "from-north/{topic}"}]),
        bridge("south", south, protocol="3.1.1",
               forwards=[{"filter": "s/#", "remote": "south/{topic}"}, {"filter": "both/#"}],
               subscriptions=[{"filter": "cmd/#", "local": "from-south/{topic}"}]),
    ]})
    wait_connected(local, "north", north)
    wait_connected(local, "south", south)
    at_north = client_factory(north, unique("atnorth"))
    at_north.subscribe("#", qos=1)
    at_south = client_factory(south, unique("atsouth"))
    at_south.subscribe("#", qos=1)

    pub = client_factory(local, unique("pub"))
    for topic in ("n/1", "s/1", "both/1"):
        pub.publish(topic, topic.encode(), qos=1)
    got_n = sorted((m.topic, m.payload) for m in at_north.wait_for(2, timeout=10))
    got_s = sorted((m.topic, m.payload) for m in at_south.wait_for(2, timeout=10))
    assert got_n == [("both/1", b"both/1"), ("north/n/1", b"n/1")]
    assert got_s == [("both/1", b"both/1"), ("south/s/1", b"s/1")]
    at_north.expect_nothing(1.0)
    at_south.expect_nothing(0.1)

    loc = client_factory(local, unique("loc"))
    loc.subscribe("from-north/#", qos=1)
    loc.subscribe("from-south/#", qos=1)
    probe(at_north, "cmd/probe", loc, "from-north/cmd/probe")
    probe(at_south, "cmd/probe", loc, "from-south/cmd/probe")
    at_north.drain(0.3)
    at_south.drain(0.3)
    client_factory(north, unique("np")).publish("cmd/go", b"N", qos=1)
    assert one(loc, "from-north/cmd/go").payload == b"N"
    client_factory(south, unique("sp")).publish("cmd/go", b"S", qos=1)
    assert one(loc, "from-south/cmd/go").payload == b"S"
    loc.expect_nothing(1.0)
    # What came down is not forwarded anywhere (no forward matches from-*/#).
    at_north_topics = {m.topic for m in at_north.drain(0.3)}
    assert at_north_topics <= {"cmd/go"}, at_north_topics


def test_sys_topics_report_state_and_counters(broker_factory, upstream_factory, client_factory):
    """$SYS/broker/bridges/cloud/...: state `connected` (retained), messages and bytes sent
    and received count what crossed, an empty cache, nothing dropped."""
    up = upstream_factory()
    local = broker_factory({"bridges": [bridge(
        "cloud", up, forwards=[{"filter": "up/#", "qos": 1}],
        subscriptions=[{"filter": "down/#", "qos": 1}])]})
    watcher = SysWatcher(client_factory, local)
    watcher.wait("cloud", "state", lambda v: v == "connected", CONNECT_TIMEOUT, "= connected")

    cloud = client_factory(up, unique("cloud"))
    cloud.subscribe("up/#", qos=1)
    loc = client_factory(local, unique("loc"))
    loc.subscribe("down/#", qos=1)
    payload = b"x" * 100
    for i in range(3):
        loc.publish(f"up/{i}", payload, qos=1)
    cloud.wait_for(3, timeout=10)
    probe(cloud, "down/probe", loc, "down/probe")
    for i in range(2):
        cloud.publish(f"down/{i}", payload, qos=1)
    loc.wait_for(2, timeout=10)

    watcher.wait_int("cloud", "messages/sent", lambda n: n >= 3, 5, ">= 3")
    watcher.wait_int("cloud", "messages/received", lambda n: n >= 2 + 1, 5, ">= 3 (probe)")
    watcher.wait_int("cloud", "bytes/sent", lambda n: n >= 300, 5, ">= 300")
    watcher.wait_int("cloud", "bytes/received", lambda n: n >= 200, 5, ">= 200")
    watcher.wait_int("cloud", "cache/messages", lambda n: n == 0, 5, "= 0")
    watcher.wait_int("cloud", "cache/dropped", lambda n: n == 0, 5, "= 0")
    assert watcher.latest("cloud", "state") == "connected"

    late = client_factory(local, unique("late"))
    late.subscribe("$SYS/broker/bridges/cloud/state", qos=0)
    m = one(late, "$SYS/broker/bridges/cloud/state", timeout=1.0)  # retained: no tick needed
    assert (m.payload, m.retain) == (b"connected", True)


# ------------------------------------------------------------------ outages and the cache

RATE = 50  # messages per second in the outage tests


@pytest.mark.timeout(180)
def test_outage_loses_nothing_and_keeps_order(broker_factory, upstream_factory, client_factory):
    """QoS 1 at 50 msg/s from one local publisher; the upstream is stopped for 30 s (same
    port) and started again: every message arrives upstream, first arrivals in order (QoS 1
    duplicates counted and printed), the cache held messages during the outage and is empty
    after."""
    up = upstream_factory(persistence=True)
    collector = Collector(client_factory, up, "site1/#")
    local = broker_factory({"log": {"level": "info"}, "bridges": [bridge(
        "cloud", up, forwards=[{"filter": "seq/#", "remote": "site1/{topic}", "qos": 1}])]})
    wait_connected(local, "cloud", up)
    watcher = SysWatcher(client_factory, local)
    publisher = SteadyPublisher(client_factory(local, unique("pub")), "seq/data", RATE)
    publisher.start()
    try:
        time.sleep(2)
        assert publisher.error is None, publisher.error
        t_stop = time.monotonic()
        up.stop()
        watcher.wait("cloud", "state", lambda v: v != "connected", 10, "leaves connected")
        time.sleep(max(0.0, t_stop + 30 - time.monotonic()))
        assert publisher.error is None, publisher.error
        up.start()
        t_start = time.monotonic()
        collector.reconnect()
        wait_connected(local, "cloud", up, n=2)
        time.sleep(2)
    finally:
        publisher.stop()
    assert publisher.error is None, f"local publish failed: {publisher.error!r}"
    sent = publisher.acked
    assert len(sent) > 30 * RATE, f"only {len(sent)} messages published"
    got = collector.wait_seqs("site1/seq/data", sent, timeout=30)
    time.sleep(1.0)  # stragglers, duplicates
    check_in_order(collector.seqs("site1/seq/data"), sent)

    during = [int(v) for v in watcher.values("cloud", "cache/messages", t_stop, t_start + 1)
              if v.isdigit()]
    assert during and max(during) > 0, f"cache/messages during the outage: {during}"
    print(f"cache/messages peaked at {max(during)}; {len(got)} arrivals for {len(sent)} sent")
    watcher.wait_int("cloud", "cache/messages", lambda n: n == 0, 15, "back to 0")
    watcher.wait("cloud", "state", lambda v: v == "connected", 5, "= connected")


@pytest.mark.timeout(120)
def test_outage_survives_kill_9_with_persistence(broker_factory, upstream_factory,
                                                 client_factory, tmp_path):
    """With [persistence] (sync = "always") the cache is on disk: the upstream goes down, the
    broker is killed with SIGKILL while a publisher is still sending, both come back, and every
    message the broker acknowledged before the kill reaches the upstream."""
    up = upstream_factory(persistence=True)
    collector = Collector(client_factory, up, "site1/#")
    local = broker_factory({
        "log": {"level": "info"},
        "persistence": {"dir": str(tmp_path / "state"), "sync": "always"},
        "bridges": [bridge("cloud", up, forwards=[
            {"filter": "seq/#", "remote": "site1/{topic}", "qos": 1}])],
    })
    wait_connected(local, "cloud", up)
    publisher = SteadyPublisher(client_factory(local, unique("pub")), "seq/data", RATE)
    publisher.start()
    try:
        time.sleep(1)
        up.stop()
        time.sleep(3)
        assert publisher.error is None, publisher.error
        local.kill()
    finally:
        publisher.stop()
    acked = list(publisher.acked)
    assert len(acked) > 2 * RATE, f"only {len(acked)} acknowledged before the kill"

    up.start()
    collector.reconnect()
    local.restart()
    wait_connected(local, "cloud", up, n=2)
    collector.wait_seqs("site1/seq/data", acked, timeout=30)
    time.sleep(1.0)  # stragglers, duplicates
    got = collector.seqs("site1/seq/data")
    # A message in flight at the kill may arrive too; only the acknowledged ones must.
    acked_set = set(acked)
    extra = sorted(set(got) - acked_set)
    assert all(n > acked[-1] for n in extra), f"unexpected numbers {extra[:20]}"
    check_in_order([n for n in got if n in acked_set], acked)


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-new"])
def test_cache_full_policy(broker_factory, upstream_factory, client_factory, policy):
    """Cache of 10 messages, upstream down, 25 QoS 1 messages published: cache/messages = 10
    and cache/dropped = 15; after the upstream comes back exactly the last 10 (drop-oldest) or
    the first 10 (drop-new) arrive, in order."""
    up = upstream_factory(persistence=True)
    collector = Collector(client_factory, up, "site1/#")
    local = broker_factory({"bridges": [bridge(
        "cloud", up, cache={"max_messages": 10, "full_policy": policy},
        forwards=[{"filter": "seq/#", "remote": "site1/{topic}", "qos": 1}])]})
    wait_connected(local, "cloud", up)
    watcher = SysWatcher(client_factory, local)
    watcher.wait("cloud", "state", lambda v: v == "connected", 5, "= connected")
    up.stop()
    watcher.wait("cloud", "state", lambda v: v != "connected", 10, "leaves connected")

    pub = client_factory(local, unique("pub"))
    for n in range(25):
        pub.publish("seq/data", str(n).encode(), qos=1)
    watcher.wait_int("cloud", "cache/dropped", lambda n: n == 15, 5, "= 15")
    watcher.wait_int("cloud", "cache/messages", lambda n: n == 10, 5, "= 10")

    up.start()
    collector.reconnect()
    wait_connected(local, "cloud", up, n=2)
    expected = list(range(15, 25)) if policy == "drop-oldest" else list(range(10))
    collector.wait_seqs("site1/seq/data", expected, timeout=15)
    time.sleep(2.0)  # anything beyond the expected
    got = collector.seqs("site1/seq/data")
    assert sorted(set(got)) == expected, f"{policy}: upstream got {got}"
    check_in_order(got, expected)
    watcher.wait_int("cloud", "cache/messages", lambda n: n == 0, 5, "= 0")
    assert int(watcher.latest("cloud", "cache/dropped")) == 15


# ------------------------------------------------------------------ refused credentials


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_credentials_backoff_and_local_service(broker_factory, upstream_factory,
                                                       client_factory, protocol):
    """The upstream refuses the bridge's password: a warn line with `bridge cloud` and the
    reason, state never `connected`, last_error says why, retries spaced out by the backoff
    (500 ms doubling to 2 s: fewer than 10 attempts in 5 s), and local clients still publish
    and subscribe, bridged topics included."""
    up = upstream_factory(users={"edge": "right"})
    # The right password works, so the refusals below are about the bridge's wrong one.
    ok = client_factory(up, unique("ok"), username="edge", password="right")
    ok.disconnect()

    local = broker_factory({"bridges": [bridge(
        "cloud", up, protocol=protocol, username="edge", password="wrong",
        reconnect_min_ms=500, reconnect_max_ms=2000,
        forwards=[{"filter": "a/#", "qos": 1}], subscriptions=[{"filter": "b/#", "qos": 1}])]})
    watcher = SysWatcher(client_factory, local)
    refused = r"disconnected, not authori[sz]ed"
    wait_until(lambda: up.count_log(refused), 10, "the upstream refusing the bridge")
    warn = wait_until(
        lambda: [line for line in local.log_text(tail=10**9).splitlines()
                 if re.search(warn_pattern("cloud"), line)], 10, "warn line for bridge cloud")
    assert any(REFUSED_CREDENTIALS.search(line) for line in warn), \
        f"no warn line names the reason: {warn}"

    before = up.count_log(refused)
    time.sleep(5)
    attempts = up.count_log(refused) - before
    assert 1 <= attempts < 10, f"{attempts} connect attempts in 5 s (backoff 500 ms .. 2 s)"

    assert log_count(local, connected_pattern("cloud", up.port)) == 0
    assert up.count_log(r"New client connected from") == 1  # only the `ok` client
    state = watcher.wait("cloud", "state", lambda v: True, 3)
    assert state in ("connecting", "backing-off"), state
    assert "connected" not in watcher.values("cloud", "state")
    last_error = watcher.wait("cloud", "last_error", lambda v: bool(v.strip()), 3, "non-empty")
    assert REFUSED_CREDENTIALS.search(last_error), f"last_error = {last_error!r}"

    sub = client_factory(local, unique("sub"))
    sub.subscribe("a/#", qos=1)
    sub.subscribe("local/#", qos=1)
    pub = client_factory(local, unique("pub"))
    pub.publish("local/x", b"plain", qos=1)
    assert one(sub, "local/x").payload == b"plain"
    pub.publish("a/x", b"bridged topic", qos=1)
    assert one(sub, "a/x").payload == b"bridged topic"


# ------------------------------------------------------------------ reload


def test_reload_changes_adds_and_removes_bridges(broker_factory, upstream_factory,
                                                 client_factory):
    """SIGHUP with a new [[bridges]]: a changed bridge hands its cache over (what it cached
    keeps its old remote topic, what comes after gets the new one), a new bridge connects, a
    removed one disconnects; local clients stay connected throughout."""
    up1 = upstream_factory(persistence=True)
    up2 = upstream_factory()
    collector = Collector(client_factory, up1, "#")
    local = broker_factory({"bridges": [
        bridge("a", up1, forwards=[{"filter": "s/#", "remote": "one/{topic}", "qos": 1}]),
        bridge("gone", up2, forwards=[{"filter": "g/#", "qos": 1}]),
    ]})
    wait_connected(local, "a", up1)
    wait_connected(local, "gone", up2)
    pub = client_factory(local, unique("pub"))
    up1.stop()
    wait_until(lambda: log_count(local, warn_pattern("a")) >= 1, 10, "bridge a sees the outage")
    pub.publish("s/x", b"before", qos=1)

    local.config["bridges"] = [
        bridge("a", up1, forwards=[{"filter": "s/#", "remote": "two/{topic}", "qos": 1}]),
        bridge("new", up2, forwards=[{"filter": "n/#", "qos": 1}]),
    ]
    (local.workdir / "nanomq.toml").write_text(to_toml(local.config))
    local.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: log_count(local, r"bridges reloaded: changed a, added new, removed gone"),
               10, "the reload's summary")
    wait_connected(local, "new", up2)
    wait_until(lambda: up2.count_log(r"Received DISCONNECT from nanomq-bridge-gone"), 10,
               "the removed bridge disconnects")
    pub.publish("s/x", b"after", qos=1)

    up1.start()
    collector.reconnect()
    wait_connected(local, "a", up1)

    def arrived():
        return [(m.topic, m.payload) for m in collector.messages()]
    wait_until(lambda: len(arrived()) >= 2, 15, "both messages at the upstream")
    assert arrived()[:2] == [("one/s/x", b"before"), ("two/s/x", b"after")], arrived()
    assert pub.is_connected(), "the reload dropped a local client"
