from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing_project.tasks import BillingTask

from .payments import invoice_collect, invoice_retry_payment
from .providers import ProviderRejected
from .services import (
    collect_after_commit,
    invoices_awaiting_collection,
    invoices_close_due,
    invoices_late_usage_due,
    payment_retries_due,
)


@shared_task(base=BillingTask, ignore_result=True)
def close_periods() -> int:
    """Every 5 minutes (beat): invoice each period boundary past its grace window."""
    return invoices_close_due()


@shared_task(base=BillingTask, ignore_result=True, dont_autoretry_for=(ProviderRejected,))
def collect_invoice(invoice_id: int) -> None:
    """Push one invoice to Stripe for collection. Stripe unreachable (ProviderUnavailable)
    → retried with backoff, then a TaskFailure; Stripe refusing it (ProviderRejected) is
    recorded at once, since a retry would be refused too. Idempotent: reruns continue."""
    invoice_collect(invoice_id=invoice_id)


@shared_task(base=BillingTask, ignore_result=True)
def collect_pending_invoices() -> int:
    """Every 15 minutes (beat): queue collection again for invoices Stripe does not hold yet."""
    pending = invoices_awaiting_collection()
    for invoice_id in pending:
        collect_after_commit(invoice_id)  # outside a transaction: sent at once
    return len(pending)


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


@shared_task(base=BillingTask, ignore_result=True, dont_autoretry_for=(ProviderRejected,))
def retry_payment(invoice_id: int) -> None:
    """One dunning retry; Stripe unreachable → retried with backoff (the same key)."""
    invoice_retry_payment(invoice_id=invoice_id)
