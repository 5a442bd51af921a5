from __future__ import annotations

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import counters_reconcile


@shared_task(base=BillingTask, ignore_result=True)
def reconcile_usage_counters() -> int:
    """Every 5 minutes (beat): correct usage counters that drifted from PostgreSQL."""
    return counters_reconcile().corrected
