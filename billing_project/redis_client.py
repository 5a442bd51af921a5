"""One Redis connection pool per process, for counters, rate limits and caches.

Timeouts are short on purpose: Redis is an accelerator here, and every caller
has a PostgreSQL fallback or fails open (rate limits) when it is unreachable.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=0.25,
        socket_connect_timeout=0.25,
        health_check_interval=30,
    )
