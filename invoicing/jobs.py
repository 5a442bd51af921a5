"""Work invoicing's services queue, by task name (billing_project.jobs), and the names of
its swept work (billing_project.work): each item a beat job takes up again has a WorkItem
under one of these once it fails."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import DataError

from billing_project.errors import BillingError
from billing_project.jobs import send_after_commit
from billing_project.money import CurrencyMismatch

from .providers.base import ProviderRejected

COLLECT = "invoicing.collect"  # an invoice pushed to Stripe for collection (object: the invoice)
PAYMENT_RETRY = "invoicing.payment_retry"  # a dunning retry of an open invoice (object: the invoice)
CLOSE = "invoicing.close"  # a subscription's period close (object: the subscription)
LATE_USAGE = "invoicing.late_usage"  # late usage of an ended subscription (object: the subscription)
REFUND_SUBMIT = "invoicing.refund_submit"  # a refund sent to Stripe (object: the refund)

# Failures no retry can cure: Stripe refusing the request (not a declined card, which
# dunning handles), a domain refusal (Stripe's totals disagree with ours, a status that
# forbids it), a currency mismatch. They block the item at once; others back off first.
# DataError: a value past a column (a numeric overflow) fails the same way at every retry
PERMANENT: tuple[type[BaseException], ...] = (ProviderRejected, BillingError, CurrencyMismatch, DataError)

COLLECT_TASK = "invoicing.tasks.collect_invoice"
PAYMENT_RETRY_TASK = "invoicing.tasks.retry_payment"
REFUND_SUBMIT_TASK = "invoicing.tasks.submit_refund"
CLOSE_CHUNK_TASK = "invoicing.tasks.close_period_chunk"


def collect_after_commit(invoice_id: int) -> None:
    """Queue collection at Stripe once the invoice is committed. A lost send is picked
    up by the sweeper (selectors.invoices_awaiting_collection)."""
    if settings.STRIPE_COLLECTION_ENABLED:
        send_after_commit(
            COLLECT_TASK,
            invoice_id,
            failure_event="invoicing.collect_enqueue_failed",
            invoice_id=invoice_id,
        )


def refund_submit_after_commit(refund_id: int) -> None:
    """Submit the refund once it is committed as requested: to Stripe, or, paid out by staff,
    settled without it. A lost send is picked up by the sweeper
    (refunds.refunds_submit_pending). Not gated on STRIPE_COLLECTION_ENABLED: a refund of an
    invoice Stripe collected goes back through Stripe, or not at all."""
    send_after_commit(
        REFUND_SUBMIT_TASK, refund_id, failure_event="invoicing.refund_enqueue_failed", refund_id=refund_id
    )


def payment_retry_after_commit(invoice_id: int) -> None:
    """Queue one payment retry once committed (staff's "retry now"; the hourly sweep of due
    retries picks up a lost send, since the retry is due from now)."""
    send_after_commit(
        PAYMENT_RETRY_TASK, invoice_id, failure_event="invoicing.payment_retry_enqueue_failed", invoice_id=invoice_id
    )


def close_chunk_send(subscription_ids: list[int], now: datetime) -> None:
    """Queue one chunk of the period close (at once outside a transaction). A lost send is
    queued again by a later beat run once its claims expire."""
    send_after_commit(
        CLOSE_CHUNK_TASK,
        subscription_ids,
        now.isoformat(),
        failure_event="invoicing.close_chunk_enqueue_failed",
        subscriptions=len(subscription_ids),
    )
