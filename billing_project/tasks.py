"""The base every Celery task uses, the failure record, and the worker heartbeat.

Every task: acknowledged late (a killed worker's task is redelivered), retried
with exponential backoff, run with `task:<name>[<id>]` as the audit actor and the
task id as the correlation id, and, once its retries are spent, recorded as a
TaskFailure that finance and operations see in the admin and in /metrics.
"""

from __future__ import annotations

import logging
import traceback as tb
from typing import Any

from celery import Task, shared_task
from celery.signals import task_failure
from django.conf import settings
from django.db import transaction

from .audit import acting_as
from .observability import TASK_FAILURES, request_id_var
from .redis_client import get_redis, rkey

logger = logging.getLogger(__name__)


class BillingTask(Task):  # type: ignore[type-arg]
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (Exception,)
    retry_backoff = True
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 5

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = request_id_var.set(f"task:{self.request.id}")
        try:
            with acting_as(f"task:{self.name}[{self.request.id}]"):
                return super().__call__(*args, **kwargs)
        finally:
            request_id_var.reset(token)


@task_failure.connect
def record_task_failure(
    sender: Task | None = None,  # type: ignore[type-arg]
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Fires only when a task has failed for good (retries raise Retry instead)."""
    from .models import TaskFailure

    name = getattr(sender, "name", "unknown")
    TASK_FAILURES.labels(task=name).inc()
    logger.error("task.failed", extra={"task": name, "task_id": task_id, "error": repr(exception)})
    with transaction.atomic():
        TaskFailure.objects.get_or_create(
            task_id=task_id or "unknown",
            defaults={
                "task_name": name,
                "args": _jsonable(args or []),
                "kwargs": _jsonable(kwargs or {}),
                "exception_type": type(exception).__name__ if exception else "",
                "message": str(exception)[:2000],
                "traceback": str(einfo) if einfo else "".join(tb.format_exception(exception)) if exception else "",
            },
        )


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


@shared_task(base=BillingTask, ignore_result=True, max_retries=0)
def heartbeat() -> None:
    """Scheduled by beat every 30 s: proves that beat sends and a worker consumes. The key
    lives READYZ_HEARTBEAT_MAX_AGE_SECONDS on Redis's clock; /readyz reads its age from
    what is left (no process clock involved) and is 503 once it is gone."""
    get_redis().set(rkey("worker-heartbeat"), "1", ex=settings.READYZ_HEARTBEAT_MAX_AGE_SECONDS)


@shared_task(base=BillingTask, ignore_result=True)
def seal_audit_chain() -> int:
    """Beat, every minute: links written since are sealed into the audit chain."""
    from .chain import chain_seal_all

    return chain_seal_all()


@shared_task(base=BillingTask, ignore_result=True)
def record_audit_chain_head() -> None:
    """Beat, daily: the chain's head is recorded (and logged, for a copy kept elsewhere)."""
    from .chain import chain_record_head

    head = chain_record_head()
    if head is not None:
        logger.info("audit_chain.head", extra={"position": head.position, "link_hash": head.link_hash})
