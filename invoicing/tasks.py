"""Invoicing's Celery tasks: thin. An item's failure is counted on its WorkItem, backed off
and, when a retry cannot help, blocked for staff (invoicing.attempts, billing_project.work);
only an error in recording it (the database down) reaches the task's own retries."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from billing_project.tasks import BillingTask

from .attempts import (
    invoice_collect_attempt,
    invoice_retry_payment_attempt,
    invoices_collect_pending,
    refund_submit_attempt,
    refunds_submit_pending,
)
from .ledger import credits_expire_due
from .reconciliation import stripe_reconcile
from .services import invoices_close_chunk, invoices_close_fan_out, invoices_late_usage_due, payment_retries_due

logger = logging.getLogger(__name__)


@shared_task(base=BillingTask, ignore_result=True)
def close_periods() -> int:
    """Every 5 minutes (beat): invoice each period boundary past its grace window, the
    first chunk of subscriptions here and the others fanned out as close_period_chunk
    tasks. The invoices made here."""
    made, _ = invoices_close_fan_out()
    return made


@shared_task(base=BillingTask, ignore_result=True)
def close_period_chunk(subscription_ids: list[int], queued_at: str = "") -> int:
    """One chunk of the period close. On the clock of when it runs, not of the beat run
    that queued it: a chunk that waited in the queue numbers and dates its invoices after
    those closed before it, as the series must (each close reads what is due under its
    tenant's lock). Idempotent."""
    return invoices_close_chunk(subscription_ids=subscription_ids, now=timezone.now())


@shared_task(base=BillingTask, ignore_result=True)
def collect_invoice(invoice_id: int) -> None:
    """Push one invoice to Stripe for collection. Idempotent: reruns continue where the last
    stopped. Stripe unreachable: tried again by the sweeper after a back-off; refused, or
    totals that disagree: blocked at once."""
    invoice_collect_attempt(invoice_id=invoice_id)


@shared_task(base=BillingTask, ignore_result=True)
def collect_pending_invoices() -> int:
    """Every 15 minutes (beat): queue collection again for invoices Stripe does not hold yet
    (not those blocked or backing off)."""
    return invoices_collect_pending()


@shared_task(base=BillingTask, ignore_result=True)
def invoice_late_usage() -> int:
    """Hourly (beat): late usage of subscriptions that have ended, on an invoice of its own."""
    return invoices_late_usage_due()


@shared_task(base=BillingTask, ignore_result=True)
def retry_due_payments() -> int:
    """Hourly (beat): dunning retries that are due, each queued as its own task."""
    due = payment_retries_due(now=timezone.now())
    for invoice_id in due:
        retry_payment.delay(invoice_id)
    return len(due)


@shared_task(base=BillingTask, ignore_result=True)
def retry_payment(invoice_id: int) -> None:
    """One dunning retry, with its own idempotency key (a redelivery never charges twice)."""
    invoice_retry_payment_attempt(invoice_id=invoice_id)


@shared_task(base=BillingTask, ignore_result=True)
def submit_refund(refund_id: int) -> None:
    """Send one requested refund to Stripe (key refund-<id>: a redelivery never refunds
    twice). Stripe unreachable: tried again by the sweeper after a back-off."""
    refund_submit_attempt(refund_id=refund_id)


@shared_task(base=BillingTask, ignore_result=True)
def submit_pending_refunds() -> int:
    """Every 5 minutes (beat): queue again requested refunds never submitted (not those
    blocked or backing off)."""
    return refunds_submit_pending()


@shared_task(base=BillingTask, ignore_result=True)
def expire_credits() -> int:
    """Hourly (beat): what is left of grants past their expiry is written off, an entry each."""
    return credits_expire_due(now=timezone.now())


@shared_task(base=BillingTask, ignore_result=True)
def reconcile_with_stripe() -> int:
    """Daily (beat): our invoices, payments and refunds against Stripe's; the day's report
    and how many mismatches. Skipped while collection at Stripe is off (nothing is there)."""
    if not settings.STRIPE_COLLECTION_ENABLED:
        logger.info("reconciliation.skipped", extra={"reason": "STRIPE_COLLECTION_ENABLED is off"})
        return 0
    return stripe_reconcile().mismatches.count()
