"""One Redis connection pool per process, for counters, rate limits and caches.

Timeouts are short on purpose: Redis is an accelerator here, and every caller
has a PostgreSQL fallback or fails open (rate limits) when it is unreachable.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.signals import setting_changed


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


def _forget_pool(*, setting: str, **_: object) -> None:
    if setting == "REDIS_URL":
        get_redis.cache_clear()
    if setting == "REDIS_KEY_PREFIX":
        _prefix.cache_clear()


setting_changed.connect(_forget_pool, dispatch_uid="billing_redis_pool")
