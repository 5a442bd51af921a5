"""Approvals' Celery tasks: thin."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing_project.tasks import BillingTask

from .services import approvals_expire_due


@shared_task(base=BillingTask, ignore_result=True)
def expire_approval_requests() -> int:
    """Hourly (beat): pending approval requests past APPROVAL_EXPIRY_DAYS expire (nothing is done)."""
    return approvals_expire_due(now=timezone.now())
