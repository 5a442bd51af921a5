"""Celery tasks for Stripe events: thin, idempotent, safe to retry."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import stripe_event_attempt, stripe_event_enqueue, stripe_events_pending


@shared_task(base=BillingTask, ignore_result=True)
def process_stripe_event(event_id: str) -> None:
    """Apply one stored Stripe event (by its evt_… id). A failure is counted and backed off
    (the sweeper queues it again) or blocked (services.stripe_event_attempt); a redelivery
    of an event already applied does nothing."""
    stripe_event_attempt(stripe_id=event_id)


@shared_task(base=BillingTask, ignore_result=True)
def process_pending_stripe_events() -> int:
    """Beat: queue events whose processing was never attempted (their enqueue after commit
    was lost, e.g. the broker was down at that instant), or failed and is due again."""
    pending = stripe_events_pending(older_than=timedelta(minutes=5))
    for stripe_id in pending:
        stripe_event_enqueue(stripe_id=stripe_id)
    return len(pending)
