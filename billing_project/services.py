"""Platform services that are not about API keys (see api_keys.py for those)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .models import TaskFailure


def task_failure_resolve(*, failure: TaskFailure, note: str = "") -> TaskFailure:
    """Mark a failed task as looked after; it stops counting as open in /metrics."""
    with transaction.atomic():
        locked = TaskFailure.objects.select_for_update().get(pk=failure.pk)
        if locked.resolved_at is None:
            locked.resolved_at = timezone.now()
            locked.resolution_note = note
            locked.save(update_fields=["resolved_at", "resolution_note"])
    return locked
