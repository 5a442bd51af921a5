"""The plain RESP connection behind the entitlement check's fast lane: it speaks to the
configured Redis (database included), raises on error replies and lost connections, and
reconnects on the next call."""

from __future__ import annotations

import hiredis
import pytest
import redis
from django.conf import settings

from billing_project.redis_client import Wire, get_redis, rkey


def test_a_call_and_its_reply():
    wire = Wire(settings.REDIS_URL)
    key = rkey("wire-test")
    assert wire.call("SET", key, "v") == b"OK"
    assert wire.call("GET", key) == b"v"
    assert wire.call("INCR", rkey("wire-count")) == 1
    assert get_redis().get(key) == b"v"  # the same server and database as redis-py's


def test_it_selects_the_database_of_its_url():
    url = settings.REDIS_URL  # unix://…?db=N (embedded) or redis://host:port/N
    n = (int(get_redis().connection_pool.connection_kwargs.get("db", 0)) + 1) % 16  # not the suite's own
    other = url.split("?db=")[0] + f"?db={n}" if "?db=" in url else url.rsplit("/", 1)[0] + f"/{n}"
    key = rkey("wire-db")
    Wire(other).call("SET", key, f"in db {n}")
    try:
        assert redis.Redis.from_url(other).get(key) == f"in db {n}".encode()
        assert get_redis().get(key) is None
    finally:
        redis.Redis.from_url(other).delete(key)


def test_an_error_reply_raises():
    with pytest.raises(hiredis.ReplyError, match="NOSCRIPT"):
        Wire(settings.REDIS_URL).call("EVALSHA", "0" * 40, 0)


def test_a_lost_connection_raises_once_then_reconnects():
    wire = Wire(settings.REDIS_URL)
    client_id = wire.call("CLIENT", "ID")
    get_redis().client_kill_filter(_id=client_id)
    with pytest.raises((OSError, ConnectionError)):
        wire.call("PING")
    assert wire.call("PING") == b"PONG"


def test_an_unreachable_redis_raises_quickly():
    with pytest.raises(ConnectionRefusedError):
        Wire("redis://127.0.0.1:1/0").call("PING")


def test_each_thread_has_its_own_connection():
    import threading

    from billing_project.redis_client import get_wire

    mine = get_wire()
    assert get_wire() is mine
    theirs: list[object] = []
    thread = threading.Thread(target=lambda: theirs.append(get_wire()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
