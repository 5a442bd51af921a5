"""Invalidation signals for state cached in Redis, named here so that lower layers can
announce a change without importing the higher layers that cache it.

Readers build cache keys from these versions; a writer bumps a version after its
transaction commits, so a reader that rebuilt from the old state writes under the old
version, which nobody reads again (no invalidation race).
"""

from __future__ import annotations

import logging
import secrets

import redis
from django.db import transaction

from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)


def tenant_version_key(tenant_id: int) -> str:
    return rkey("tenant-version", tenant_id)


def tenant_version_prefix() -> str:
    return rkey("tenant-version", "")


def catalog_version_key() -> str:
    return rkey("catalog-version")


def _bump(key: str) -> None:
    """A new version. A key missing (never set, or lost with Redis) starts at a random
    number, so a version never comes back to a value a process may have kept from before."""
    try:
        with get_redis().pipeline(transaction=True) as pipe:
            pipe.set(key, secrets.randbelow(2**52), nx=True)
            pipe.incr(key)
            pipe.execute()
    except redis.RedisError:
        # Cached contexts live at most ENTITLEMENT_CONTEXT_SECONDS; say so loudly.
        logger.error("cache.invalidation_failed", extra={"key": key})


def tenant_changed(tenant_id: int) -> None:
    """A tenant's subscription or grants changed: its cached entitlement context is stale."""
    transaction.on_commit(lambda: _bump(tenant_version_key(tenant_id)))


def catalog_changed() -> None:
    """Features or plans changed: every cached entitlement context is stale."""
    transaction.on_commit(lambda: _bump(catalog_version_key()))
