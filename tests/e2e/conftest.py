"""Fixtures for the end-to-end suites: a real broker process and paho-mqtt 2.x clients.

The broker under test is the nanomq binary (env NANOMQ_BIN, default target/debug/nanomq
under the repo root). BROKER=mosquitto runs the same suites against Debian's mosquitto
instead, only to check that the tests themselves are right; tests that rely on
nanomq-specific config or behaviour carry @pytest.mark.nanomq_only and skip there.

nanomq binds 127.0.0.1:0 and logs `listening on KIND HOST:PORT` to stderr for each listener
(KIND = tcp, tls, ws or wss, in config order); the fixture reads stderr until it has seen one
line per configured listener (20 s timeout), then keeps draining stderr to a log file in a
thread so the pipe never fills. `Broker.port` is the first tcp listener's port,
`Broker.listeners` every (kind, port) in order and `Broker.port_of(kind)` the first of a
kind. The log is attached to the report of a failing test. Every process started here is
stopped in teardown, whatever the test did.

`upstream_factory` starts Debian's mosquitto (whatever BROKER says) as the upstream of the
bridge tests: `Mosquitto`, on free loopback ports that stay the same across stop() / start().
"""

from __future__ import annotations

import copy
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import raw

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("BROKER", "nanomq")
if BROKER not in ("nanomq", "mosquitto"):
    raise RuntimeError(f"BROKER must be nanomq or mosquitto, not {BROKER!r}")
IS_NANOMQ = BROKER == "nanomq"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LISTENING_RE = re.compile(r"listening on (tcp|tls|wss|ws) (\S+):(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SETPRIV = shutil.which("setpriv")

# The configuration shared by every end-to-end suite; tests merge their overrides into it.
DEFAULT_CONFIG: dict = tomllib.loads((Path(__file__).parent / "nanomq.toml").read_text())


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "nanomq_only(reason): relies on nanomq-specific config or behaviour; skipped under "
        "BROKER=mosquitto",
    )
    config.addinivalue_line(
        "markers",
        "mosquitto_deviates(reason): standard behaviour that Debian's mosquitto 2.0 gets "
        "wrong; skipped under BROKER=mosquitto",
    )


def pytest_collection_modifyitems(config, items):
    # E2E_NO_SKIP=1 runs the marked tests under mosquitto too, to see how it differs.
    if IS_NANOMQ or os.environ.get("E2E_NO_SKIP") == "1":
        return
    for item in items:
        marker = item.get_closest_marker("nanomq_only")
        if marker:
            why = marker.args[0] if marker.args else "nanomq-specific"
            item.add_marker(pytest.mark.skip(reason=f"nanomq only: {why}"))
        marker = item.get_closest_marker("mosquitto_deviates")
        if marker:
            why = marker.args[0] if marker.args else "deviates from the spec"
            item.add_marker(pytest.mark.skip(reason=f"mosquitto deviates: {why}"))


# ------------------------------------------------------------------ config


def deep_merge(base: dict, overrides: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _table(lines: list, name: str, body: dict) -> None:
    """`[name]` with its scalars, then its sub-tables as `[name.key]`, recursively."""
    lines.append(f"[{name}]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in body.items() if not isinstance(v, dict)]
    lines.append("")
    for k, v in body.items():
        if isinstance(v, dict):
            _table(lines, f"{name}.{k}", v)


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def to_toml(cfg: dict) -> str:
    """Enough TOML for our config: top-level tables of scalars and of sub-tables
    (`[auth.http]`, `[auth.http.headers]`), and arrays of tables whose entries may hold one level
    of sub-tables (`[listeners.tls]` after its `[[listeners]]`) and arrays of tables of scalars
    (`[[bridges.forwards]]` after its `[[bridges]]`, its scalars and its sub-tables)."""
    lines = []
    for section, body in cfg.items():
        if _is_table_array(body):
            for entry in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()
                          if not isinstance(v, dict) and not _is_table_array(v)]
                for k, v in entry.items():
                    if isinstance(v, dict):
                        lines.append(f"[{section}.{k}]")
                        lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
                for k, v in entry.items():
                    if _is_table_array(v):
                        for item in v:
                            lines.append(f"[[{section}.{k}]]")
                            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items()]
                lines.append("")
        elif isinstance(body, dict):
            _table(lines, section, body)
        else:
            lines.insert(0, f"{section} = {_toml_value(body)}")
    return "\n".join(lines)


def free_port() -> int:
    """For mosquitto (BROKER=mosquitto, bridge upstreams), which cannot bind port 0 and report
    it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (nanomq config section, key, the mosquitto.conf option that means the same)
MOSQUITTO_OPTIONS = [
    ("limits", "max_queued_messages", "max_queued_messages"),
    ("limits", "max_keepalive", "max_keepalive"),
    ("limits", "max_packet_size", "max_packet_size"),
    # mosquitto uses one number for its own Receive Maximum and the outgoing window.
    ("limits", "receive_maximum", "max_inflight_messages"),
    ("limits", "max_topic_alias", "max_topic_alias"),
    ("mqtt", "max_qos", "max_qos"),
    ("mqtt", "retain_available", "retain_available"),
]


def to_mosquitto_conf(cfg: dict, port: int) -> str:
    """Translate the nanomq test config into the nearest mosquitto.conf."""
    sys_ = cfg.get("sys", {})
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "log_dest stderr",
        "log_type all",
        "connection_messages true",
        f"sys_interval {sys_.get('interval_secs', 10)}",
    ]
    if os.geteuid() == 0:
        # Dropping privileges would clear the parent-death signal set by setpriv.
        lines.append("user root")
    for section, key, option in MOSQUITTO_OPTIONS:
        body = cfg.get(section, {})
        if key in body:
            value = body[key]
            if isinstance(value, bool):
                value = "true" if value else "false"
            lines.append(f"{option} {value}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ processes


class LoggedProcess:
    """A process the fixtures started, its stderr drained by a thread into `log_path`: how it
    is stopped, reaped and its log read, for the broker under test and the upstream mosquitto
    alike. Subclasses set `log_path` and start `proc` and `_drainer`."""

    log_path: Path

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self._log_lock = threading.Lock()
        self._drainer: threading.Thread | None = None
        self.returncode: int | None = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log_note(f"did not exit {timeout}s after SIGTERM; sending SIGKILL")
                self.proc.kill()
        return self._reap()

    def kill(self) -> int | None:
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        return self._reap()

    def _reap(self) -> int | None:
        try:
            self.returncode = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.returncode = None
        if self._drainer:
            self._drainer.join(2)
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.returncode

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _log_note(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_lock, open(self.log_path, "ab") as log:
            log.write(f"[test fixture] {text}\n".encode())

    def log_lines(self) -> list[str]:
        with self._log_lock:
            try:
                return self.log_path.read_text("utf-8", "replace").splitlines()
            except FileNotFoundError:
                return []

    def log_text(self, tail: int = 400) -> str:
        lines = self.log_lines()
        if not lines:
            return "(no log)"
        skipped = max(0, len(lines) - tail)
        head = [f"... ({skipped} earlier lines in {self.log_path})"] if skipped else []
        return "\n".join(head + lines[-tail:])


# ------------------------------------------------------------------ broker


class Broker(LoggedProcess):
    """One broker process on 127.0.0.1 with a private directory and log file."""

    def __init__(self, workdir: Path, config: dict):
        super().__init__()
        self.workdir = workdir
        self.config = config
        self.host = "127.0.0.1"
        self.port: int | None = None
        # (kind, port) per listener, in config order: what the broker logged.
        self.listeners: list[tuple[str, int]] = []
        self.log_path = workdir / "broker.log"
        self._port_found = threading.Event()
        # Arguments after `nanomq start --config FILE`.
        self.extra_args: list[str] = []

    # -- lifecycle

    def start(self) -> "Broker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if IS_NANOMQ:
            binary = Path(os.environ.get("NANOMQ_BIN", REPO_ROOT / "target/debug/nanomq"))
            if not binary.is_absolute():
                binary = REPO_ROOT / binary
            if not binary.exists():
                pytest.fail(f"broker binary {binary} not found: run `cargo build -p nanomq` "
                            "or set NANOMQ_BIN")
            conf = self.workdir / "nanomq.toml"
            conf.write_text(to_toml(self.config))
            argv = [str(binary), "start", "--config", str(conf)] + self.extra_args
        else:
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            self.port = free_port()
            self.listeners = [("tcp", self.port)]
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(to_mosquitto_conf(self.config, self.port))
            argv = [binary, "-c", str(conf)]
        # NANOMQ_ALLOW_ROOT: tests run as root in CI, where nanomq refuses to start without it.
        env = dict(os.environ, NO_COLOR="1", NANOMQ_ALLOW_ROOT="1")
        if SETPRIV:
            # The broker gets SIGKILL if the test process dies without its teardown.
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        self.proc = subprocess.Popen(
            argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, start_new_session=True,
        )
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT
        if IS_NANOMQ:
            while not self._port_found.wait(0.05):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
            # The process may have printed the line and exited at once: check both.
            if not self._port_found.is_set():
                code = self.proc.poll()
                self.kill()
                why = (f"exited with code {code}" if code is not None
                       else f"{len(self.listeners)} of {self._expected_listeners()} "
                       f"'listening on' lines within {START_TIMEOUT:.0f}s")
                pytest.fail(f"nanomq did not start ({why}); log:\n{self.log_text()}")
        else:
            while not self._accepts_connections():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"mosquitto did not start; log:\n{self.log_text()}")
                time.sleep(0.05)
        return self

    def restart(self) -> "Broker":
        """Start again after stop() or kill(), with the same config and directory; the
        listeners get new ports."""
        assert not self.is_running(), "restart() of a running broker"
        self.port = None
        self.listeners = []
        self._port_found.clear()
        return self.start()

    def _expected_listeners(self) -> int:
        # No [[listeners]] at all means nanomq's single default listener.
        return len(self.config.get("listeners") or [None])

    def port_of(self, kind: str) -> int:
        """The port of the first listener of `kind` (tcp, tls, ws, wss)."""
        for k, port in self.listeners:
            if k == kind:
                return port
        raise AssertionError(f"{BROKER} has no {kind} listener: {self.listeners}")

    def _accepts_connections(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _drain(self) -> None:
        assert self.proc and self.proc.stderr
        with open(self.log_path, "ab") as log:
            for raw_line in iter(self.proc.stderr.readline, b""):
                with self._log_lock:
                    log.write(raw_line)
                    log.flush()
                if not self._port_found.is_set():
                    line = ANSI_RE.sub("", raw_line.decode("utf-8", "replace"))
                    m = LISTENING_RE.search(line)
                    if m:
                        kind, host, port = m.group(1), m.group(2).strip("[]"), int(m.group(3))
                        self.listeners.append((kind, port))
                        if kind == "tcp" and self.port is None:
                            self.host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
                            self.port = port
                        if len(self.listeners) >= self._expected_listeners():
                            self._port_found.set()

    def __repr__(self) -> str:
        return f"<{BROKER} {self.host}:{self.port}>"


@pytest.fixture
def broker_factory(tmp_path, request):
    """Start brokers with config overrides: broker_factory({"limits": {"max_inflight": 5}})."""
    started: list[Broker] = []
    request.node._brokers = started

    def start(overrides: dict | None = None) -> Broker:
        cfg = deep_merge(DEFAULT_CONFIG, overrides)
        b = Broker(tmp_path / f"broker{len(started)}", cfg)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


# ------------------------------------------------------------------ upstream mosquitto


class Mosquitto(LoggedProcess):
    """Debian's mosquitto as an upstream ("cloud") broker for the bridge tests, whatever
    BROKER says: a plain listener on `port` and, with `tls`, a TLS listener on `tls_port`, both
    on 127.0.0.1 and picked once, so stop() / start() brings it back on the same ports.

    `tls`: {"certfile", "keyfile"} and optionally "cafile" + "require_certificate": True (client
    certificates from that CA, on the TLS listener only). `users`: {name: password} written
    with mosquitto_passwd; anonymous clients are then refused on every listener.
    `persistence`: sessions (and their queued QoS 1/2 messages) and retained messages survive
    stop() / start() (SIGTERM saves them; kill() loses what was not saved). stderr (log_type
    all, with timestamps) goes to `log_path`, appended across restarts.
    """

    BINARY = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def __init__(self, workdir: Path, tls: dict | None = None, users: dict | None = None,
                 persistence: bool = False, extra_conf: list[str] | None = None):
        super().__init__()
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = dict(tls) if tls else None
        self.tls_port = free_port() if tls else None
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.users = dict(users or {})
        self.persistence = persistence
        self.extra_conf = list(extra_conf or [])
        self.log_path = workdir / "mosquitto.log"
        self.conf_path = workdir / "mosquitto.conf"
        self.starts = 0

    @property
    def listeners(self) -> list[tuple[str, int]]:
        return [("tcp", self.port)] + ([("tls", self.tls_port)] if self.tls else [])

    def port_of(self, kind: str) -> int:
        for k, port in self.listeners:
            if k == kind:
                return port
        raise AssertionError(f"upstream mosquitto has no {kind} listener: {self.listeners}")

    def conf_text(self) -> str:
        lines = [
            "per_listener_settings false",
            "persistence " + ("true" if self.persistence else "false"),
            "log_dest stderr",
            "log_type all",
            "log_timestamp true",
            "connection_messages true",
            # Bridges send bursts while a test subscriber may be away: queue them all.
            "max_queued_messages 1000000",
        ]
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        if self.users:
            lines += ["allow_anonymous false", f"password_file {self.workdir / 'passwd'}"]
        else:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:
            # Dropping privileges would clear the parent-death signal set by setpriv.
            lines.append("user root")
        lines += self.extra_conf
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.tls:
            lines += [f"listener {self.tls_port} 127.0.0.1",
                      f"certfile {self.tls['certfile']}",
                      f"keyfile {self.tls['keyfile']}"]
            if self.tls.get("cafile"):
                lines.append(f"cafile {self.tls['cafile']}")
            if self.tls.get("require_certificate"):
                lines.append("require_certificate true")
        return "\n".join(lines) + "\n"

    def _write_passwords(self) -> None:
        path = self.workdir / "passwd"
        path.unlink(missing_ok=True)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for i, (name, password) in enumerate(self.users.items()):
            argv = [tool] + (["-c"] if i == 0 else []) + ["-b", str(path), name, password]
            subprocess.run(argv, check=True, capture_output=True, timeout=10)

    def start(self) -> "Mosquitto":
        """Start (again) on the same ports; returns once mosquitto says it is running."""
        assert not self.is_running(), "start() of a running mosquitto"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.users and self.starts == 0:
            self._write_passwords()
        self.conf_path.write_text(self.conf_text())
        with self._log_lock:
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [self.BINARY, "-c", str(self.conf_path)]
        if SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        self._log_note(f"starting {' '.join(argv)}")
        self.starts += 1
        self.returncode = None
        self.proc = subprocess.Popen(
            argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        self._drainer = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._drainer.start()
        # stderr is unbuffered; "running" comes after every listener is open.
        running = re.compile(r"mosquitto version \S+ running")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self._log_lock:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    new = f.read().decode("utf-8", "replace")
            if running.search(new):
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.kill()
                pytest.fail(f"upstream mosquitto did not start (exit code {code}); log:\n"
                            f"{self.log_text()}")
            time.sleep(0.02)

    def _drain(self, proc: subprocess.Popen) -> None:
        assert proc.stderr
        for raw_line in iter(proc.stderr.readline, b""):
            with self._log_lock, open(self.log_path, "ab") as log:
                log.write(raw_line)

    def _reap(self) -> int | None:
        """Reaped and forgotten, so start() can run it again (SIGTERM saves its persistence
        file; kill() loses what was not saved)."""
        code = super()._reap()
        self._log_note(f"exited with code {code}")
        self.proc = None
        return code

    def count_log(self, pattern: str) -> int:
        """Log lines (every start so far) matching the regular expression `pattern`."""
        rx = re.compile(pattern)
        return sum(1 for line in self.log_lines() if rx.search(line))

    def __repr__(self) -> str:
        return f"<upstream mosquitto {self.host}:{self.port}>"


@pytest.fixture
def upstream_factory(tmp_path, request):
    """upstream_factory(tls=..., users=..., persistence=..., start=True) -> a Mosquitto on
    free loopback ports (see Mosquitto); every one is stopped at teardown and its log is
    attached to a failing test's report."""
    made: list[Mosquitto] = []
    request.node._upstreams = made

    def make(start: bool = True, **kw) -> Mosquitto:
        m = Mosquitto(tmp_path / f"upstream{len(made)}", **kw)
        made.append(m)
        return m.start() if start else m

    yield make
    for m in made:
        m.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in getattr(item, "_brokers", []):
            report.sections.append((f"{BROKER} log ({b.workdir.name})", b.log_text()))
        for m in getattr(item, "_upstreams", []):
            report.sections.append((f"upstream mosquitto log ({m.workdir.name})", m.log_text()))


# ------------------------------------------------------------------ clients

V5 = mqtt.MQTTv5
V311 = mqtt.MQTTv311


def props(packet_type, **kw) -> Properties:
    """props(PacketTypes.PUBLISH, MessageExpiryInterval=5, UserProperty=[("a", "b")])."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def pub_props(**kw) -> Properties:
    return props(PacketTypes.PUBLISH, **kw)


class Client:
    """A paho-mqtt 2.x client driven by its own loop thread, with synchronous helpers.

    No automatic reconnect: a lost connection stays lost, so takeover tests can't
    ping-pong. Received messages go to a thread-safe queue; wait_for(n) collects them.

    `transport` picks the broker's listener: tcp (default), tls, ws or wss, on the first
    listener of that kind unless `port` says otherwise. `tls` (tls and wss) is either
    keyword arguments for paho's `tls_set` (ca_certs, certfile, keyfile) or
    {"context": ssl.SSLContext}; `ws_path` is the WebSocket path. `username` / `password`
    (optional) go in CONNECT.
    """

    def __init__(self, broker: Broker, client_id: str = "", protocol=V5, clean_start=True,
                 session_expiry: int | None = None, keepalive: int = 30,
                 connect_props: Properties | None = None, will: dict | None = None,
                 transport: str = "tcp", port: int | None = None, tls: dict | None = None,
                 ws_path: str = "/mqtt", username: str | None = None,
                 password: str | None = None):
        self.broker = broker
        self.protocol = protocol
        self.client_id = client_id
        self._port = port
        self._transport = transport
        self.messages: queue.Queue = queue.Queue()
        kw = {}
        if protocol != V5:
            kw["clean_session"] = clean_start
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol,
                             transport="websockets" if transport in ("ws", "wss") else "tcp",
                             **kw)
        if transport in ("ws", "wss"):
            self.c.ws_set_options(path=ws_path)
        if username is not None:
            self.c.username_pw_set(username, password)
        if transport in ("tls", "wss"):
            tls = dict(tls or {})
            if "context" in tls:
                self.c.tls_set_context(tls["context"])
            else:
                self.c.tls_set(**tls)
        if transport != "tcp":
            # Only the loop thread may touch a TLS or WebSocket connection. Otherwise paho
            # writes from the caller's thread while the loop thread reads and acks: that
            # interleaves WebSocket frames (seen as garbage by the broker) and shares an SSL
            # object between threads. With this no-op callback set, paho queues packets and
            # wakes the loop thread to write them.
            self.c.on_socket_register_write = lambda client, userdata, sock: None
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._acks: dict[int, queue.Queue] = {}
        self._acks_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connack = None  # (reason_code, session_present, properties)
        self.disconnect_reason = None
        if will:
            self.c.will_set(**will)
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._keepalive = keepalive
        self._connect_props = connect_props

    # -- callbacks (loop thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (reason_code, flags.session_present, properties)
        self._connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _ack_queue(self, mid: int) -> queue.Queue:
        with self._acks_lock:
            return self._acks.setdefault(mid, queue.Queue())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._ack_queue(mid).put([rc.value for rc in reason_codes])

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        codes = reason_codes if isinstance(reason_codes, list) else [reason_codes]
        self._ack_queue(mid).put([rc.value for rc in codes])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self._disconnected.set()

    # -- driving

    def connect(self, timeout: float = 5.0, expect_success: bool = True):
        """Connect and wait for CONNACK. Returns (reason_code:int, session_present, props)."""
        kw = {}
        cprops = self._connect_props
        if self.protocol == V5:
            kw["clean_start"] = self._clean_start
            if self._session_expiry is not None:
                cprops = cprops or Properties(PacketTypes.CONNECT)
                cprops.SessionExpiryInterval = self._session_expiry
            kw["properties"] = cprops
        port = self._port
        if port is None:
            port = (self.broker.port if self._transport == "tcp"
                    else self.broker.port_of(self._transport))
        self.c.connect(self.broker.host, port, keepalive=self._keepalive, **kw)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            raise AssertionError(f"no CONNACK within {timeout}s for {self.client_id!r}")
        rc, sp, cprops = self.connack
        if expect_success and rc.value != 0:
            raise AssertionError(f"CONNACK refused: {rc} ({rc.value:#x})")
        return rc.value, sp, cprops

    def _run(self) -> None:
        while not self._stop.is_set():
            rc = self.c.loop(timeout=0.02)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._disconnected.set()
                return

    @property
    def session_present(self) -> bool:
        return bool(self.connack and self.connack[1])

    def is_connected(self) -> bool:
        return self.c.is_connected() and not self._disconnected.is_set()

    def subscribe(self, topic, qos: int = 0, options: SubscribeOptions | None = None,
                  properties: Properties | None = None, timeout: float = 5.0) -> list[int]:
        """Subscribe and wait for the SUBACK; returns the reason codes (granted QoS)."""
        if isinstance(topic, list):
            arg = topic
        elif self.protocol == V5:
            arg = [(topic, options or SubscribeOptions(qos=qos))]
        else:
            arg = [(topic, qos)]
        rc, mid = self.c.subscribe(arg, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        try:
            return self._ack_queue(mid).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SUBACK within {timeout}s for {topic!r}") from None

    def unsubscribe(self, topic, timeout: float = 5.0) -> list[int]:
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        try:
            return self._ack_queue(mid).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no UNSUBACK within {timeout}s") from None

    def publish(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                properties: Properties | None = None, timeout: float = 5.0):
        """Publish and, for QoS 1/2, wait until the broker acknowledged it."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"publish failed locally: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic!r} (QoS {qos}) not acknowledged in "
                                 f"{timeout}s")
        return info

    def wait_for(self, n: int, timeout: float = 5.0) -> list:
        """Exactly-at-least n messages within timeout (raises with what did arrive)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(0.0, left)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id!r}: got {len(got)} of {n} messages within {timeout}s: "
                    f"{[(m.topic, m.payload[:30]) for m in got]}") from None
        return got

    def drain(self, timeout: float = 0.5) -> list:
        """Every message arriving within `timeout`."""
        return raw.collect(lambda left: self.messages.get(timeout=left), timeout, queue.Empty)

    def expect_nothing(self, timeout: float = 1.0) -> None:
        got = self.drain(timeout)
        assert not got, f"unexpected messages: {[(m.topic, m.payload[:30]) for m in got]}"

    def disconnect(self, reasoncode=None, properties=None, timeout: float = 5.0) -> None:
        """Send DISCONNECT and wait until the connection is closed."""
        if self.is_connected():
            self.c.disconnect(reasoncode=reasoncode, properties=properties)
            self._disconnected.wait(timeout)
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(5)
        try:
            self.c.socket() and self.c.socket().close()
        except OSError:
            pass


@pytest.fixture
def client_factory():
    """connect(broker, client_id, ...) -> connected Client; all closed at teardown."""
    made: list[Client] = []

    def connect(broker: Broker, client_id: str = "", protocol=V5, **kw) -> Client:
        expect_success = kw.pop("expect_success", True)
        c = Client(broker, client_id=client_id, protocol=protocol, **kw)
        made.append(c)
        c.connect(expect_success=expect_success)
        return c

    yield connect
    for c in made:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - teardown must reach every client
            pass


@pytest.fixture
def raw_factory():
    """raw_factory(broker, timeout=5) -> raw.RawClient to that broker; closed at teardown."""
    made = []

    def open_(target: Broker, timeout: float = 5.0) -> raw.RawClient:
        r = raw.RawClient(target.host, target.port, timeout=timeout)
        made.append(r)
        return r

    yield open_
    for r in made:
        r.close()


def raw_subscriber(raw_factory, broker: Broker, prefix: str, topic_filter: str, qos: int = 1,
                   **connect_kw) -> raw.RawClient:
    """A raw client connected as unique(prefix) (CONNECT options `connect_kw`, which must be
    accepted) and subscribed to `topic_filter` at `qos`."""
    sub = raw_factory(broker)
    assert sub.connect(unique(prefix), **connect_kw).reason == 0
    sub.subscribe([(topic_filter, raw.sub_options(qos=qos))])
    return sub


def unique(prefix: str) -> str:
    """A client id / topic component unique within this run."""
    unique.n += 1
    return f"{prefix}-{os.getpid()}-{unique.n}"


unique.n = 0
