"""Regressions from the fast lane's security review: a Redis connection that went out of
step, tenants named outside the body, the Host check, double rate counting, and key use."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from django.conf import settings

from billing_project.models import ApiKey
from billing_project.redis_client import Wire, get_wire

from .test_fastpath import CHECKS, bound, served, via_view, warm

pytestmark = [pytest.mark.django_db]


def _upstream(opts: dict[str, Any]) -> socket.socket:
    """A connection to the suite's Redis: its unix socket (embedded) or host and port."""
    if opts.get("path"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(opts["path"])
        return sock
    return socket.create_connection((opts["host"], opts["port"]))


def _proxy_delaying_first_select(opts: dict[str, Any], delay: float) -> tuple[str, int, threading.Event]:
    """A TCP proxy in front of the suite's Redis that holds back the reply to the first
    connection's opening command (SELECT when the URL names a database, else the first call) for `delay` seconds:
    a slow Redis or network. Everything after passes straight through. The event is set
    once the late reply has been delivered: the connection's socket then holds a reply
    nobody is waiting for, the state the tests are about."""
    once = threading.Event()
    delivered = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def pump(src: socket.socket, dst: socket.socket, hold: threading.Event | None) -> None:
        try:
            while chunk := src.recv(65536):
                if hold is not None and not hold.is_set():
                    time.sleep(delay)  # the slow network itself, not a wait for something
                    hold.set()
                    dst.sendall(chunk)
                    delivered.set()
                else:
                    dst.sendall(chunk)
        except OSError:
            pass

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = _upstream(opts)
            first = client.recv(65536)
            delayed = not once.is_set()
            once.set()
            hold = threading.Event() if delayed else None
            upstream.sendall(first)
            threading.Thread(target=pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, hold), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    host, port = listener.getsockname()
    return str(host), int(port), delivered


def test_a_timeout_while_connecting_leaves_nothing_out_of_step():
    """A late reply to SELECT must not answer a later command: the half-set-up connection
    is dropped, and the next call connects anew."""
    host, port, delivered = _proxy_delaying_first_select(Wire(settings.REDIS_URL).options, 0.5)
    wire = Wire(f"redis://{host}:{port}/1")  # a database to SELECT: the connection's set-up is what is late
    with pytest.raises(TimeoutError):
        wire.call("PING")  # SELECT's reply is late: a timeout while connecting
    assert delivered.wait(10)  # the late reply has reached the old connection
    assert wire.call("ECHO", "first") == b"first"
    assert wire.call("ECHO", "second") == b"second"


def test_after_a_connect_timeout_no_request_is_decided_on_another_requests_reply(
    api, reader, make_key, subscribed, settings
):
    """End to end: a key without the scope must get the view's 403 whatever happened to
    the fast lane's connection before (each reply echoes the key it was asked about)."""
    opts = Wire(settings.REDIS_URL).options
    warm(reader, CHECKS[0])
    victim = make_key("service", scopes=["usage:write"])  # no entitlements:read at all
    assert served(CHECKS[0], key=victim)[0] == 403
    host, port, delivered = _proxy_delaying_first_select(opts, 0.5)
    settings.REDIS_URL = f"redis://{host}:{port}/{opts.get('db', 0)}"
    get_wire().close()
    # 1: the fast lane's first reply is late: it times out, and the view answers
    assert served(CHECKS[0], key=reader)[3] == "django"
    assert delivered.wait(10)  # the late reply has reached the old connection
    # 2: a fresh connection answers it in the fast lane
    assert served(CHECKS[0], key=reader)[3] == "fast"
    # 3: the key without the scope is refused, as by the view
    status, _, answer, lane = served(CHECKS[0], key=victim)
    assert (status, lane, answer["error"]["code"]) == (403, "django", "missing_scope")


def test_a_bound_key_naming_another_tenant_in_the_query_string(api, make_key, subscribed):
    """The view's tenants_named() reads ?tenant=…; the fast lane reads the body only."""
    key = bound(make_key, "acme")
    warm(key, CHECKS[0])
    status, _, _, lane = served(CHECKS[0], key=key, headers={"QUERY_STRING": "tenant=globex"})
    view = api.post("/api/v1/entitlements/check?tenant=globex", CHECKS[0], format="json", **key.header)
    assert view.status_code == 404
    assert (status, lane) == (404, "django")


def test_a_bound_key_naming_another_tenant_in_events(api, make_key, subscribed):
    key = bound(make_key, "acme")
    warm(key, CHECKS[0])
    body = {**CHECKS[0], "events": [{"tenant": "globex"}]}
    assert via_view(api, body, key)[0] == 404
    status, _, _, lane = served(body, key=key)
    assert (status, lane) == (404, "django")


def test_a_host_outside_allowed_hosts(api, reader, subscribed):
    warm(reader, CHECKS[0])
    status, _, _, lane = served(CHECKS[0], key=reader, headers={"HTTP_HOST": "evil.example"})
    view = api.post("/api/v1/entitlements/check", CHECKS[0], format="json", HTTP_HOST="evil.example", **reader.header)
    assert view.status_code == 400  # DisallowedHost, in the API's shape
    assert view.json()["error"]["code"] == "invalid_host"
    assert (status, lane) == (400, "django")


def test_a_request_passed_to_the_view_counts_once_against_the_rate_limit(make_key, subscribed):
    """The fast lane counted it; the view must not count it again."""
    key = make_key("service", scopes=["entitlements:read"], rate=2)
    body = {"tenant": "acme", "feature": "teleport"}  # unknown feature: always the view
    first = served(body, key=key)
    second = served(body, key=key)
    third = served(body, key=key)
    assert (first[0], second[0]) == (400, 400)  # 2 requests of 2 a minute
    assert (third[0], third[2]["error"]["code"]) == (429, "rate_limited")


def test_the_fast_lane_records_the_keys_use(reader, subscribed):
    warm(reader, CHECKS[0])
    ApiKey.objects.filter(pk=reader.key.pk).update(last_used_at=None)
    from billing_project import api_keys

    api_keys._touched.clear()
    from billing_project.redis_client import get_redis, rkey

    get_redis().delete(rkey("apikey-used", reader.key.pk))
    assert served(CHECKS[0], key=reader)[3] == "fast"
    assert ApiKey.objects.get(pk=reader.key.pk).last_used_at is not None
