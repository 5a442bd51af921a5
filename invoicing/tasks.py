from __future__ import annotations

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import invoices_close_due


@shared_task(base=BillingTask, ignore_result=True)
def close_periods() -> int:
    """Every 5 minutes (beat): invoice each period boundary past its grace window."""
    return invoices_close_due()
