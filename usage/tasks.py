from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing_project.tasks import BillingTask

from .aggregation import usage_aggregate_all
from .partitions import partitions_ensure


@shared_task(base=BillingTask, ignore_result=True)
def aggregate_usage() -> int:
    """Every minute (beat): fold newly received usage into the rollups. Safe to rerun or kill."""
    return usage_aggregate_all()


@shared_task(base=BillingTask, ignore_result=True)
def ensure_usage_partitions() -> int:
    """Hourly (beat): this month's usage partition and the next ones made, stray events moved in."""
    return len(partitions_ensure(now=timezone.now()))
