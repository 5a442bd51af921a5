"""Request context for logs and audit (request id, principal) and Prometheus metrics."""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
)

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
