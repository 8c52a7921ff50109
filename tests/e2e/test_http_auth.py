"""The HTTP auth service ([auth.http]) against the real binary: a Python http.server in a
thread plays the service and records every request. CONNACK for allow, deny and ignore
(falling through to the password file), MQTT 3.1.1's return code, the fields of POST and GET
requests, a service that is down (falls through, logged), the cache and SIGHUP emptying it,
and the HTTP ACL on SUBSCRIBE and PUBLISH. nanomq only: [auth.http] is nanomq's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import raw
from conftest import V5, V311, unique
from test_auth import nanomq_binary, paho_connect

pytestmark = pytest.mark.nanomq_only("[auth.http] config")

TOKEN = "Bearer e2e-token"


class AuthService:
    """An HTTP auth service on 127.0.0.1:0: /auth decides CONNECTs by user name, /acl decides
    by topic. Every request is kept in `requests` as a dict of method, path, headers, fields."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self, fields: dict) -> None:
                path = urllib.parse.urlsplit(self.path).path
                with service.lock:
                    service.requests.append({"method": self.command, "path": path,
                                             "headers": dict(self.headers), "fields": fields})
                status, body = service.decide(path, fields)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.handle_one(json.loads(self.rfile.read(length) or b"{}"))

            def do_GET(self):
                query = urllib.parse.urlsplit(self.path).query
                self.handle_one(dict(urllib.parse.parse_qsl(query, keep_blank_values=True)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def decide(path: str, fields: dict) -> tuple[int, str]:
        if path == "/auth":
            user = fields.get("username")
            if user == "ok":
                return 200, '{"result": "allow", "is_superuser": false}'
            if user == "bad":
                return 200, '{"result": "deny"}'
            if user == "forbidden":
                return 403, ""
            return 200, "ignore"
        topic = fields.get("topic", "")
        if topic.startswith("open/"):
            return 204, ""
        if topic.startswith("secret/"):
            return 200, '{"result": "deny"}'
        return 200, '{"result": "ignore"}'

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_service():
    service = AuthService()
    yield service
    service.stop()


def password_file(tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run([str(nanomq_binary()), "passwd", str(passwd), "filed", "--password",
                    "filed-pw"], check=True, capture_output=True)
    return passwd


def start(broker_factory, tmp_path, url: str, acl_url: str | None = None, **http):
    section = {"url": url, "timeout_ms": 1000, "headers": {"Authorization": TOKEN}, **http}
    if acl_url:
        section["acl_url"] = acl_url
    return broker_factory({"auth": {"password_file": str(password_file(tmp_path)),
                                    "http": section}})


def connack(raw_factory, broker, user, password, version=raw.V5, client_id=None) -> int:
    r = raw_factory(broker)
    pw = password.encode() if password is not None else None
    return r.connect(client_id or unique("h"), version=version, username=user, password=pw).reason


@pytest.mark.parametrize("version,bad", [(raw.V5, 0x86), (raw.V311, 4)], ids=["v5", "v311"])
def test_allow_deny_and_ignore(broker_factory, raw_factory, auth_service, tmp_path, version, bad):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth"))
    assert connack(raw_factory, broker, "ok", "any", version) == 0
    assert connack(raw_factory, broker, "bad", "any", version) == bad
    assert connack(raw_factory, broker, "forbidden", "any", version) == bad
    # ignore: the password file decides.
    assert connack(raw_factory, broker, "filed", "filed-pw", version) == 0
    assert connack(raw_factory, broker, "filed", "wrong", version) == bad
    assert connack(raw_factory, broker, "nobody", "x", version) == bad


def test_post_carries_the_documented_fields(broker_factory, raw_factory, auth_service, tmp_path):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth"))
    cid = unique("fields")
    assert connack(raw_factory, broker, "ok", "p\u00e4ss\"word", client_id=cid) == 0
    (req,) = auth_service.seen("/auth")
    assert req["method"] == "POST"
    assert req["headers"]["Authorization"] == TOKEN
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["fields"] == {"username": "ok", "clientid": cid, "password": "p\u00e4ss\"word",
                             "ip": "127.0.0.1"}


def test_get_sends_a_query(broker_factory, raw_factory, auth_service, tmp_path):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth?source=nanomq"),
                   method="get")
    cid = unique("get")
    assert connack(raw_factory, broker, "ok", "a&b=c", client_id=cid) == 0
    (req,) = auth_service.seen("/auth")
    assert req["method"] == "GET"
    assert req["fields"] == {"source": "nanomq", "username": "ok", "clientid": cid,
                             "password": "a&b=c", "ip": "127.0.0.1"}


def test_a_service_that_is_down_falls_through_and_is_logged(broker_factory, raw_factory,
                                                            auth_service, tmp_path):
    url = auth_service.url("/auth")
    auth_service.stop()
    broker = start(broker_factory, tmp_path, url)
    assert connack(raw_factory, broker, "filed", "filed-pw") == 0
    assert connack(raw_factory, broker, "ok", "any") == 0x86
    log = broker.log_text()
    assert "HTTP auth service gave no answer" in log, log


def wait_for_log(broker, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in broker.log_text():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def test_answers_are_cached_and_sighup_empties_the_cache(broker_factory, raw_factory,
                                                         auth_service, tmp_path):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth"))
    for _ in range(3):
        assert connack(raw_factory, broker, "ok", "pw", client_id="cached") == 0
    assert len(auth_service.seen("/auth")) == 1
    broker.proc.send_signal(signal.SIGHUP)
    wait_for_log(broker, "auth reloaded")
    assert connack(raw_factory, broker, "ok", "pw", client_id="cached") == 0
    assert len(auth_service.seen("/auth")) == 2


def test_acl_on_subscribe_and_publish(broker_factory, raw_factory, auth_service, tmp_path):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth"),
                   acl_url=auth_service.url("/acl"))
    sub = raw_factory(broker)
    cid = unique("acl")
    assert sub.connect(cid, username="ok", password=b"pw").reason == 0
    ack = sub.subscribe([("open/#", raw.sub_options(qos=1)), ("secret/#", raw.sub_options(qos=1)),
                         ("other/#", raw.sub_options(qos=1))])
    # other: ignored, and with no ACL file an undecided request is denied.
    assert ack.reasons == [1, 0x87, 0x87], ack
    pub = raw_factory(broker)
    assert pub.connect(unique("acl-pub"), username="ok", password=b"pw").reason == 0
    assert pub.publish("secret/x", b"no", qos=1).reason == 0x87
    assert pub.publish("open/x", b"yes", qos=1).reason == 0
    assert sub.expect(raw.PUBLISH).payload == b"yes"
    acl = auth_service.seen("/acl")
    subscribes = [r["fields"] for r in acl if r["fields"]["action"] == "subscribe"]
    assert {f["topic"] for f in subscribes} == {"open/#", "secret/#", "other/#"}
    assert all(f["clientid"] == cid and f["username"] == "ok" and f["ip"] == "127.0.0.1"
               for f in subscribes)
    publishes = [r["fields"]["topic"] for r in acl if r["fields"]["action"] == "publish"]
    assert sorted(publishes) == ["open/x", "secret/x"]


def test_paho_clients(broker_factory, auth_service, tmp_path):
    broker = start(broker_factory, tmp_path, auth_service.url("/auth"),
                   acl_url=auth_service.url("/acl"))
    for user, expected in [("ok", 0), ("bad", 0x86), ("filed", 0)]:
        rc, c = paho_connect(broker, V5, user, "filed-pw" if user == "filed" else "x")
        assert rc == expected, f"{user}: CONNACK {rc:#x}"
        if rc == 0:
            assert c.subscribe([("open/a", 1), ("secret/a", 1)]) == [1, 0x87]
            c.disconnect()
        else:
            c.close()
    rc, c = paho_connect(broker, V311, "ok", "x")
    assert rc == 0
    assert c.subscribe([("open/a", 1), ("secret/a", 1)]) == [1, 0x80]
    c.disconnect()
