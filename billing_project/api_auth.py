"""How every API request is authenticated, authorised and rate-limited.

The rules live here, once, for every endpoint (API.md, Conventions):

* no key or an unknown key → 401; a revoked key → 401 `api_key_revoked`;
* an agent key on any state-changing request → 403 `agent_write_forbidden`,
  unless the view declares that method a query (`query_methods`, e.g. the
  entitlement check) or an agent's proposal (`agent_methods`);
* a missing scope → 403 `missing_scope`;
* a key bound to a tenant that names any other tenant (in the path or the
  body) → 404, exactly as if that tenant did not exist;
* past the key's request rate → 429 with Retry-After.

Views declare what they need as class attributes of
billing_project.api.BillingAPIView and never check principals themselves.
tests/security walks every URL pattern to prove that no endpoint escapes these rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from .api_keys import ApiPrincipal, AuthenticationError, api_key_authenticate
from .net import client_address
from .observability import principal_var
from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)
#: WSGI environ key: this request's rate count, already taken (entitlements.fastpath)
RATE_COUNTED = "billing.rate_counted"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiPrincipal, ApiPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # the permission answers 401 `not_authenticated`
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise exceptions.AuthenticationFailed("Use `Authorization: Bearer <api key>`.", code="invalid_api_key")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        hook = getattr(view, "redis_prefetch", None)
        prefetch = hook(request._request) if hook is not None else None
        counted = request._request.META.get(RATE_COUNTED)  # set by the fast lane when it passes a request on
        try:
            principal = api_key_authenticate(raw_key=token, prefetch=prefetch, counted=counted)
        except AuthenticationError as exc:
            _count_failure(request)
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from exc
        principal_var.set(principal.label())
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="billing"'


class AuthFailuresLimited(exceptions.Throttled):
    """429: too many failed authentications from this client address."""

    default_detail = "Too many failed authentications from this address; retry later."


def _count_failure(request: Request) -> None:
    """Failed authentications are limited per client address (as the trusted proxy reports
    it): past API_AUTH_FAILURES_PER_MINUTE, a further failure is 429 with Retry-After, not
    another 401 to learn from. Keys that work are never held back by someone else's guesses."""
    address = client_address(request._request)
    key = rkey("auth-failures", address)
    try:
        pipe = get_redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, 60, nx=True)
        pipe.ttl(key)
        failures, _, ttl = pipe.execute()
    except redis.RedisError:
        return  # fails open, as the rate limit does
    if int(failures) > settings.API_AUTH_FAILURES_PER_MINUTE:
        logger.warning("api.auth_failures_limited", extra={"failures": int(failures)})
        raise AuthFailuresLimited(wait=max(1, int(ttl)))


def method_is_write(view: Any, method: str) -> bool:
    return method not in SAFE_METHODS and method not in getattr(view, "query_methods", frozenset())


def scopes_for(view: Any, method: str) -> tuple[str, ...]:
    declared: Mapping[str, tuple[str, ...]] = getattr(view, "required_scopes", {})
    return tuple(declared.get("*", ())) + tuple(declared.get(method, ()))


def tenants_named(request: Request, view: Any) -> set[str]:
    """Every tenant a request names: the `tenant` path parameter and body fields."""
    named: set[str] = set()
    kwargs = getattr(view, "kwargs", {}) or {}
    if "tenant" in kwargs:
        named.add(str(kwargs["tenant"]))
    resolve = getattr(view, "tenant_of_path", None)
    owner = resolve(kwargs) if resolve is not None and kwargs else None
    if owner is not None:
        named.add(owner)
    if "tenant" in request.query_params:
        named.update(request.query_params.getlist("tenant"))
    if request.method in SAFE_METHODS:
        return named
    data = request.data
    items: Iterable[Any] = [data]
    if isinstance(data, Mapping) and isinstance(data.get("events"), list):
        items = [data, *data["events"]]
    for item in items:
        if isinstance(item, Mapping) and item.get("tenant") is not None:
            named.add(str(item["tenant"]))
    return named


class ApiKeyPermission(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ApiPrincipal):
            raise exceptions.NotAuthenticated(
                "Send an API key: `Authorization: Bearer <api key>`.", code="not_authenticated"
            )
        authorize(principal, view, request.method or "GET", lambda: tenants_named(request, view))
        return True


def authorize(principal: ApiPrincipal, view: Any, method: str, named: Callable[[], set[str]]) -> None:
    """The central rules for an authenticated principal calling `method` on `view` (an
    instance or its class), naming the tenants `named()` returns; raises DRF's exceptions.
    The permission above applies them to every API view; the entitlement check's fast
    lane (entitlements.fastpath) applies the very same function."""
    if (
        principal.is_agent
        and method_is_write(view, method)
        and method not in getattr(view, "agent_methods", frozenset())
    ):
        raise exceptions.PermissionDenied(
            "Agent keys may read and propose; they can never change billing state.",
            code="agent_write_forbidden",
        )
    missing = sorted(set(scopes_for(view, method)) - principal.scopes)
    standing_in = set(getattr(view, "alternative_scopes", {}).get(method, ())) & principal.scopes
    if missing and not standing_in:
        raise MissingScope(missing)
    if principal.tenant is not None:
        others = named() - {principal.tenant}
        if others:
            # Indistinguishable from an unknown tenant: a bound key learns nothing.
            raise exceptions.NotFound("Not found.", code="not_found")


def over_rate(principal: ApiPrincipal, count: int | None = None) -> bool:
    """Past the key's requests per minute: `count`, else the one counted with the key
    lookup. Redis down (no count): no."""
    count = principal.requests_this_minute if count is None else count
    return count is not None and int(count) > principal.rate_per_minute


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"

    def __init__(self, missing: list[str]):
        super().__init__(f"This key lacks the scope(s): {', '.join(missing)}.", code="missing_scope")
        self.missing = missing


class ApiKeyRateThrottle(BaseThrottle):
    """Fixed one-minute window per key, counted in Redis with one round trip.

    Fails open: an unreachable Redis must not take the API down with it.
    """

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ApiPrincipal):
            return True
        if principal.requests_this_minute is None:  # counted with the key lookup (api_key_authenticate)
            logger.warning("rate_limit.redis_unreachable")
        if not over_rate(principal):
            return True
        self._wait = 60 - (time.time() % 60)
        return False

    def wait(self) -> float | None:
        return self._wait
