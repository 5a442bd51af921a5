"""Staff login guessing, slowed per username across every address.

django-axes locks a (username, client address) pair after ADMIN_LOGIN_FAILURE_LIMIT
failures. That stops one guesser, but not one who rotates addresses, and a lockout by
username alone would let anyone lock a named staff member out. So across addresses a
username is slowed instead: once it has failed LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN
times in LOGIN_USERNAME_WINDOW_SECONDS, each further attempt for it must wait a delay
after the last one (1 s, doubling with every failure, at most
LOGIN_USERNAME_MAX_DELAY_SECONDS). The real person waits at most that long; a guesser
gets a few dozen tries an hour instead of thousands. A success clears it.

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
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver

from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)


def _keys(username: str) -> tuple[str, str]:
    # hashed: a username is personal data, and its length is the guesser's to choose
    digest = hashlib.sha256(username.strip().lower().encode("utf-8", "backslashreplace")).hexdigest()[:32]
    return rkey("login-failures", digest), rkey("login-next", digest)


def username_wait_seconds(username: str) -> float:
    """How long an attempt for `username` must still wait (0: it may try now)."""
    failures_key, next_key = _keys(username)
    try:
        pttl = get_redis().pttl(next_key)
    except redis.RedisError:
        return 0.0
    return max(0.0, pttl / 1000) if pttl and pttl > 0 else 0.0


class UsernameThrottleBackend:
    """An authentication backend that authenticates nobody: it refuses (PermissionDenied
    stops Django's authenticate) an attempt for a username that must still wait. It has no
    get_user on purpose: no session is ever its to load."""

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if username and username_wait_seconds(username) > 0:
            logger.warning("staff.login_slowed", extra={"wait_s": round(username_wait_seconds(username), 1)})
            raise PermissionDenied("Too many failed logins for this username: wait and try again.")


@receiver(user_login_failed, dispatch_uid="billing_login_throttle_failed")
def _failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = str(credentials.get("username") or "")
    if not username:
        return
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
    try:
        get_redis().delete(*_keys(user.get_username()))
    except redis.RedisError:
        logger.warning("staff.login_throttle_unreachable")
