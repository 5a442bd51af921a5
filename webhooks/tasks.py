"""Celery tasks for Stripe events: thin, idempotent, safe to retry."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import stripe_event_enqueue, stripe_event_process, stripe_events_pending


@shared_task(base=BillingTask, ignore_result=True)
def process_stripe_event(event_id: str) -> None:
    """Apply one stored Stripe event (by its evt_… id). Retried with backoff on error; a
    redelivery of an event already applied does nothing."""
    stripe_event_process(stripe_id=event_id)


@shared_task(base=BillingTask, ignore_result=True)
def process_pending_stripe_events() -> int:
    """Beat: queue events whose processing was never attempted (their enqueue after commit
    was lost, e.g. the broker was down at that instant)."""
    pending = stripe_events_pending(older_than=timedelta(minutes=5))
    for stripe_id in pending:
        stripe_event_enqueue(stripe_id=stripe_id)
    return len(pending)
