"""Staff login guessing, slowed per username across every address.

django-axes locks a (username, client address) pair after ADMIN_LOGIN_FAILURE_LIMIT
failures. That stops one guesser, but not one who rotates addresses, and a lockout by
username alone would let anyone lock a named staff member out. So across addresses a
username is slowed instead: once it has failed LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN
times in LOGIN_USERNAME_WINDOW_SECONDS, an attempt for it from an address it has never
logged in from must wait a delay after the last failure (1 s, doubling with every
failure, at most LOGIN_USERNAME_MAX_DELAY_SECONDS). From an address it has logged in
from before, the staff member is never slowed (axes still locks a guesser there).

Only attempts that checked a password count: one refused here (in the login form,
before authentication) or by axes's lockout neither re-arms the delay nor counts towards
axes. A success clears the count and remembers the address.

Counts live in Redis; with Redis unreachable, logins are not slowed (axes still locks
per address, in PostgreSQL).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from .net import client_address
from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)


def _keys(username: str) -> tuple[str, str]:
    # hashed: a username is personal data, and its length is the guesser's to choose
    digest = hashlib.sha256(username.strip().lower().encode("utf-8", "backslashreplace")).hexdigest()[:32]
    return rkey("login-failures", digest), rkey("login-next", digest)


KNOWN_ADDRESS_SECONDS = 90 * 86_400  # an address a staff member logged in from is known this long


def _known_key(username: str) -> str:
    return _keys(username)[0].replace("login-failures", "login-known")


def username_wait_seconds(username: str, address: str | None = None) -> float:
    """How long an attempt for `username` from `address` must still wait (0: it may try
    now). An address the username has logged in from before never waits."""
    _, next_key = _keys(username)
    try:
        client = get_redis()
        if address and client.sismember(_known_key(username), address):
            return 0.0
        pttl = client.pttl(next_key)
    except redis.RedisError:
        return 0.0
    return max(0.0, pttl / 1000) if pttl and pttl > 0 else 0.0


@receiver(user_login_failed, dispatch_uid="billing_login_throttle_failed")
def _failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = str(credentials.get("username") or "")
    if not username or getattr(request, "axes_locked_out", False):
        return  # axes refused it without checking the password: not a guess that counts
    failures_key, next_key = _keys(username)
    try:
        client = get_redis()
        pipe = client.pipeline()
        pipe.incr(failures_key)
        pipe.expire(failures_key, settings.LOGIN_USERNAME_WINDOW_SECONDS)
        failures = int(pipe.execute()[0])
        over = failures - settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN
        if over >= 0:
            delay_ms = min(1000 * 2**over, 1000 * settings.LOGIN_USERNAME_MAX_DELAY_SECONDS)
            client.set(next_key, "1", px=delay_ms)
    except redis.RedisError:
        logger.warning("staff.login_throttle_unreachable")


@receiver(user_logged_in, dispatch_uid="billing_login_throttle_success")
def _succeeded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    username = user.get_username()
    try:
        client = get_redis()
        pipe = client.pipeline()
        pipe.delete(*_keys(username))
        if request is not None:
            pipe.sadd(_known_key(username), client_address(request))
            pipe.expire(_known_key(username), KNOWN_ADDRESS_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("staff.login_throttle_unreachable")
