"""Request context for logs and audit (request id, principal) and Prometheus metrics."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from contextvars import ContextVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
principal_var: ContextVar[str | None] = ContextVar("principal", default=None)


def current_request_id() -> str | None:
    """The correlation id of the current request or task (django-auditlog's `cid`)."""
    return request_id_var.get()


class ContextFilter(logging.Filter):
    """Stamps every log record with the request id and the principal behind it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a request's 4xx/5xx (`django.request`) after the middleware that set
        # the context has returned; such records carry the request, which carries its id.
        request = getattr(record, "request", None)
        record.request_id = request_id_var.get() or getattr(request, "request_id", None)
        record.principal = principal_var.get()
        return True


# In multi-process servers (gunicorn workers, Celery) metrics are written to
# PROMETHEUS_MULTIPROC_DIR and merged at scrape time.
REQUESTS = Counter("billing_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "billing_http_request_seconds",
    "HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_ERRORS = Counter("billing_api_errors_total", "API error responses by code", ["code"])
TASK_FAILURES = Counter("billing_task_failures_total", "Background tasks that failed after their retries", ["task"])


def scrape_registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY

    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


# ------------------------------------------------------------------ state read at scrape time
# What the alert rules watch (ops/prometheus/billing.rules.yml) that no counter in a process
# can know: backlogs, lags and blocked work, read from PostgreSQL when /metrics is scraped,
# so every web process tells the same truth. Each app registers what it owns (in its
# AppConfig.ready), so the foundation names no app above it.
StateReader = Callable[[], Iterable[Metric]]
STATE_READERS: dict[str, StateReader] = {}


def state_reader(name: str) -> Callable[[StateReader], StateReader]:
    def register(reader: StateReader) -> StateReader:
        STATE_READERS[name] = reader
        return reader

    return register


def gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class StateCollector(Collector):
    """Every registered reader, each on its own: one that fails (the database down) is
    left out of this scrape and counted in billing_state_read_failures, never failing it."""

    def collect(self) -> Iterable[Metric]:
        failures = GaugeMetricFamily(
            "billing_state_read_failures", "State readers that failed in this scrape", labels=["reader"]
        )
        for name, reader in sorted(STATE_READERS.items()):
            try:
                metrics = list(reader())
            except Exception:  # noqa: BLE001  (a scrape must answer; the failure is a metric)
                logger.warning("metrics.state_read_failed", extra={"reader": name}, exc_info=True)
                failures.add_metric([name], 1)
                continue
            yield from metrics
        yield failures
