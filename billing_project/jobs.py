"""The one seam through which services queue Celery work: by task name, after commit.

Tasks call services; services never import tasks (that would be an import circle), so a
service names the task it wants run. A send that fails is logged, never raised: the
row the task needs is committed, and each app's sweeper finds what was not sent.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def send_after_commit(task: str, *args: Any, failure_event: str, **log: Any) -> None:
    """Queue `task` (its dotted name) with `args` once the current transaction commits
    (at once outside one)."""

    def send() -> None:
        from .celery import app

        try:
            app.send_task(task, args=args, queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except Exception:
            logger.exception(failure_event, extra=log)

    transaction.on_commit(send)
