"""Collection status of finalized invoices: paid, payment failed, dunning retries, void,
uncollectible. Each move follows TRANSITIONS, the same table the database guard
enforces (invoicing migration 0003), so a refused move is a clear Conflict here and
never reaches the trigger; tests/invoicing/test_transitions.py checks the two agree.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing_project.errors import Conflict, InvalidRequest
from billing_project.text import a_status
from subscriptions.models import Subscription
from subscriptions.services import subscription_apply, subscription_recover_after_payment

from . import jobs
from .ledger import credit_restore
from .models import Invoice

logger = logging.getLogger(__name__)
SYSTEM = "system"

S = Invoice.Status
# Which status may follow which: finalization (from draft) and collection. Paid and void are final.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    S.DRAFT: frozenset({S.OPEN, S.PAID}),
    S.OPEN: frozenset({S.PAID, S.VOID, S.UNCOLLECTIBLE}),
    S.UNCOLLECTIBLE: frozenset({S.PAID, S.VOID}),
    S.PAID: frozenset(),
    S.VOID: frozenset(),
}


def can_move(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def _locked(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice_id)  # join-free: see subscriptions._live_locked


@transaction.atomic
def invoice_mark_paid(*, invoice_id: int, at: datetime | None = None, actor: str = SYSTEM) -> Invoice:
    """Paid (at Stripe, or by staff): the subscription recovers if it was past due."""
    invoice = _locked(invoice_id)
    if invoice.status == Invoice.Status.PAID:
        return invoice
    if not can_move(invoice.status, Invoice.Status.PAID):
        raise Conflict(f"{a_status(invoice.status)} invoice cannot be paid.", code="invoice_not_payable")
    invoice.status, invoice.paid_at, invoice.last_payment_error = Invoice.Status.PAID, at or timezone.now(), ""
    invoice.save(update_fields=["status", "paid_at", "last_payment_error"])
    if invoice.subscription_id is not None and not _other_unpaid(invoice):
        subscription_recover_after_payment(
            subscription_id=invoice.subscription_id, actor=actor, reason=f"invoice {invoice.number} paid"
        )
    return invoice


def _other_unpaid(invoice: Invoice) -> bool:
    overdue = Q(status=Invoice.Status.OPEN, last_payment_error__gt="") | Q(status=Invoice.Status.UNCOLLECTIBLE)
    return Invoice.objects.filter(overdue, subscription=invoice.subscription).exclude(pk=invoice.pk).exists()


@transaction.atomic
def invoice_payment_failed(*, invoice_id: int, error: str, actor: str = SYSTEM, attempts: int | None = None) -> Invoice:
    """A collection attempt failed: the subscription goes past due (the dunning grace
    starts), and entitlements follow. `attempts`: how many the provider counts in all
    (several may have failed between two of its events); one more when not given."""
    invoice = _locked(invoice_id)
    if invoice.status != Invoice.Status.OPEN:
        return invoice  # paid or voided meanwhile: a stale failure changes nothing
    if attempts is not None and attempts <= invoice.collection_attempts:
        return invoice  # counted already (a duplicate or late event, read under the lock)
    invoice.collection_attempts = attempts if attempts is not None else invoice.collection_attempts + 1
    invoice.last_payment_error = error or "payment failed"
    if invoice.payment_retries == 0 and invoice.next_payment_retry_at is None and settings.DUNNING_RETRY_DAYS:
        # dunning starts: the first retry on schedule (later ones are set by each retry)
        invoice.next_payment_retry_at = timezone.now() + timedelta(days=settings.DUNNING_RETRY_DAYS[0])
    invoice.save(update_fields=["collection_attempts", "last_payment_error", "next_payment_retry_at"])
    sub = invoice.subscription
    if sub is not None and sub.status == Subscription.Status.ACTIVE:
        subscription_apply(
            subscription=sub, action="mark_past_due", actor=actor, reason=f"invoice {invoice.number} unpaid"
        )
    return invoice


@transaction.atomic
def invoice_retry_recorded(*, invoice_id: int, retry: int, now: datetime) -> Invoice:
    """Our retry number `retry` ran: schedule the next one, or stop when the schedule is spent
    (the dunning grace then suspends the subscription)."""
    invoice = _locked(invoice_id)
    if invoice.payment_retries >= retry:
        return invoice  # recorded already (a redelivered task)
    schedule = settings.DUNNING_RETRY_DAYS
    invoice.payment_retries = retry
    invoice.next_payment_retry_at = (
        now + timedelta(days=schedule[retry] - schedule[retry - 1])
        if invoice.status == Invoice.Status.OPEN and retry < len(schedule)
        else None
    )
    invoice.save(update_fields=["payment_retries", "next_payment_retry_at"])
    return invoice


@transaction.atomic
def invoice_void(*, invoice_id: int, reason: str, actor: str, at: datetime | None = None) -> Invoice:
    """Void an unpaid invoice; the credit it used returns to the ledger."""
    invoice = _locked(invoice_id)
    if invoice.status == Invoice.Status.VOID:
        return invoice
    if not can_move(invoice.status, Invoice.Status.VOID):
        raise Conflict(f"{a_status(invoice.status)} invoice cannot be voided.", code="invoice_not_voidable")
    invoice.status, invoice.voided_at = Invoice.Status.VOID, at or timezone.now()
    invoice.save(update_fields=["status", "voided_at"])
    credit_restore(invoice=invoice, actor=actor)
    logger.info("invoicing.voided", extra={"number": invoice.number, "reason": reason, "actor": actor})
    return invoice


@transaction.atomic
def invoice_mark_uncollectible(
    *, invoice_id: int, actor: str, at: datetime | None = None, strict: bool = False
) -> Invoice:
    """Stop collecting an open invoice. Stripe's word applies only forward (a stale event
    changes nothing); staff asking for a move that cannot be made (`strict`) are told so."""
    invoice = _locked(invoice_id)
    if (
        strict
        and invoice.status != Invoice.Status.UNCOLLECTIBLE
        and not can_move(invoice.status, Invoice.Status.UNCOLLECTIBLE)
    ):
        raise Conflict(
            f"{a_status(invoice.status)} invoice cannot be marked uncollectible: only an open one.",
            code="invoice_not_open",
        )
    if can_move(invoice.status, Invoice.Status.UNCOLLECTIBLE):
        invoice.status, invoice.uncollectible_at = Invoice.Status.UNCOLLECTIBLE, at or timezone.now()
        invoice.save(update_fields=["status", "uncollectible_at"])
    return invoice


@transaction.atomic
def invoice_retry_payment_now(*, invoice_id: int, actor: str, reason: str, now: datetime | None = None) -> Invoice:
    """Staff retry an open invoice's payment at Stripe now instead of at its next dunning
    retry: the retry becomes due now and is queued once committed (it charges outside any
    transaction, with its own idempotency key). Only an open invoice Stripe holds."""
    now = now or timezone.now()
    if not reason.strip():
        raise InvalidRequest("Say why the payment is retried now.", code="validation_error")
    invoice = _locked(invoice_id)
    if invoice.status != Invoice.Status.OPEN or not invoice.stripe_invoice_id:
        raise Conflict(
            f"{invoice.number} is {invoice.status}{'' if invoice.stripe_invoice_id else ', not at Stripe'}: "
            "only an open invoice Stripe collects is retried.",
            code="invoice_not_retriable",
        )
    invoice.next_payment_retry_at = now
    invoice.save(update_fields=["next_payment_retry_at"])
    logger.info("collection.retry_now", extra={"invoice_id": invoice.pk, "actor": actor, "reason": reason})
    jobs.payment_retry_after_commit(invoice.pk)
    return invoice
