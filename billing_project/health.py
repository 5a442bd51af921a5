"""Liveness, readiness and Prometheus metrics: plain Django views, no API key."""

from __future__ import annotations

import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .observability import StateCollector, scrape_registry
from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; nothing else is asked."""
    return JsonResponse({"status": "ok"})


def _check(name: str, probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = probe()
    except StaleHeartbeat as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a readiness probe reports every failure, whatever it is
        # which dependency, and how: the exception's text (hosts, ports, users) goes to the log only
        logger.warning("readyz.unavailable", exc_info=exc, extra={"dependency": name})
        return {
            "ok": False,
            "error": "timeout" if isinstance(exc, TimeoutError | redis.TimeoutError) else "unavailable",
        }
    result: dict[str, Any] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
    if isinstance(detail, dict):
        result.update(detail)
    return result


def _database() -> None:
    # In a probe thread: its own connection, closed after, so a broken one is never reused.
    # SET LOCAL, in a transaction of its own: behind PgBouncer in transaction mode a
    # session's SET would stay on a server connection that other clients' queries get next
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 900")
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _redis() -> None:
    get_redis().ping()


def _worker() -> dict[str, Any]:
    """Beat's heartbeat task, run by a worker, keeps a key alive; its age is what it has
    lost of its life, on Redis's clock. Gone: no worker has run it for too long."""
    max_age = settings.READYZ_HEARTBEAT_MAX_AGE_SECONDS
    ttl = get_redis().ttl(rkey("worker-heartbeat"))
    if ttl is None or ttl < 0:
        raise StaleHeartbeat(f"no worker has run beat's heartbeat in the last {max_age} s")
    return {"heartbeat_age_s": max(0, max_age - ttl), "max_age_s": max_age}


class StaleHeartbeat(Exception):
    """Beat sends nothing or no worker consumes: the background is stopped."""


def _broker() -> None:
    from billing_project.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


PROBES = {"database": _database, "redis": _redis, "broker": _broker, "worker": _worker}
# Probes run in threads with one deadline: a dependency that accepts connections and never
# answers makes /readyz say so within a second, instead of holding a web worker for 30 s.
_probe_pool = ThreadPoolExecutor(max_workers=2 * len(PROBES), thread_name_prefix="readyz")


def readiness_checks() -> dict[str, dict[str, Any]]:
    """Each probe's answer, all within READYZ_DEADLINE_SECONDS whatever hangs."""
    deadline = time.monotonic() + settings.READYZ_DEADLINE_SECONDS
    pending = {name: _probe_pool.submit(_check, name, probe) for name, probe in PROBES.items()}
    checks: dict[str, dict[str, Any]] = {}
    for name, future in pending.items():
        try:
            checks[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            checks[name] = {"ok": False, "error": "timeout"}
    return checks


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: PostgreSQL, Redis and the Celery broker each reachable, and the worker
    heartbeat fresh, each answered within READYZ_DEADLINE_SECONDS; else 503, naming which."""
    checks = readiness_checks()
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus, for the bearer of METRICS_TOKEN only (what runs, how much, what fails is
    nobody else's to read). Without a token configured, only with DEBUG on."""
    token = settings.METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    bearer = (
        scheme.lower() == "bearer" and bool(token) and hmac.compare_digest(presented.strip().encode(), token.encode())
    )
    if not bearer and not (settings.DEBUG and not token):
        response = JsonResponse({"error": "a bearer token (METRICS_TOKEN) is required"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = scrape_registry()
    output = generate_latest(registry)
    from prometheus_client import CollectorRegistry

    extra = CollectorRegistry()
    extra.register(StateCollector())
    output += generate_latest(extra)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
