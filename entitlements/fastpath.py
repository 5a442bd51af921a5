"""The entitlement check's fast lane: a WSGI wrapper that answers a warm check below
Django's request machinery, in one Redis round trip (bench/README.md has the numbers).

It only accelerates. It answers when everything is already in Redis and settles the
question: the presented key's cached record, the tenant's current context and the
feature's usage counter. Anything else passes the request on, untouched, to the Django
view at the same URL (`EntitlementCheckApi`), which holds every error and rule:
- a cold cache, or a key that is unknown or revoked;
- a body that is not plain JSON with `tenant` and `feature`, or a bad quantity;
- a missing scope, or another tenant for a bound key;
- the rate limit, or an unknown feature;
- Redis unreachable, or anything unexpected.

The authorization is the API's own (`billing_project.api_auth.authorize`, with the
view's declarations), and the answer is the service's (`entitlement_answer_cached`).
tests/entitlements/test_fastpath.py proves, case by case, that both lanes answer alike.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import hiredis
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from prometheus_client import Counter
from rest_framework.exceptions import APIException

from billing_project.api_auth import RATE_COUNTED, authorize, over_rate
from billing_project.api_keys import is_tombstone, key_cache_keys, principal_from_cache, record_key_use
from billing_project.cache import catalog_version_key
from billing_project.errors import BillingError
from billing_project.observability import REQUEST_SECONDS, REQUESTS, principal_var, request_id_var
from billing_project.parsers import loads
from billing_project.redis_client import get_redis, get_wire
from usage.counters import counters_suspect

from .api import EntitlementCheckApi, quantity_of
from .context import (
    CHECK,
    CHECK_SHA,
    _cache_key,
    _micros,
    cached_until,
    context_from_cache,
    counter_value,
    read_args,
)
from .services import entitlement_answer_cached

CHECK_PATH = "/api/v1/entitlements/check"
ROUTE = "api/v1/entitlements/check"  # the metrics label the Django view reports under
CHECK_FIELDS = frozenset({"tenant", "feature", "quantity"})
MAX_BODY = 4096  # a check is a few dozen bytes; anything bigger takes the full path
HEADERS = [  # what Django's middleware adds to the view's answer
    ("Content-Type", "application/json"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")  # as RequestContextMiddleware
LANE = Counter("billing_entitlement_fastpath_total", "Entitlement checks by lane", ["lane"])
# labelled once: a label lookup per request costs more than the rest of the bookkeeping
_FAST, _DJANGO = LANE.labels(lane="fast"), LANE.labels(lane="django")
_ANSWERED, _SECONDS = REQUESTS.labels(method="POST", route=ROUTE, status=200), REQUEST_SECONDS.labels(route=ROUTE)
access_log = logging.getLogger("billing.access")
logger = logging.getLogger(__name__)

# A warm answer is a pure function of the cached context, the feature, the quantity asked
# and the usage counter, for as long as the context holds (checked on every use).
_answers: dict[tuple[bytes, str, str, bytes | None], bytes] = {}


def _answer(environ: dict[str, Any]) -> bytes | None:
    """The JSON answer to a warm check, or None to let the Django view answer."""
    if environ.get("QUERY_STRING") or not _host_allowed(environ):
        return None  # the view names query-string tenants and answers DisallowedHost
    if (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower() != "application/json":
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # the Django view reads it again if we pass
    scheme, _, token = (environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
    data = loads(body)
    if scheme.lower() != "bearer" or not token.strip() or not isinstance(data, dict) or set(data) - CHECK_FIELDS:
        return None  # any other field (an `events` list names tenants too): the view decides
    tenant, feature, quantity = data.get("tenant"), data.get("feature"), data.get("quantity", "1")
    if not isinstance(tenant, str) or not isinstance(feature, str) or not tenant or not feature:
        return None
    asked = quantity_of(quantity)
    if counters_suspect():  # this process missed a counter update: the view repairs before it trusts one
        return None
    key_record, rate_count = key_cache_keys(token.strip())
    keys = (key_record, rate_count, _cache_key(tenant), catalog_version_key())
    wire = get_wire()
    try:
        found = wire.call("EVALSHA", CHECK_SHA, 4, *keys, *read_args(feature))
    except hiredis.ReplyError as exc:
        if str(exc).startswith("NOSCRIPT"):  # Redis restarted: load (not run) the script for the next check
            get_redis().script_load(CHECK)
        return None
    if not isinstance(found, list) or len(found) != 5 or found[0] != key_record.encode():
        wire.close()  # not the reply to this request: never act on it
        raise RuntimeError(f"unexpected reply from Redis: {found!r:.80}")
    _, record, count, cached, counter = found
    environ[RATE_COUNTED] = count  # counted: if the view answers after all, it does not count again
    if not record or is_tombstone(record) or not cached:
        return None
    principal = principal_from_cache(record)
    principal_var.set(principal.label())
    authorize(principal, EntitlementCheckApi, "POST", lambda: {tenant})
    if over_rate(principal, count):
        return None
    record_key_use(principal)
    now = datetime.now(UTC)  # timezone.now() with USE_TZ, without a settings lookup per check
    memo = (cached, feature, str(quantity), counter)
    answer = _answers.get(memo)
    if answer is not None and _micros(now) < cached_until(cached):
        return answer
    context = context_from_cache(cached, now=now)
    if context is None or context.external_id != tenant:
        return None
    result = entitlement_answer_cached(
        ctx=context, feature=feature, quantity=asked, counter=counter_value(counter), now=now
    )
    if result is None:
        return None
    answer = json.dumps(result, separators=(",", ":")).encode()
    if len(_answers) > 4096:
        _answers.clear()
    _answers[memo] = answer
    return answer


def _host_allowed(environ: dict[str, Any]) -> bool:
    domain, _ = split_domain_port(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "")
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


_last_failure_logged = 0.0


def _log_failure(exc: Exception) -> None:
    """Log what made the fast lane give up, at most once a minute per process (a Redis
    outage would otherwise log every check)."""
    global _last_failure_logged
    if time.monotonic() - _last_failure_logged >= 60:
        _last_failure_logged = time.monotonic()
        logger.error("entitlements.fastpath_failed", exc_info=exc)


class EntitlementCheckFastPath:
    """Wraps the project's WSGI application (billing_project/wsgi.py)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != CHECK_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID") or ""
        request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()  # uuid4().hex's shape
        rid_token, principal_token = request_id_var.set(request_id), principal_var.set(None)
        try:
            try:
                answer = _answer(environ)
            except (APIException, BillingError, ValueError):  # a refusal or bad input: the view says which
                answer = None
            except Exception as exc:  # every doubt is the Django view's to answer, but never silently
                _log_failure(exc)
                answer = None
            if answer is None:
                _DJANGO.inc()
                return self.app(environ, start_response)
            _FAST.inc()
            start_response("200 OK", [*HEADERS, ("Content-Length", str(len(answer))), ("X-Request-ID", request_id)])
            elapsed = time.perf_counter() - started
            _ANSWERED.inc()
            _SECONDS.observe(elapsed)
            access_log.info(
                "request",
                extra={"method": "POST", "path": CHECK_PATH, "status": 200, "duration_ms": round(elapsed * 1000, 2)},
            )
            return [answer]
        finally:
            principal_var.reset(principal_token)
            request_id_var.reset(rid_token)
