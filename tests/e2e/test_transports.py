"""Interop over TLS, WebSocket and WSS listeners with third-party clients: paho-mqtt (MQTT 5
and 3.1.1), mosquitto_pub / mosquitto_sub, and MQTT.js from Node.

Client certificates: a verify = "required" listener accepts a certificate from its CA and
refuses, in the TLS handshake, a client with no certificate, one from another CA and an
expired one, each with the TLS alert that says why; the broker keeps serving others. A
client that does not trust the server's CA gives up on its own.

Every broker here has the same six listeners (LISTENERS); certificates come from pki.py,
made once per session. All of it is nanomq's TOML, so the module is nanomq_only.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import V5, V311, unique
from pki import KeyPair, Pki

pytestmark = pytest.mark.nanomq_only("TLS and WebSocket listeners are nanomq TOML")

MQTTJS_DIR = Path(__file__).parent / "mqttjs"
CLIENT_TIMEOUT = 15.0  # seconds for any one client process

# Listener names, in the broker's config order (Broker.listeners has the same order).
LISTENERS = ["tcp", "tls", "mtls", "optional", "ws", "wss"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


def tls_table(pki: Pki, verify: str) -> dict:
    table = {"cert": str(pki.server.cert), "key": str(pki.server.key), "verify": verify}
    if verify != "none":
        table["ca"] = str(pki.clients_ca)
    return table


@pytest.fixture
def transports(broker_factory, pki):
    """A broker with every listener of LISTENERS; returns (broker, {name: port})."""
    bind = "127.0.0.1:0"
    broker = broker_factory({"listeners": [
        {"kind": "tcp", "bind": bind},
        {"kind": "tls", "bind": bind, "tls": tls_table(pki, "none")},
        {"kind": "tls", "bind": bind, "tls": tls_table(pki, "required")},
        {"kind": "tls", "bind": bind, "tls": tls_table(pki, "optional")},
        {"kind": "ws", "bind": bind, "path": "/mqtt"},
        {"kind": "wss", "bind": bind, "path": "/mqtt", "tls": tls_table(pki, "none")},
    ]})
    kinds = [kind for kind, _ in broker.listeners]
    assert kinds == ["tcp", "tls", "tls", "tls", "ws", "wss"], broker.listeners
    return broker, {name: port for name, (_, port) in zip(LISTENERS, broker.listeners)}


def client_context(pki: Pki, cert: KeyPair | None = None, trust: Path | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A verifying client context: trusts `trust` (default the server's CA), presents
    `cert` if given, and speaks only `version` if given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust or pki.ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def round_trip(sub, pub, topic: str, payload: bytes) -> None:
    """`sub` subscribes to `topic`, `pub` publishes `payload` at QoS 1, `sub` gets it."""
    assert sub.subscribe(topic, qos=1) == [1]
    pub.publish(topic, payload, qos=1)
    (msg,) = sub.wait_for(1)
    assert (msg.topic, msg.payload, msg.qos) == (topic, payload, 1)


def assert_tls(client, version: str | None = None) -> None:
    sock = client.c.socket()
    assert isinstance(sock, ssl.SSLSocket), f"not a TLS connection: {sock!r}"
    if version is not None:
        assert sock.version() == version


class Attempt:
    """What a paho client saw when it tried to connect: a CONNACK or the error text."""

    def __init__(self, connack, errors: list[str]):
        self.connack = connack
        self.errors = errors

    @property
    def text(self) -> str:
        return " | ".join(self.errors) or "(no error)"


def attempt(port: int, context: ssl.SSLContext, timeout: float = 5.0) -> Attempt:
    """One paho connection attempt over TLS that is expected to fail. A TLS 1.2 refusal
    raises from connect() (the handshake); in TLS 1.3 the client's handshake is over before
    the server has judged its certificate, so the alert arrives on the first read."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("refused"), protocol=V5)
    c.tls_set_context(context)
    errors: list[str] = []
    connack = []

    def on_log(_client, _userdata, level, text):
        if level == mqtt.MQTT_LOG_ERR:
            errors.append(text)

    c.on_log = on_log
    c.on_connect = lambda _c, _u, _f, reason_code, _p: connack.append(reason_code)
    try:
        c.connect("127.0.0.1", port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        return Attempt(None, [f"connect: {type(e).__name__}: {e}"])
    try:
        deadline = time.monotonic() + timeout
        while not connack and time.monotonic() < deadline:
            rc = c.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                errors.append(f"loop: {mqtt.error_string(rc)}")
                break
    finally:
        if c.socket():
            c.socket().close()
    return Attempt(connack[0] if connack else None, errors)


# ------------------------------------------------------------------ TLS with paho


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_paho_tls_pubsub_without_client_certificate(transports, client_factory, pki, protocol):
    broker, port = transports
    sub = client_factory(broker, unique("tls-sub"), protocol=protocol, transport="tls",
                         port=port["tls"], tls={"ca_certs": str(pki.ca)})
    pub = client_factory(broker, unique("tls-pub"), protocol=protocol, transport="tls",
                         port=port["tls"], tls={"ca_certs": str(pki.ca)})
    assert_tls(sub)
    round_trip(sub, pub, unique("tls/t"), b"over tls")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_paho_tls_client_certificate_accepted(transports, client_factory, pki, version):
    broker, port = transports
    ctx = client_context(pki, cert=pki.client, version=version)
    mtls = client_factory(broker, unique("mtls"), transport="tls", port=port["mtls"],
                          tls={"context": ctx})
    assert_tls(mtls, "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
    plain = client_factory(broker, unique("tcp"))
    round_trip(mtls, plain, unique("mtls/in"), b"tcp to mtls")
    round_trip(plain, mtls, unique("mtls/out"), b"mtls to tcp")


# The alert each refused client must see, as OpenSSL names it.
REFUSED = {
    "no-certificate": (None, re.compile(r"certificate required", re.I)),
    "untrusted": ("untrusted", re.compile(r"unknown ca", re.I)),
    "expired": ("expired", re.compile(r"certificate expired", re.I)),
}


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_paho_tls_bad_client_certificate_refused(transports, client_factory, pki, case,
                                                 version):
    broker, port = transports
    cert_name, alert = REFUSED[case]
    cert = getattr(pki, cert_name) if cert_name else None
    seen = attempt(port["mtls"], client_context(pki, cert=cert, version=version))
    assert seen.connack is None, f"{case} client got a CONNACK ({seen.connack})"
    assert alert.search(seen.text), f"{case} client: expected alert /{alert.pattern}/, " \
        f"saw: {seen.text}"
    # The broker is still there for everyone else, on the same listener and on TCP.
    good = client_factory(broker, unique("good"), transport="tls", port=port["mtls"],
                          tls={"context": client_context(pki, cert=pki.client, version=version)})
    plain = client_factory(broker, unique("tcp"))
    round_trip(good, plain, unique("after/refusal"), b"still serving")
    assert broker.is_running()


def test_tls_optional_client_certificate(transports, client_factory, pki):
    """verify = "optional": no certificate or a good one connects; a bad one is refused."""
    broker, port = transports
    anonymous = client_factory(broker, unique("anon"), transport="tls", port=port["optional"],
                               tls={"context": client_context(pki)})
    known = client_factory(broker, unique("known"), transport="tls", port=port["optional"],
                           tls={"context": client_context(pki, cert=pki.client)})
    round_trip(anonymous, known, unique("optional/t"), b"optional")
    seen = attempt(port["optional"], client_context(pki, cert=pki.untrusted))
    assert seen.connack is None, f"untrusted client got a CONNACK ({seen.connack})"
    assert re.search(r"unknown ca", seen.text, re.I), seen.text


def test_client_refuses_server_from_unknown_ca(transports, client_factory, pki):
    broker, port = transports
    seen = attempt(port["tls"], client_context(pki, trust=pki.rogue_ca))
    assert seen.connack is None
    assert re.search(r"certificate verify failed", seen.text), seen.text
    # What the client gave up on was the server certificate, nothing else: with the right
    # CA the same listener works, and the broker survived the client's alert.
    ok = client_factory(broker, unique("ok"), transport="tls", port=port["tls"],
                        tls={"context": client_context(pki)})
    round_trip(ok, ok, unique("trusted/t"), b"trusted")


# ------------------------------------------------------------------ WebSocket with paho


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_paho_websocket_pubsub_and_routing_to_tcp(transports, client_factory, pki, kind,
                                                 protocol):
    broker, port = transports
    tls = {"ca_certs": str(pki.ca)} if kind == "wss" else None
    web = client_factory(broker, unique(kind), protocol=protocol, transport=kind, tls=tls)
    web2 = client_factory(broker, unique(kind), protocol=protocol, transport=kind, tls=tls)
    tcp = client_factory(broker, unique("tcp"), protocol=protocol)
    round_trip(web, web2, unique(f"{kind}/t"), f"{kind} to {kind}".encode())
    round_trip(web, tcp, unique(f"{kind}/in"), f"tcp to {kind}".encode())
    round_trip(tcp, web, unique(f"{kind}/out"), f"{kind} to tcp".encode())
    # A payload larger than one small frame survives the trip both ways.
    big = bytes(range(256)) * 200
    round_trip(web, tcp, unique(f"{kind}/big"), big)


# ------------------------------------------------------------------ mosquitto clients


def mosquitto_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: tests/run installs Debian's mosquitto-clients")
    return path


def run_tool(argv: list[str], timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv[0]} did not finish within {timeout}s: "
                             f"stdout {e.stdout!r} stderr {e.stderr!r}") from None


def tls_args(pki: Pki, port: int, cert: KeyPair | None = None) -> list[str]:
    args = ["-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki.ca)]
    if cert is not None:
        args += ["--cert", str(cert.cert), "--key", str(cert.key)]
    return args


@pytest.mark.parametrize("listener, cert", [("tls", None), ("mtls", "client")],
                         ids=["cafile", "cafile-cert-key"])
@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"])
def test_mosquitto_clients_over_tls(transports, client_factory, pki, listener, cert, version):
    broker, port = transports
    keypair = getattr(pki, cert) if cert else None
    watcher = client_factory(broker, unique("watch"))
    live, kept = unique("mosq/live"), unique("mosq/retained")
    assert watcher.subscribe(live, qos=1) == [1]

    pub = run_tool([mosquitto_tool("mosquitto_pub"), *tls_args(pki, port[listener], keypair),
                    "-V", version, "-i", unique("mpub"), "-q", "1", "-t", live,
                    "-m", "from mosquitto_pub"])
    assert pub.returncode == 0, f"mosquitto_pub failed: {pub.stderr}"
    (msg,) = watcher.wait_for(1)
    assert (msg.topic, msg.payload) == (live, b"from mosquitto_pub")

    watcher.publish(kept, b"for mosquitto_sub", qos=1, retain=True)
    sub = run_tool([mosquitto_tool("mosquitto_sub"), *tls_args(pki, port[listener], keypair),
                    "-V", version, "-i", unique("msub"), "-q", "1", "-t", kept, "-v",
                    "-C", "1", "-W", "10"])
    assert sub.returncode == 0, f"mosquitto_sub failed: {sub.stderr}"
    assert sub.stdout.strip() == f"{kept} for mosquitto_sub"


@pytest.mark.parametrize("cert", ["untrusted", "expired"])
def test_mosquitto_pub_with_bad_client_certificate_fails(transports, client_factory, pki,
                                                         cert):
    broker, port = transports
    watcher = client_factory(broker, unique("watch"))
    topic = unique("mosq/refused")
    assert watcher.subscribe(topic, qos=1) == [1]
    pub = run_tool([mosquitto_tool("mosquitto_pub"),
                    *tls_args(pki, port["mtls"], getattr(pki, cert)),
                    "-i", unique("mpub"), "-q", "1", "-t", topic, "-m", "must not arrive"])
    assert pub.returncode != 0, f"mosquitto_pub with the {cert} certificate exited 0"
    watcher.expect_nothing(0.5)


# ------------------------------------------------------------------ MQTT.js


def node_and_mqttjs() -> str:
    node = shutil.which("node")
    if not node:
        pytest.fail("node not found: tests/run installs Debian's nodejs and npm, then "
                    "`npm ci` in tests/e2e/mqttjs")
    if not (MQTTJS_DIR / "node_modules" / "mqtt" / "package.json").is_file():
        pytest.fail(f"MQTT.js is not installed in {MQTTJS_DIR}: run tests/run (without "
                    "SKIP_INSTALL=1) or `npm ci --prefix tests/e2e/mqttjs`")
    return node


@pytest.mark.parametrize("kind, mqtt_version", [("ws", 5), ("ws", 4), ("wss", 5)],
                         ids=["ws-v5", "ws-v311", "wss-v5"])
def test_mqttjs_over_websocket(transports, client_factory, pki, kind, mqtt_version):
    node = node_and_mqttjs()
    broker, port = transports
    topic = unique("mqttjs/t")
    watcher = client_factory(broker, unique("watch"))
    assert watcher.subscribe(topic, qos=1) == [1]
    argv = [node, str(MQTTJS_DIR / "pubsub.js"), f"{kind}://127.0.0.1:{port[kind]}/mqtt", topic,
            "--mqtt-version", str(mqtt_version), "--timeout-ms", "10000"]
    if kind == "wss":
        argv += ["--ca", str(pki.ca)]
    run = run_tool(argv)
    assert run.returncode == 0, f"MQTT.js exited {run.returncode}:\n{run.stdout}{run.stderr}"
    assert f"received {topic} hello from mqtt.js" in run.stdout.splitlines(), run.stdout
    # The same message went to the TCP subscriber.
    (msg,) = watcher.wait_for(1)
    assert (msg.topic, msg.payload) == (topic, b"hello from mqtt.js")
