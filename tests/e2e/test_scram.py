"""MQTT 5 enhanced authentication with SCRAM-SHA-256 against the real binary, on a password file
written by `nanomq passwd`, with a client written here from RFC 5802 on Python's hashlib and hmac
(an implementation of its own, not the broker's code) speaking raw packets.

paho-mqtt 2.2 can put an Authentication Method and Data in CONNECT but does not handle the AUTH
packet the broker answers with (it closes the connection on an unknown packet type), so it
cannot do SCRAM; raw.py can. nanomq only: mosquitto offers no SCRAM without a plugin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess

import pytest

import raw
from conftest import unique
from test_auth import nanomq_binary

pytestmark = pytest.mark.nanomq_only("SCRAM-SHA-256 against nanomq's password file")

METHOD = "SCRAM-SHA-256"


class Scram:
    """The client's side of one exchange."""

    def __init__(self, user: str, password: str):
        self.password = password.encode()
        nonce = base64.b64encode(os.urandom(12)).decode()
        self.first_bare = f"n={user},r={nonce}"
        self.nonce = nonce
        self.server_final = None

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(a.split("=", 1) for a in text.split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce), text
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        server_signature = hmac.digest(server_key, auth_message, "sha256")
        self.server_final = b"v=" + base64.b64encode(server_signature)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def auth_packet(reason: int, data: bytes, method: str = METHOD) -> bytes:
    props = raw.properties({"authentication_method": method, "authentication_data": data})
    return raw.packet(raw.AUTH, 0, bytes([reason]) + props)


@pytest.fixture
def scram_broker(broker_factory, tmp_path):
    passwd = tmp_path / "passwd"
    for args in (["erin", "--password", "erin-pw"],
                 ["frank", "--password", "frank-pw", "--no-scram"]):
        subprocess.run([str(nanomq_binary()), "passwd", str(passwd), *args], check=True,
                       capture_output=True)
    acl = tmp_path / "acl"
    acl.write_text("allow user:erin both erin/#\ndefault deny\n")
    return broker_factory({"auth": {"password_file": str(passwd), "acl_file": str(acl)}})


def scram_login(r: raw.RawClient, user: str, password: str, username: str | None = None):
    """The whole exchange at CONNECT; returns the CONNACK and the Scram state."""
    s = Scram(user, password)
    r.version = raw.V5
    r.send(raw.connect(unique("scram"), username=username,
                       props={"authentication_method": METHOD,
                              "authentication_data": s.client_first()}))
    challenge = r.recv()
    if challenge.type == raw.CONNACK:
        return challenge, s
    assert challenge.type == raw.AUTH and challenge.reason == 0x18, challenge
    assert challenge.props["authentication_method"] == METHOD
    r.send(auth_packet(0x18, s.client_final(challenge.props["authentication_data"])))
    return r.expect(raw.CONNACK), s


def test_scram_login_with_mutual_authentication(scram_broker, raw_factory):
    r = raw_factory(scram_broker)
    ack, s = scram_login(r, "erin", "erin-pw")
    assert ack.reason == 0, ack
    assert ack.props["authentication_method"] == METHOD
    assert ack.props["authentication_data"] == s.server_final, "server signature"
    # The SCRAM user is the ACL's user.
    assert r.publish("erin/x", b"1", qos=1).reason == 0x10
    assert r.publish("other/x", b"1", qos=1).reason == 0x87


@pytest.mark.parametrize("user,password", [("erin", "wrong"), ("frank", "frank-pw"),
                                           ("nobody", "erin-pw")],
                         ids=["wrong-password", "argon2id-only", "unknown-user"])
def test_scram_refusals_are_0x86(scram_broker, raw_factory, user, password):
    r = raw_factory(scram_broker)
    ack, _ = scram_login(r, user, password)
    assert ack.reason == 0x86, ack
    assert r.wait_closed(5) == []


def test_plain_passwords_still_work_for_scram_users(scram_broker, raw_factory):
    for user in ("erin", "frank"):
        r = raw_factory(scram_broker)
        assert r.connect(unique("plain"), username=user,
                         password=f"{user}-pw".encode()).reason == 0


def test_other_methods_get_0x8c(scram_broker, raw_factory):
    r = raw_factory(scram_broker)
    ack = r.connect(unique("m"), props={"authentication_method": "SCRAM-SHA-1",
                                        "authentication_data": b"n,,n=erin,r=abc"})
    assert ack.reason == 0x8C, ack
    assert r.wait_closed(5) == []


def test_reauthentication(scram_broker, raw_factory):
    r = raw_factory(scram_broker)
    ack, _ = scram_login(r, "erin", "erin-pw")
    assert ack.reason == 0
    s = Scram("erin", "erin-pw")
    r.send(auth_packet(0x19, s.client_first()))
    challenge = r.expect(raw.AUTH)
    assert challenge.reason == 0x18
    r.send(auth_packet(0x18, s.client_final(challenge.props["authentication_data"])))
    done = r.expect(raw.AUTH)
    assert done.reason == 0x00 and done.props["authentication_data"] == s.server_final
    # A wrong password ends the connection with DISCONNECT 0x87.
    s = Scram("erin", "wrong")
    r.send(auth_packet(0x19, s.client_first()))
    challenge = r.expect(raw.AUTH)
    r.send(auth_packet(0x18, s.client_final(challenge.props["authentication_data"])))
    assert [p.reason for p in r.wait_closed(5) if p.type == raw.DISCONNECT] == [0x87]
