"""API key services: create, revoke, authenticate.

Authentication is on the hot path of every API request (the entitlement check
aims at about a millisecond), so a verified key is remembered in Redis and
PostgreSQL is asked only on a miss or when Redis is unreachable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .errors import BillingError
from .models import ApiKey
from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)

KEY_PREFIXES = {ApiKey.Kind.SERVICE: "bsk", ApiKey.Kind.AGENT: "bak"}
_REVOKED = "revoked"


class AuthenticationError(BillingError):
    status_code = 401


#: Redis reads a view queues into the authentication round trip (see api_key_authenticate).
Prefetch = Callable[["redis.client.Pipeline"], None]


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: the verified key, as views and permissions see it."""

    key_id: int
    prefix: str
    name: str
    kind: str
    scopes: frozenset[str]
    metrics: frozenset[str]
    tenant: str | None
    rate_per_minute: int

    #: requests in the current minute, counted in the same round trip as the key lookup
    requests_this_minute: int | None = dataclasses.field(default=None, compare=False)
    #: results of the view's prefetch (None if it queued nothing or Redis failed); each
    #: may be an exception, which its reader treats as a miss
    prefetched: tuple[Any, ...] | None = dataclasses.field(default=None, compare=False)

    is_authenticated = True  # DRF treats the principal as request.user

    @property
    def is_agent(self) -> bool:
        return self.kind == ApiKey.Kind.AGENT

    def label(self) -> str:
        return f"{self.kind}:{self.prefix}"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data.pop("requests_this_minute")
        data.pop("prefetched")
        data["scopes"] = sorted(self.scopes)
        data["metrics"] = sorted(self.metrics)
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApiPrincipal:
        data = json.loads(raw)
        data["scopes"] = frozenset(data["scopes"])
        data["metrics"] = frozenset(data["metrics"])
        return cls(**data)

    @classmethod
    def from_key(cls, key: ApiKey) -> ApiPrincipal:
        return cls(
            key_id=key.pk,
            prefix=key.prefix,
            name=key.name,
            kind=key.kind,
            scopes=frozenset(key.scopes),
            metrics=frozenset(key.metrics),
            tenant=key.tenant,
            rate_per_minute=key.rate_limit_per_minute or settings.API_DEFAULT_RATE_PER_MINUTE,
        )


def hash_secret(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def api_key_create(
    *,
    name: str,
    kind: str,
    scopes: Iterable[str],
    metrics: Iterable[str] = (),
    tenant: str | None = None,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    """Make a key and return its secret, which exists nowhere after this call returns."""
    kind = ApiKey.Kind(kind)
    public = secrets.token_hex(4)
    prefix = f"{KEY_PREFIXES[kind]}_{public}"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        name=name.strip(),
        kind=kind,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        scopes=sorted(set(scopes)),
        metrics=sorted({m.strip() for m in metrics if m.strip()}),
        tenant=(tenant or "").strip() or None,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    key.full_clean()
    with transaction.atomic():
        key.save()
    return CreatedKey(key=key, secret=secret)


def api_key_revoke(*, key: ApiKey, reason: str) -> ApiKey:
    """Revoke a key for good; requests with it get 401 `api_key_revoked` from now on."""
    if not reason.strip():
        raise ValidationError({"reason": "Say why the key is revoked."})
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.revoked_reason = reason.strip()
            locked.save(update_fields=["revoked_at", "revoked_reason"])
        transaction.on_commit(lambda: _tombstone(locked.secret_hash))
    return locked


def api_key_update_limits(*, key: ApiKey, name: str, rate_limit_per_minute: int | None) -> ApiKey:
    """The admin's edits of a live key: its label and its request rate."""
    with transaction.atomic():
        key.name = name.strip()
        key.rate_limit_per_minute = rate_limit_per_minute
        key.full_clean()
        key.save(update_fields=["name", "rate_limit_per_minute"])
        digest = key.secret_hash
        transaction.on_commit(lambda: _forget(digest))
    return key


def _tombstone(digest: str) -> None:
    # A plain SET overwrites any cached principal; request threads only ever
    # fill with SET NX, so one that read the key before the revocation
    # committed cannot put the live record back.
    try:
        get_redis().set(rkey("apikey", digest), _REVOKED, ex=max(settings.API_KEY_CACHE_SECONDS * 10, 3600))
    except redis.RedisError:
        # Revoked in PostgreSQL; a copy cached before may live API_KEY_CACHE_SECONDS more.
        logger.error("api_key.revoke.cache_unreachable", extra={"hash_prefix": digest[:8]})


def _forget(digest: str) -> None:
    try:
        get_redis().delete(rkey("apikey", digest))
    except redis.RedisError:
        logger.warning("api_key.update.cache_unreachable", extra={"hash_prefix": digest[:8]})


def api_key_authenticate(*, raw_key: str, prefetch: Prefetch | None = None, counted: int | None = None) -> ApiPrincipal:
    """The principal behind a presented key, or AuthenticationError (401).

    `prefetch` lets a hot view queue its own Redis reads into the same round trip (the
    entitlement check reads its whole answer this way); their results come back on the
    principal and are used only once the central rules have admitted the request.
    """
    digest = hash_secret(raw_key)
    client: redis.Redis | None = get_redis()
    count = None
    prefetched = None
    try:
        # one round trip: the cached key, this minute's request count (the rate limit)
        # and whatever the view prefetches
        # (`counted`: the fast lane counted this request already, then passed it on)
        rate_key = rate_key_for(digest)
        pipe = client.pipeline(transaction=False)  # type: ignore[union-attr]
        pipe.get(rkey("apikey", digest))
        if counted is None:
            pipe.incr(rate_key)
            pipe.expire(rate_key, 61)
        if prefetch is not None:
            prefetch(pipe)
        replies = pipe.execute(raise_on_error=False)
        cached, count, rest = (
            (replies[0], replies[1], replies[3:]) if counted is None else (replies[0], counted, replies[1:])
        )
        if isinstance(cached, Exception) or isinstance(count, Exception):
            raise redis.RedisError("key lookup failed")
        prefetched = tuple(rest) if rest else None
    except redis.RedisError:
        cached, client, count, prefetched = None, None, None, None
    if cached is not None:
        if cached == _REVOKED.encode():
            raise AuthenticationError("This API key has been revoked.", code="api_key_revoked")
        principal = principal_from_cache(cached)
    else:
        key = ApiKey.objects.filter(secret_hash=digest).first()
        if key is None:
            raise AuthenticationError("The API key is not valid.", code="invalid_api_key")
        if not key.is_active:
            raise AuthenticationError("This API key has been revoked.", code="api_key_revoked")
        principal = ApiPrincipal.from_key(key)
        if client is not None:
            try:
                client.set(rkey("apikey", digest), principal.to_json(), ex=settings.API_KEY_CACHE_SECONDS, nx=True)
            except redis.RedisError:
                client = None
    _touch(principal.key_id, client)
    return dataclasses.replace(principal, requests_this_minute=count, prefetched=prefetched)


_principals: dict[bytes, ApiPrincipal] = {}  # per process: cached record → parsed principal


def principal_from_cache(raw: bytes) -> ApiPrincipal:
    """The principal a cached key record describes (not a tombstone: see api_key_authenticate)."""
    principal = _principals.get(raw)
    if principal is None:
        if len(_principals) > 1024:
            _principals.clear()
        principal = _principals[raw] = ApiPrincipal.from_json(raw)
    return principal


def record_key_use(principal: ApiPrincipal) -> None:
    """Note a use of the key (at most once a minute): for callers that authenticate from
    the cache themselves (entitlements.fastpath)."""
    _touch(principal.key_id, get_redis())


def key_cache_keys(raw_key: str) -> tuple[str, str]:
    """The Redis keys of a presented key's cached record and of its rate count this minute,
    for a caller that reads them in its own round trip (entitlements.fastpath)."""
    digest = hash_secret(raw_key)
    return rkey("apikey", digest), rate_key_for(digest)


def is_tombstone(raw: bytes) -> bool:
    return raw == _REVOKED.encode()


def rate_key_for(digest: str) -> str:
    return rkey("rate", digest[:20], int(time.time() // 60))


_touched: dict[int, float] = {}  # per process: key id → when this process last recorded a use


def _touch(key_id: int, client: redis.Redis | None) -> None:
    """Record last use at most once a minute per key, so the hot path stays read-only
    (and asks Redis at most once a minute per process)."""
    now = time.monotonic()
    if client is None or now - _touched.get(key_id, -120.0) < 60:
        return
    _touched[key_id] = now
    try:
        first_this_minute = client.set(rkey("apikey-used", key_id), 1, ex=60, nx=True)
    except redis.RedisError:
        return
    if first_this_minute:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())
