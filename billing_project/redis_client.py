"""One Redis connection pool per process, for counters, rate limits and caches.

Timeouts are short on purpose: Redis is an accelerator here, and every caller
has a PostgreSQL fallback or fails open (rate limits) when it is unreachable.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
from collections.abc import Iterable
from typing import Any

import hiredis
import redis
from django.conf import settings
from django.core.signals import setting_changed
from redis.connection import SSLConnection, parse_url


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=0.25,
        socket_connect_timeout=0.25,
        health_check_interval=30,
    )


@functools.cache
def _prefix() -> str:
    return str(settings.REDIS_KEY_PREFIX)  # read once: rkey is on the entitlement check's hot path


def rkey(*parts: object) -> str:
    """A Redis key in this deployment's namespace (tests and a dev server may share a Redis)."""
    return ":".join((_prefix(), *map(str, parts)))


class Wire:
    """One plain RESP connection per process for the single hottest call, the entitlement
    check's EVALSHA: redis-py's command machinery costs as much as the round trip itself.
    Any trouble raises (and the connection is dropped, to reconnect on the next call); the
    caller then falls back to redis-py's path. Error replies (NOSCRIPT…) raise ReplyError."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.options = parse_url(url)  # type: ignore[no-untyped-call]
        self.sock: socket.socket | None = None
        self.pid = 0

    def _connect(self) -> socket.socket:
        """A connected, authenticated socket on the right database, or an exception and
        nothing kept: a half-set-up connection would answer the next call with a late reply."""
        path = self.options.get("path")
        host = self.options.get("host", "localhost")
        if path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.create_connection((host, self.options.get("port", 6379)), timeout=0.25)
        try:
            sock.settimeout(0.25)
            if path:
                sock.connect(path)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.options.get("connection_class") is SSLConnection:  # rediss://
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            self.reader = hiredis.Reader()
            password, username = self.options.get("password"), self.options.get("username")
            if password:
                self._roundtrip(sock, ("AUTH", username, password) if username else ("AUTH", password))
            if self.options.get("db"):
                self._roundtrip(sock, ("SELECT", self.options["db"]))
        except BaseException:
            sock.close()
            raise
        self.sock, self.pid = sock, os.getpid()
        return sock

    def call(self, *args: Any) -> Any:
        try:
            usable = self.sock is not None and self.pid == os.getpid()  # a forked child connects anew
            sock = self.sock if usable and self.sock is not None else self._connect()
            return self._roundtrip(sock, args)
        except BaseException:
            self.close()
            raise

    def _roundtrip(self, sock: socket.socket, args: Iterable[Any]) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise reply
                return reply
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.reader.feed(chunk)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


_wires = threading.local()


def get_wire() -> Wire:
    """This thread's connection: one socket must never carry two threads' calls at once
    (under threaded workers a reply could reach the wrong request)."""
    wire: Wire | None = getattr(_wires, "wire", None)
    if wire is None or wire.url != settings.REDIS_URL:
        wire = _wires.wire = Wire(settings.REDIS_URL)
    return wire


def _forget_pool(*, setting: str, **_: object) -> None:
    if setting == "REDIS_URL":
        get_redis.cache_clear()
    if setting == "REDIS_KEY_PREFIX":
        _prefix.cache_clear()


setting_changed.connect(_forget_pool, dispatch_uid="billing_redis_pool")
