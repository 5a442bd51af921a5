"""A single usage event's fast lane: a WSGI wrapper that records one event below Django's
request machinery (issue 17, part 6; bench/README.md has the numbers).

It only accelerates, like the entitlement check's (entitlements/fastpath.py). It takes a
POST of one event (not a batch) with a JSON body, authenticates the key the API's way
(`api_key_authenticate`: the cached record and this minute's count in one round trip),
applies the API's rules (`authorize` with the view's declarations, the rate limit), and
records the event with the service the view calls (`usage_record`), which commits it in
one statement before the answer leaves. It answers only what the view would answer with
success (201 accepted, 200 duplicate); everything else passes, untouched, to the Django
view at the same URL (`UsageEventsApi`), which holds every error:
- a query string, a Host outside ALLOWED_HOSTS, another content type, a body over the limit;
- a batch, a body that is not a JSON object, a missing or unknown key, a refused scope,
  tenant or metric, the rate limit;
- any event the service rejects (nothing is written for it, so the view's second look
  answers the same error), a database or Redis error, anything unexpected (logged).
tests/usage/test_fastpath.py proves, case by case, that both lanes answer alike.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.http.request import split_domain_port, validate_host
from prometheus_client import Counter
from rest_framework.exceptions import APIException

from billing_project.api_auth import RATE_COUNTED, authorize, over_rate
from billing_project.api_keys import api_key_authenticate
from billing_project.errors import BillingError
from billing_project.observability import REQUEST_SECONDS, REQUESTS, principal_var, request_id_var
from billing_project.parsers import loads

from .api import UsageEventsApi
from .ingestion import Outcome, usage_record

EVENTS_PATH = "/api/v1/usage/events"
ROUTE = "api/v1/usage/events"  # the metrics label the Django view reports under
MAX_BODY = 16_384  # one event is a few hundred bytes; bigger (batches) takes the full path
HEADERS = [  # what Django's middleware adds to the view's answer
    ("Content-Type", "application/json"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")  # as RequestContextMiddleware
LANE = Counter("billing_usage_fastpath_total", "Single usage events by lane", ["lane"])
_FAST, _DJANGO = LANE.labels(lane="fast"), LANE.labels(lane="django")
_SECONDS = REQUEST_SECONDS.labels(route=ROUTE)
_ANSWERED = {
    201: REQUESTS.labels(method="POST", route=ROUTE, status=201),
    200: REQUESTS.labels(method="POST", route=ROUTE, status=200),
}
_STATUS_LINE = {201: "201 Created", 200: "200 OK"}
access_log = logging.getLogger("billing.access")
logger = logging.getLogger(__name__)


def _answer(environ: dict[str, Any]) -> tuple[int, bytes] | None:
    """(status, JSON body) for a recorded event, or None to let the Django view answer."""
    if environ.get("QUERY_STRING") or not _host_allowed(environ):
        return None
    if (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower() != "application/json":
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= min(MAX_BODY, settings.API_MAX_BODY_BYTES):
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # the Django view reads it again if we pass
    scheme, _, token = (environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    data = loads(body)
    if not isinstance(data, dict) or "events" in data or not isinstance(data.get("tenant"), str):
        return None
    principal = api_key_authenticate(raw_key=token.strip())
    if principal.requests_this_minute is not None:
        environ[RATE_COUNTED] = principal.requests_this_minute  # the view must not count it again
    principal_var.set(principal.label())
    authorize(principal, UsageEventsApi, "POST", lambda: {data["tenant"]})
    if over_rate(principal):
        return None
    (result,) = usage_record(principal=principal, events=[data])
    if result.error is not None or result.outcome is Outcome.REJECTED:
        return None  # nothing was written: the view answers the error, in its shape
    answer: dict[str, Any] = {"id": result.id, "status": result.outcome.value}
    if result.late:
        answer["late"] = True
    status = 201 if result.outcome is Outcome.ACCEPTED else 200
    return status, json.dumps(answer, separators=(",", ":")).encode()


def _host_allowed(environ: dict[str, Any]) -> bool:
    domain, _ = split_domain_port(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "")
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _release_connection() -> None:
    """What Django does after each request, without its health check before the next: a
    connection that saw an error, or is past DB_CONN_MAX_AGE, is closed (the next request,
    in either lane, opens a good one); a healthy one is kept, and the next event's INSERT
    is its first round trip."""
    conn = connections["default"]
    if conn.in_atomic_block:
        return  # a transaction around the request (a test's): not the request's to end
    if conn.connection is not None and (
        conn.errors_occurred or (conn.close_at is not None and time.monotonic() >= conn.close_at)
    ):
        close_old_connections()


_last_failure_logged = 0.0


def _log_failure(exc: Exception) -> None:
    """What made the fast lane give up, at most once a minute per process."""
    global _last_failure_logged
    if time.monotonic() - _last_failure_logged >= 60:
        _last_failure_logged = time.monotonic()
        logger.error("usage.fastpath_failed", exc_info=exc)


class UsageEventFastPath:
    """Wraps the project's WSGI application (billing_project/wsgi.py)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != EVENTS_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID") or ""
        request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        rid_token, principal_token = request_id_var.set(request_id), principal_var.set(None)
        try:
            try:
                answered = _answer(environ)
            except (APIException, BillingError, ValueError):  # a refusal or bad input: the view says which
                answered = None
            except Exception as exc:  # every doubt is the Django view's to answer, but never silently
                _log_failure(exc)
                answered = None
            if answered is None:
                _DJANGO.inc()
                return self.app(environ, start_response)
            status, answer = answered
            _FAST.inc()
            start_response(
                _STATUS_LINE[status],
                [*HEADERS, ("Content-Length", str(len(answer))), ("X-Request-ID", request_id)],
            )
            elapsed = time.perf_counter() - started
            _ANSWERED[status].inc()
            _SECONDS.observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": "POST",
                    "path": EVENTS_PATH,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            return [answer]
        finally:
            _release_connection()
            principal_var.reset(principal_token)
            request_id_var.reset(rid_token)
