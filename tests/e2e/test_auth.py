"""Authentication and the ACL: CONNACK codes for bad credentials and anonymous clients, and
the reason codes of denied SUBSCRIBE filters and PUBLISHes, with paho-mqtt and raw packets.

The password file holds one user set with `nanomq passwd` (argon2id) and one in Mosquitto's
`$7$` format (PBKDF2-SHA512, written here as mosquitto_passwd would), which nanomq reads as
it is. nanomq only: the files and the [auth] section are nanomq's.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import raw
from conftest import REPO_ROOT, V5, V311, Client, unique

pytestmark = pytest.mark.nanomq_only("[auth] config and nanomq passwd")

ACL = """\
default deny
allow all subscribe public/#
allow all publish   public/#
allow user:migrated both migrated/#
"""


def nanomq_binary() -> Path:
    binary = Path(os.environ.get("NANOMQ_BIN", REPO_ROOT / "target/debug/nanomq"))
    return binary if binary.is_absolute() else REPO_ROOT / binary


def mosquitto_line(user: str, password: str, iterations: int = 101) -> str:
    """A `$7$` line as mosquitto_passwd 2.x writes it: 12-byte salt, PBKDF2-HMAC-SHA512."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"{user}:$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}\n")


@pytest.fixture
def auth_broker(broker_factory, tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run([str(nanomq_binary()), "passwd", str(passwd), "alice", "--password",
                    "alice-pw"], check=True, capture_output=True)
    with passwd.open("a") as f:
        f.write(mosquitto_line("migrated", "old-pw"))
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return broker_factory({"auth": {"password_file": str(passwd), "acl_file": str(acl)}})


def paho_connect(broker, protocol, username=None, password=None) -> tuple[int, Client]:
    c = Client(broker, unique("auth"), protocol=protocol)
    if username is not None:
        c.c.username_pw_set(username, password)
    rc, _, _ = c.connect(expect_success=False)
    return rc, c


@pytest.mark.parametrize(
    "username,password,reason",
    [("alice", "wrong", 0x86), ("nobody", "alice-pw", 0x86), (None, None, 0x87)],
    ids=["wrong-password", "unknown-user", "anonymous"],
)
def test_v5_connack_codes(auth_broker, username, password, reason):
    rc, c = paho_connect(auth_broker, V5, username, password)
    c.close()
    assert rc == reason, f"CONNACK {rc:#x}, expected {reason:#x}"


@pytest.mark.parametrize(
    "username,password,code",
    [("alice", b"wrong", 4), ("nobody", b"alice-pw", 4), (None, None, 5)],
    ids=["wrong-password", "unknown-user", "anonymous"],
)
def test_v311_connack_return_codes(auth_broker, raw_factory, username, password, code):
    r = raw_factory(auth_broker)
    ack = r.connect(unique("auth311"), version=raw.V311, username=username, password=password)
    assert ack.reason == code, ack
    r.wait_closed(3)


def test_users_from_both_hash_formats_connect(auth_broker):
    for username, password in [("alice", "alice-pw"), ("migrated", "old-pw")]:
        for protocol in (V5, V311):
            rc, c = paho_connect(auth_broker, protocol, username, password)
            c.disconnect()
            assert rc == 0, f"{username} over {protocol}: CONNACK {rc:#x}"


def test_denied_subscribe_reason_codes(auth_broker):
    rc, v5 = paho_connect(auth_broker, V5, "alice", "alice-pw")
    assert rc == 0
    codes = v5.subscribe([("public/#", 1), ("secret/#", 1), ("#", 0)])
    assert codes == [1, 0x87, 0x87], codes
    v5.disconnect()

    rc, v3 = paho_connect(auth_broker, V311, "alice", "alice-pw")
    assert rc == 0
    codes = v3.subscribe([("public/#", 1), ("secret/#", 1)])
    assert codes == [1, 0x80], codes
    v3.disconnect()


def test_denied_publish_gets_0x87_and_is_not_delivered(auth_broker, raw_factory):
    sub = raw_factory(auth_broker)
    assert sub.connect(unique("m-sub"), username="migrated", password=b"old-pw").reason == 0
    sub.subscribe([("migrated/#", raw.sub_options(qos=1))])
    pub = raw_factory(auth_broker)
    assert pub.connect(unique("a-pub"), username="alice", password=b"alice-pw").reason == 0
    ack = pub.publish("migrated/x", b"no", qos=1)
    assert ack.reason == 0x87, ack
    allowed = raw_factory(auth_broker)
    assert allowed.connect(unique("m-pub"), username="migrated", password=b"old-pw").reason == 0
    assert allowed.publish("migrated/x", b"yes", qos=1).reason == 0x00
    p = sub.expect(raw.PUBLISH)
    assert p.payload == b"yes", f"the denied message was delivered: {p!r}"
