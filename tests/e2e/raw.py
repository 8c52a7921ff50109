"""A tiny raw-socket MQTT client for what SDKs won't do.

Builds CONNECT / PUBLISH / SUBSCRIBE / ... bytes by hand (MQTT 3.1, 3.1.1 and 5.0),
reads packets with a timeout and parses the fixed header, remaining length, and the
variable header and properties of every packet a server can send. Tests use it to
send malformed packets, to stay silent (keepalive and connect timeouts), to violate
Receive Maximum, and to check exact reason codes, DUP flags, packet ids and topic
aliases.

Every blocking call has a timeout; nothing here can hang a test.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types (fixed header high nibble).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

# Protocol levels.
V31 = 3
V311 = 4
V5 = 5

# Property identifiers (MQTT 5.0 section 2.2.2.2) -> (name, wire type).
PROPS = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
PROP_IDS = {name: (pid, kind) for pid, (name, kind) in PROPS.items()}
# Properties that may appear more than once; parsed into lists.
MULTI = {"user_property", "subscription_identifier"}


class Closed(Exception):
    """The server closed the connection."""


class Timeout(Exception):
    """Nothing (or not the expected packet) arrived in time."""


def collect(get, timeout: float, stop) -> list:
    """Call get(seconds_left) until `timeout` seconds have passed or it raises one of the
    exceptions in `stop`; return what it returned, in order.

    Shared by RawClient.recv_all and conftest's Client.drain.
    """
    out = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(get(left))
        except stop:
            break
    return out


# ---------------------------------------------------------------- encoding


def varint(n: int) -> bytes:
    if n < 0 or n > 268_435_455:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def string(s: str | bytes) -> bytes:
    """UTF-8 string with a 2-byte length prefix; bytes are sent verbatim (for invalid UTF-8)."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u16(len(b)) + b


binary = string


def properties(props: dict | None) -> bytes:
    """Encode a property dict (names as in PROPS) with its varint length prefix.

    Multi-valued properties take lists: user_property=[("k", "v"), ...],
    subscription_identifier=[1, 2]. Unknown names raise, so a typo can't pass silently.
    """
    body = bytearray()
    for name, value in (props or {}).items():
        pid, kind = PROP_IDS[name]
        values = value if name in MULTI and isinstance(value, list) else [value]
        for v in values:
            body += varint(pid)
            if kind == "byte":
                body.append(v)
            elif kind == "u16":
                body += u16(v)
            elif kind == "u32":
                body += u32(v)
            elif kind == "varint":
                body += varint(v)
            elif kind in ("str", "bin"):
                body += string(v)
            elif kind == "pair":
                body += string(v[0]) + string(v[1])
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """A whole packet: fixed header byte, remaining length, body."""
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(len(body)) + body


def connect(
    client_id: str | bytes = "",
    version: int = V5,
    clean: bool = True,
    keepalive: int = 60,
    props: dict | None = None,
    username: str | None = None,
    password: bytes | None = None,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    will_props: dict | None = None,
    reserved_flag: bool = False,
) -> bytes:
    if version == V31:
        vh = string("MQIsdp") + bytes([3])
    else:
        vh = string("MQTT") + bytes([version])
    flags = 0
    if reserved_flag:
        flags |= 0x01
    if clean:
        flags |= 0x02
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    vh += bytes([flags]) + u16(keepalive)
    if version == V5:
        vh += properties(props)
    payload = string(client_id)
    if will_topic is not None:
        if version == V5:
            payload += properties(will_props)
        payload += string(will_topic) + binary(will_payload)
    if username is not None:
        payload += string(username)
    if password is not None:
        payload += binary(password)
    return packet(CONNECT, 0, vh + payload)


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
    version: int = V5,
    props: dict | None = None,
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos > 0:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        body += u16(packet_id)
    if version == V5:
        body += properties(props)
    return packet(PUBLISH, flags, body + payload)


def ack(ptype: int, packet_id: int, reason: int | None = None, version: int = V5) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP. PUBREL carries the mandatory flags 0b0010."""
    body = u16(packet_id)
    if version == V5 and reason is not None:
        body += bytes([reason])
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def subscribe(
    packet_id: int,
    filters: list,
    version: int = V5,
    props: dict | None = None,
    flags: int = 0x02,
) -> bytes:
    """filters: [(filter, options_byte)] or [(filter, qos)] for v3. Use sub_options()."""
    body = u16(packet_id)
    if version == V5:
        body += properties(props)
    for f, opts in filters:
        body += string(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def sub_options(qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


def unsubscribe(packet_id: int, filters: list[str], version: int = V5, props=None) -> bytes:
    body = u16(packet_id)
    if version == V5:
        body += properties(props)
    for f in filters:
        body += string(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect(reason: int = 0, version: int = V5, props: dict | None = None) -> bytes:
    if version != V5:
        return packet(DISCONNECT, 0, b"")
    return packet(DISCONNECT, 0, bytes([reason]) + properties(props))


# ---------------------------------------------------------------- decoding


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes
    raw: bytes
    # Parsed fields (only the ones meaningful for the type are set).
    reason: int | None = None
    reasons: list[int] = field(default_factory=list)
    session_present: bool | None = None
    packet_id: int | None = None
    topic: str | None = None
    topic_bytes: bytes | None = None
    payload: bytes | None = None
    qos: int = 0
    retain: bool = False
    dup: bool = False
    props: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        parts = [self.name]
        for k in ("reason", "session_present", "packet_id", "topic", "qos", "retain", "dup"):
            v = getattr(self, k)
            if v not in (None, False, 0) or (k == "reason" and v == 0):
                parts.append(f"{k}={v!r}")
        if self.reasons:
            parts.append(f"reasons={[hex(r) for r in self.reasons]}")
        if self.payload is not None:
            parts.append(f"payload={self.payload[:40]!r}")
        if self.props:
            parts.append(f"props={self.props!r}")
        return "<" + " ".join(parts) + ">"


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated packet")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def varint(self) -> int:
        mult, value = 1, 0
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise ValueError("malformed varint")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def str(self) -> str:
        return self.binary().decode("utf-8")

    def props(self) -> dict:
        end = self.varint() + self.pos
        out: dict = {}
        while self.pos < end:
            pid = self.varint()
            name, kind = PROPS[pid]
            if kind == "byte":
                v = self.byte()
            elif kind == "u16":
                v = self.u16()
            elif kind == "u32":
                v = self.u32()
            elif kind == "varint":
                v = self.varint()
            elif kind == "str":
                v = self.str()
            elif kind == "bin":
                v = self.binary()
            else:
                v = (self.str(), self.str())
            if name in MULTI:
                out.setdefault(name, []).append(v)
            else:
                out[name] = v
        return out


def parse(ptype: int, flags: int, body: bytes, raw: bytes, version: int) -> Packet:
    p = Packet(type=ptype, flags=flags, body=body, raw=raw)
    r = _Reader(body)
    v5 = version == V5
    if ptype == CONNACK:
        p.session_present = bool(r.byte() & 0x01)
        p.reason = r.byte()
        if v5 and r.left():
            p.props = r.props()
    elif ptype == PUBLISH:
        p.qos = (flags >> 1) & 0x03
        p.retain = bool(flags & 0x01)
        p.dup = bool(flags & 0x08)
        p.topic_bytes = r.binary()
        p.topic = p.topic_bytes.decode("utf-8", "replace")
        if p.qos:
            p.packet_id = r.u16()
        if v5:
            p.props = r.props()
        p.payload = r.take(r.left())
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.packet_id = r.u16()
        p.reason = r.byte() if r.left() else 0
        if v5 and r.left():
            p.props = r.props()
    elif ptype in (SUBACK, UNSUBACK):
        p.packet_id = r.u16()
        if v5:
            p.props = r.props()
        p.reasons = list(r.take(r.left()))
    elif ptype == DISCONNECT or ptype == AUTH:
        p.reason = r.byte() if r.left() else 0
        if r.left():
            p.props = r.props()
    return p


# ---------------------------------------------------------------- connection


class RawClient:
    """One TCP connection speaking bytes. Close it (or use `with`) when done.

    `version` selects how incoming packets are parsed (properties only in v5); connect()
    sets it from the CONNECT it sends.
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0, version: int = V5):
        self.version = version
        self.default_timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.stash: list[Packet] = []  # packets skipped by expect(), returned by recv() first
        self.closed = False
        self._next_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def next_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: the server reads end of stream, and we can still read its reply."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def try_send(self, data: bytes) -> bool:
        """Send, returning False instead of raising if the peer already closed."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("no packet before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout("no packet before the deadline") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed("connection closed by server")
        self.buf += chunk

    def _try_frame(self):
        """Return (header, body, raw) if a whole packet is buffered, else None."""
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ValueError("malformed remaining length from server")
        if len(self.buf) < i + length:
            return None
        raw = bytes(self.buf[: i + length])
        del self.buf[: i + length]
        return raw[0], raw[i:], raw

    def _recv_wire(self, timeout: float | None) -> Packet:
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while True:
            framed = self._try_frame()
            if framed:
                header, body, raw = framed
                return parse(header >> 4, header & 0x0F, body, raw, self.version)
            if self.closed:
                raise Closed("connection closed by server")
            self._fill(deadline)

    def recv(self, timeout: float | None = None) -> Packet:
        """Next packet (stashed ones first). Raises Timeout or Closed."""
        if self.stash:
            return self.stash.pop(0)
        return self._recv_wire(timeout)

    def expect(self, ptype: int, timeout: float | None = None, skip: tuple = ()) -> Packet:
        """Next packet, which must be `ptype`.

        Packets of the types in `skip` are set aside (in order) for later recv()/expect().
        """
        for i, p in enumerate(self.stash):
            if p.type == ptype:
                return self.stash.pop(i)
            if p.type not in skip:
                raise AssertionError(f"expected {PACKET_NAMES[ptype]}, got {p!r}")
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while True:
            p = self._recv_wire(max(0.0, deadline - time.monotonic()))
            if p.type in skip:
                self.stash.append(p)
                continue
            if p.type != ptype:
                raise AssertionError(f"expected {PACKET_NAMES[ptype]}, got {p!r}")
            return p

    def recv_all(self, timeout: float) -> list[Packet]:
        """Every packet arriving within `timeout` seconds (stops early on close)."""
        return collect(self.recv, timeout, (Timeout, Closed))

    def wait_closed(self, timeout: float) -> list[Packet]:
        """Wait until the server closes; return the packets seen before the close.

        Raises Timeout if the connection is still open after `timeout` seconds.
        """
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return seen
            except Timeout:
                raise Timeout(f"connection still open after {timeout}s; saw {seen!r}") from None

    # -------------------------------------------------------------- helpers

    def connect(self, client_id: str | bytes = "", version: int = V5, timeout: float | None = None,
                **kw) -> Packet:
        """Send CONNECT and return the CONNACK (any reason code)."""
        self.version = version
        self.send(connect(client_id, version=version, **kw))
        return self.expect(CONNACK, timeout)

    def subscribe(self, filters: list, props: dict | None = None, timeout=None) -> Packet:
        """filters: [(filter, options_byte)]. Returns the SUBACK (PUBLISHes before it skipped)."""
        pid = self.next_id()
        self.send(subscribe(pid, filters, version=self.version, props=props))
        p = self.expect(SUBACK, timeout, skip=(PUBLISH,))
        assert p.packet_id == pid, f"SUBACK for {p.packet_id}, expected {pid}"
        return p

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, dup=False,
                packet_id=None, wait_ack=True, timeout=None) -> Packet | None:
        """Publish; for QoS 1/2 wait for PUBACK / run the PUBREC-PUBREL-PUBCOMP flow."""
        pid = packet_id if packet_id is not None else (self.next_id() if qos else None)
        self.send(publish(topic, payload, qos=qos, packet_id=pid, retain=retain, dup=dup,
                          version=self.version, props=props))
        if qos == 0 or not wait_ack:
            return None
        if qos == 1:
            return self.expect(PUBACK, timeout, skip=(PUBLISH,))
        rec = self.expect(PUBREC, timeout, skip=(PUBLISH,))
        self.send(ack(PUBREL, pid, version=self.version))
        self.expect(PUBCOMP, timeout, skip=(PUBLISH,))
        return rec

    def disconnect(self, reason: int = 0, props: dict | None = None) -> None:
        self.try_send(disconnect(reason, version=self.version, props=props))
        self.close()
