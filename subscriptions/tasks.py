from __future__ import annotations

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import subscriptions_roll_due, subscriptions_suspend_overdue


@shared_task(base=BillingTask, ignore_result=True)
def roll_due_subscriptions() -> int:
    """Every minute (beat): cross the period boundaries that have passed. Idempotent."""
    return subscriptions_roll_due()


@shared_task(base=BillingTask, ignore_result=True)
def suspend_overdue_subscriptions() -> int:
    """Hourly (beat): past due beyond the dunning grace → suspended; entitlements follow."""
    return subscriptions_suspend_overdue()
