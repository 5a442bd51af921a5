"""Liveness, readiness and Prometheus metrics: plain Django views, no API key."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .observability import scrape_registry
from .redis_client import get_redis, rkey


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; nothing else is asked."""
    return JsonResponse({"status": "ok"})


def _check(probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # a readiness probe reports every failure, whatever it is
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result: dict[str, Any] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
    if isinstance(detail, dict):
        result.update(detail)
    return result


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> dict[str, Any]:
    client = get_redis()
    client.ping()
    beat = client.get(rkey("worker-heartbeat"))
    # Informational: how long since a worker last ran the beat-scheduled heartbeat.
    return {"worker_heartbeat_age_s": round(time.time() - float(beat), 1) if beat else None}


def _broker() -> None:
    from billing_project.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: PostgreSQL, Redis and the Celery broker each reachable."""
    checks = {"database": _check(_database), "redis": _check(_redis), "broker": _check(_broker)}
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


class _TaskFailureCollector(Collector):
    """Open task failures, read from PostgreSQL at scrape time (true across all processes)."""

    def collect(self) -> Any:
        from .models import TaskFailure

        gauge = GaugeMetricFamily("billing_task_failures_open", "Failed background tasks nobody has resolved yet")
        try:
            gauge.add_metric([], TaskFailure.objects.filter(resolved_at__isnull=True).count())
        except Exception:  # noqa: BLE001  a scrape must not fail because the DB is down
            return
        yield gauge


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    registry = scrape_registry()
    output = generate_latest(registry)
    from prometheus_client import CollectorRegistry

    extra = CollectorRegistry()
    extra.register(_TaskFailureCollector())
    output += generate_latest(extra)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
