"""Refunds: money paid on an invoice going back to the customer, in full or in part
(models.Refund): through Stripe when the invoice was paid there, else paid out by staff
outside Stripe.

    awaiting_approval ──approve──▶ requested ──submit──▶ submitted ──Stripe: succeeded──▶ succeeded
            │ rejected, expired        │ Stripe refuses,          │ Stripe: failed, canceled
            ▼                          ▼ Stripe: failed           ▼
          failed                     failed                     failed
    (and requested ──▶ succeeded when Stripe answers the submission with succeeded at once,
    or when the refund was paid out by staff)

How the money goes back (`method`) follows from how it came in, never from the caller: an
invoice Stripe holds (`stripe_invoice_id`) is refunded through Stripe, always; one that
staff marked paid (a bank transfer, collection off) is refunded by staff outside Stripe,
and the request carries the reference of their payout (`payout_reference`, the bank
transfer's id). Such a refund ("manual") takes the same road as one through Stripe, so the
same reservations, locks, idempotency, four eyes and audit hold: its submission calls no
Stripe and settles it at once, `succeeded` with its credit note, as Stripe's confirmation
would.

Nothing twice. A request carries the caller's idempotency token (`request_key`, unique per
invoice): the same request sent again returns the same refund, and the same key with
another amount is refused (`idempotency_conflict`). A submission to Stripe carries the key
`refund-<id>`; past Stripe's 24-hour key window it finds what an earlier attempt made by
the metadata stamped on the Stripe refund (`billing_refund_id`); and a lease on the row
(`submit_lease_until`) keeps concurrent submissions from calling Stripe twice.

Nothing beyond. Under the invoice's row lock every refund not failed reserves its amount,
so the refunds of an invoice never total more than it was paid (its total), however they
race; a trigger (migration 0009) holds the same rule below the ORM. A refund also has to
fit in what credit notes have left to correct, since its own credit note must.

The books. A succeeded refund gets a credit note of its amount settled by refund (no ledger
credit: the money went back in cash), so per invoice, always: refunds succeeded = credit
notes settled by refund, and refunds not failed ≤ total paid. A failed one changes nothing.

Stripe first, then the lock. refund_submit and the webhook sync call Stripe with no
transaction open and no row locked, then one short transaction applies what Stripe said
under the invoice's lock (lock order: invoice, refund, then the tenant; subscriptions/locks.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billing_project.errors import Conflict, InvalidRequest, NotFound, invalid_field
from billing_project.money import Money, exponent, money_display, normalize_currency, round_line
from billing_project.text import a_status
from billing_project.work import work_held

from . import jobs, providers
from .corrections import credit_note_issue, credit_room
from .models import CreditNote, Invoice, Refund

logger = logging.getLogger(__name__)

S = Refund.Status
M = Refund.Method
PENDING = (S.REQUESTED, S.AWAITING_APPROVAL, S.SUBMITTED)  # reserved, no credit note yet
SUBMIT_LEASE = timedelta(minutes=5)  # longer than a Stripe call with its retries takes
STRIPE_FAILED = ("failed", "canceled")


# ---------------------------------------------------------------- reading, under the invoice's lock
def _invoice_locked(invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound(f"No invoice {invoice_id}.", code="unknown_invoice")
    return invoice


def _refund_locked(refund_id: int) -> Refund:
    """The refund's invoice, then the refund, locked (the invoice first: the lock order)."""
    invoice_id = Refund.objects.filter(pk=refund_id).values_list("invoice_id", flat=True).first()
    if invoice_id is None:
        raise NotFound(f"No refund {refund_id}.", code="unknown_refund")
    invoice = _invoice_locked(invoice_id)
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    refund.invoice = invoice
    return refund


def refundable(*, invoice: Invoice, excluding: Refund | None = None) -> Decimal:
    """What may still be refunded of a paid invoice: what was paid (its total) less every
    refund not failed, and at most what credit notes have left to correct less the refunds
    still waiting for theirs. Read it under the invoice's lock."""
    if invoice.status != Invoice.Status.PAID:
        return Decimal(0)
    refunds = invoice.refunds.exclude(status=S.FAILED)
    if excluding is not None:
        refunds = refunds.exclude(pk=excluding.pk)
    reserved = refunds.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    in_flight = refunds.filter(status__in=PENDING).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    left = min(invoice.total - reserved, credit_room(invoice=invoice).total - in_flight)
    return max(left, Decimal(0))


def refund_method(*, invoice: Invoice) -> str:
    """How a refund of the invoice goes back: through Stripe when Stripe holds the invoice
    (it collected it), else paid out by staff outside Stripe (staff marked it paid)."""
    return M.STRIPE if invoice.stripe_invoice_id else M.MANUAL


def _refusing(invoice: Invoice, amount: Money, payout_reference: str) -> None:
    """The request's amount, its payout reference and the invoice's state, or the error
    that refuses them."""
    if invoice.status != Invoice.Status.PAID:
        raise Conflict(
            f"{a_status(invoice.status)} invoice takes no refund: only money paid goes back.",
            code="invoice_not_refundable",
        )
    if refund_method(invoice=invoice) == M.STRIPE and payout_reference:
        raise invalid_field(
            "payout_reference",
            f"{invoice.number} was paid through Stripe: the money goes back through Stripe, not by a payout of staff.",
        )
    if refund_method(invoice=invoice) == M.MANUAL and not payout_reference:
        raise invalid_field(
            "payout_reference",
            f"{invoice.number} was not paid through Stripe: staff pay the refund out (a bank transfer) and give "
            "its reference.",
        )
    if normalize_currency(amount.currency) != invoice.currency:
        raise InvalidRequest(
            f"{invoice.number} is in {invoice.currency}, the refund in {amount.currency}.",
            code="currency_mismatch",
            details={"currency": amount.currency, "invoice_currency": invoice.currency},
        )
    if amount.amount <= 0 or round_line(amount.amount, invoice.currency) != amount.amount:
        raise InvalidRequest(
            "A refund is a positive amount in whole minor units.",
            code="invalid_amount",
            details={"amount": str(amount.amount)},
        )


# ---------------------------------------------------------------- requests
@transaction.atomic
def refund_request(
    *,
    invoice_id: int,
    amount: Money,
    reason: str,
    actor: str,
    request_key: str,
    awaiting_approval: bool = False,
    payout_reference: str = "",
) -> Refund:
    """Ask for `amount` of a paid invoice back. The same `request_key` again returns the
    refund it made (another amount or payout reference with it: Conflict
    `idempotency_conflict`). An invoice paid through Stripe is refunded through Stripe; one
    staff marked paid is paid back by staff outside Stripe (`method` manual), and
    `payout_reference` names their payout (the bank transfer's id): required then, refused
    for an invoice paid through Stripe (`validation_error` on `payout_reference`). Refused
    too: an invoice not paid (`invoice_not_refundable`), another currency
    (`currency_mismatch`), an amount not positive or finer than the minor unit
    (`invalid_amount`), more than is left to refund (`refund_exceeds_paid`, with
    `details.refundable`). Status `awaiting_approval` when told so (the four-eyes rule is
    the caller's), else `requested`, and then it is submitted once committed (to Stripe, or
    settled as paid out by staff)."""
    if not reason.strip():
        raise invalid_field("reason", "Say why the money goes back.")
    if not request_key or len(request_key) > 255:
        raise invalid_field("request_key", "A request key is 1 to 255 characters.")
    if not actor.strip():
        raise invalid_field("actor", "Say who asks for the refund.")
    reference = payout_reference.strip()
    if len(reference) > 255:
        raise invalid_field("payout_reference", "A payout reference is at most 255 characters.")
    invoice = _invoice_locked(invoice_id)  # refunds of one invoice queue here: none sees a stale total
    existing = invoice.refunds.filter(request_key=request_key).first()
    if existing is not None:
        if (existing.amount, existing.currency, existing.payout_reference) != (
            amount.amount,
            amount.currency.strip().upper(),
            reference,
        ):
            raise Conflict(
                f"Request key {request_key!r} already asked for {existing.amount} {existing.currency}"
                + (f" paid out as {existing.payout_reference!r}." if existing.payout_reference else "."),
                code="idempotency_conflict",
                details={
                    "refund": existing.pk,
                    "amount": str(existing.amount),
                    "currency": existing.currency,
                    "payout_reference": existing.payout_reference,
                },
            )
        return existing
    _refusing(invoice, amount, reference)
    left = refundable(invoice=invoice)
    if amount.amount > left:
        raise Conflict(
            f"{invoice.number} can be refunded up to {money_display(left, invoice.currency)}.",
            code="refund_exceeds_paid",
            details={"amount": str(amount.amount), "refundable": str(left), "paid": str(invoice.total)},
        )
    refund = Refund.objects.create(
        invoice=invoice,
        tenant_id=invoice.tenant_id,
        amount=amount.amount,
        currency=invoice.currency,
        reason=reason.strip(),
        status=S.AWAITING_APPROVAL if awaiting_approval else S.REQUESTED,
        request_key=request_key,
        requested_by=actor,
        method=refund_method(invoice=invoice),
        payout_reference=reference,
    )
    if refund.status == S.REQUESTED:
        jobs.refund_submit_after_commit(refund.pk)
    logger.info(
        "refunds.requested",
        extra={
            "refund_id": refund.pk,
            "invoice_id": invoice.pk,
            "amount": str(amount),
            "status": refund.status,
            "method": refund.method,
        },
    )
    return refund


@transaction.atomic
def refund_approve_ready(*, refund_id: int) -> Refund:
    """A refund that waited for approval is approved: checked again (the invoice is still
    paid, the amount still within what is left to refund), then `requested` and submitted
    once committed (to Stripe, or settled as paid out by staff). Already past approval:
    returned as it is; failed (rejected, expired): Conflict `refund_not_pending`."""
    refund = _refund_locked(refund_id)
    if refund.status == S.FAILED:
        raise Conflict(f"Refund {refund.pk} has failed: {refund.failure_reason}", code="refund_not_pending")
    if refund.status != S.AWAITING_APPROVAL:
        return refund
    invoice = refund.invoice
    if invoice.status != Invoice.Status.PAID:
        raise Conflict(f"{a_status(invoice.status)} invoice takes no refund.", code="invoice_not_refundable")
    left = refundable(invoice=invoice, excluding=refund)
    if refund.amount > left:
        raise Conflict(
            f"{invoice.number} can be refunded up to {money_display(left, invoice.currency)} now.",
            code="refund_exceeds_paid",
            details={"amount": str(refund.amount), "refundable": str(left), "paid": str(invoice.total)},
        )
    refund.status = S.REQUESTED
    refund.save(update_fields=["status"])
    jobs.refund_submit_after_commit(refund.pk)
    logger.info("refunds.approved", extra={"refund_id": refund.pk})
    return refund


@transaction.atomic
def refund_cancel(*, refund_id: int, reason: str, now: datetime | None = None) -> Refund:
    """A refund awaiting approval is rejected or expired: failed, with the reason; nothing
    was sent to Stripe and the books are unchanged. Failed already: returned as it is. A
    refund past approval may have reached Stripe, so it is not canceled here (Conflict
    `refund_not_cancelable`): Stripe's answer settles it."""
    if not reason.strip():
        raise invalid_field("reason", "Say why the refund is canceled.")
    refund = _refund_locked(refund_id)
    if refund.status == S.FAILED:
        return refund
    if refund.status != S.AWAITING_APPROVAL:
        raise Conflict(
            f"Refund {refund.pk} is {refund.status}: only one awaiting approval is canceled.",
            code="refund_not_cancelable",
        )
    refund.status, refund.failure_reason, refund.failed_at = S.FAILED, reason.strip(), now or timezone.now()
    refund.save(update_fields=["status", "failure_reason", "failed_at"])
    logger.info("refunds.canceled", extra={"refund_id": refund.pk})
    return refund


# ---------------------------------------------------------------- submission to Stripe
def _claim(*, refund_id: int, now: datetime) -> Refund | None:
    """Take the submission lease of a requested refund, in a transaction of its own (only the
    refund's row, for an instant). None: not requested, or another submission holds it."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
        if refund is None:
            raise NotFound(f"No refund {refund_id}.", code="unknown_refund")
        if refund.status != S.REQUESTED or (refund.submit_lease_until and refund.submit_lease_until > now):
            return None
        refund.submit_lease_until = now + SUBMIT_LEASE
        refund.save(update_fields=["submit_lease_until"])
    return refund


def _release(*, refund_id: int) -> None:
    Refund.objects.filter(pk=refund_id, status=S.REQUESTED).update(submit_lease_until=None)


def _send(refund: Refund, invoice: Invoice) -> providers.RemoteRefund:
    """Stripe's refund for ours: the one an earlier attempt made, else a new one. With no
    transaction open."""
    stripe_invoice_id = invoice.stripe_invoice_id or ""
    paid = [
        p
        for p in providers.invoice_payments(stripe_invoice_id)
        if p.status == "paid" and (p.payment_intent or p.charge_id)
    ]
    if not paid:
        raise providers.ProviderRejected(f"Stripe holds no paid payment of {invoice.number} ({stripe_invoice_id})")
    payment = next((p for p in paid if p.amount_paid >= refund.amount), paid[0])
    intent = payment.payment_intent or None
    charge = None if intent else payment.charge_id
    found = providers.refund_find(billing_refund_id=refund.pk, payment_intent=intent, charge_id=charge)
    if found is not None:
        return found
    return providers.refund_create(
        amount=Money(refund.amount, refund.currency),
        reason=refund.reason,
        idempotency_key=f"refund-{refund.pk}",
        payment_intent=intent,
        charge_id=charge,
        billing_refund_id=refund.pk,
    )


def refund_submit(*, refund_id: int, now: datetime | None = None) -> Refund:
    """Send a requested refund to Stripe (key `refund-<id>`), then apply Stripe's answer:
    `submitted` (or `succeeded` at once, with its credit note); Stripe refusing: `failed`
    with Stripe's reason and the books unchanged; Stripe unreachable: still `requested`,
    and `ProviderUnavailable` is raised for the caller to count (attempts.py) and retry.
    A refund paid out by staff (`method` manual) calls no Stripe: it is `succeeded` at
    once, with its credit note, as a refund Stripe confirmed is.
    Anything else (not requested, being submitted by another process): returned as it is.
    Never inside a transaction: Stripe is called with nothing locked."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("a refund is sent to Stripe outside any transaction")
    now = now or timezone.now()
    claimed = _claim(refund_id=refund_id, now=now)
    if claimed is None:
        return Refund.objects.get(pk=refund_id)
    if claimed.method == M.MANUAL:
        try:
            return _settle_paid_out(refund_id=refund_id, now=now)
        except BaseException:
            _release(refund_id=refund_id)
            raise
    invoice = Invoice.objects.get(pk=claimed.invoice_id)
    try:
        remote = _send(claimed, invoice)
    except providers.ProviderRejected as exc:
        logger.warning("refunds.refused", extra={"refund_id": refund_id, "error": str(exc)})
        return _refused(refund_id=refund_id, reason=f"Stripe refused the refund: {exc}", now=now)
    except BaseException:
        _release(refund_id=refund_id)  # the next attempt may run at once
        raise
    return _apply(remote=remote, refund_id=refund_id, now=now)


@transaction.atomic
def _settle_paid_out(*, refund_id: int, now: datetime) -> Refund:
    """A refund staff paid out outside Stripe: settled under the invoice's lock, with the
    credit note of its amount settled by refund (no ledger credit), as Stripe's confirmation
    settles one through Stripe. Settled already (a redelivered task): returned as it is."""
    refund = _refund_locked(refund_id)
    if refund.status != S.REQUESTED or refund.method != M.MANUAL:
        return refund
    refund.credit_note = _correct_books(refund=refund, invoice=refund.invoice, now=now)
    refund.status, refund.succeeded_at, refund.submit_lease_until = S.SUCCEEDED, now, None
    refund.save(update_fields=["credit_note", "status", "succeeded_at", "submit_lease_until"])
    logger.info(
        "refunds.paid_out_by_staff",
        extra={"refund_id": refund.pk, "payout_reference": refund.payout_reference, "amount": str(refund.amount)},
    )
    return refund


@transaction.atomic
def _refused(*, refund_id: int, reason: str, now: datetime) -> Refund:
    refund = _refund_locked(refund_id)
    if refund.status in (S.REQUESTED, S.SUBMITTED):
        refund.status, refund.failure_reason, refund.failed_at = S.FAILED, reason[:4000], now
        refund.submit_lease_until = None
        refund.save(update_fields=["status", "failure_reason", "failed_at", "submit_lease_until"])
    return refund


# ---------------------------------------------------------------- Stripe's answer
def refund_sync_fetch(*, stripe_refund_id: str) -> providers.RemoteRefund:
    """The Stripe refund as it stands now (refund.created / .updated / .failed name it).
    Call it with no transaction open."""
    return providers.refund_fetch(stripe_refund_id)


def refund_charge_fetch(*, stripe_charge_id: str) -> list[providers.RemoteRefund]:
    """The refunds of a charge as they stand now (charge.refunded names only the charge).
    Call it with no transaction open."""
    return providers.refunds_of_charge(stripe_charge_id)


def _ours(remote: providers.RemoteRefund) -> int | None:
    """Our refund through Stripe that Stripe's is (never one staff paid out: Stripe holds
    no part of it, whatever a Stripe refund's metadata says)."""
    through_stripe = Refund.objects.filter(method=M.STRIPE)
    found: int | None = through_stripe.filter(stripe_refund_id=remote.refund_id).values_list("pk", flat=True).first()
    if found is None and remote.billing_refund_id is not None:
        # Stripe's event may come before the submission stored Stripe's id
        found = (
            through_stripe.filter(pk=remote.billing_refund_id, stripe_refund_id="").values_list("pk", flat=True).first()
        )
    return found


def refund_sync_apply(*, remote: providers.RemoteRefund, now: datetime | None = None) -> Refund | None:
    """Apply Stripe's refund, as read, to ours (found by Stripe's id, else by the id we
    stamped on it; None, and a log line, when it is not ours: one made in Stripe's
    dashboard). Only forward, under the invoice's lock, so replays and any order of events
    change nothing twice: `succeeded` once, with one credit note of its amount settled by
    refund; `failed`/`canceled` → failed with Stripe's reason and no credit note; pending →
    submitted. A Stripe refund of another amount than ours is Conflict
    `stripe_refund_mismatch` (a retry cannot help: staff look)."""
    ours = _ours(remote)
    if ours is None:
        logger.warning("refunds.unknown_at_stripe", extra={"stripe_refund_id": remote.refund_id})
        return None
    return _apply(remote=remote, refund_id=ours, now=now or timezone.now())


def _apply(*, remote: providers.RemoteRefund, refund_id: int, now: datetime) -> Refund:
    with transaction.atomic():
        refund = _refund_locked(refund_id)
        if (refund.stripe_refund_id and refund.stripe_refund_id != remote.refund_id) or (
            remote.amount,
            remote.currency,
        ) != (refund.amount, refund.currency):
            raise Conflict(
                f"Refund {refund.pk} ({refund.amount} {refund.currency}, {refund.stripe_refund_id or 'not at Stripe'})"
                f" does not match Stripe's {remote.refund_id} ({remote.amount} {remote.currency}).",
                code="stripe_refund_mismatch",
            )
        if refund.status in (S.SUCCEEDED, S.FAILED, S.AWAITING_APPROVAL):
            if refund.status != S.FAILED and remote.status in STRIPE_FAILED:
                # Rare: a card refund reported succeeded fails later. The credit note stands;
                # finance decides how the books follow (README, Refunds).
                logger.error(
                    "refunds.failed_after_settled",
                    extra={"refund_id": refund.pk, "status": refund.status, "stripe": remote.refund_id},
                )
            return refund
        refund.stripe_refund_id = remote.refund_id
        refund.submit_lease_until = None
        refund.submitted_at = refund.submitted_at or now
        if remote.status == "succeeded":
            refund.credit_note = _correct_books(refund=refund, invoice=refund.invoice, now=now)
            refund.status, refund.succeeded_at = S.SUCCEEDED, now
        elif remote.status in STRIPE_FAILED:
            refund.status, refund.failed_at = S.FAILED, now
            refund.failure_reason = f"Stripe: {remote.failure_reason or remote.status}"
        else:  # pending, requires_action: Stripe's events say how it ends
            refund.status = S.SUBMITTED
        refund.save()
    logger.info("refunds.synced", extra={"refund_id": refund.pk, "status": refund.status, "stripe": remote.status})
    return refund


def spread(units: int, lefts: dict[int, int]) -> dict[int, int]:
    """`units` over lines that have `lefts[pos]` units each left, in proportion (largest
    remainders, then the first of equal ones, take the units rounding leaves over). Never
    more than a line has left when `units` ≤ their sum."""
    whole = sum(lefts.values())
    if units > whole:
        raise ValueError(f"{units} units over {whole}")
    if units == 0:
        return {}
    shares = {pos: divmod(units * n, whole) for pos, n in lefts.items()}
    spare = units - sum(q for q, _ in shares.values())
    extra = set(sorted(shares, key=lambda pos: (-shares[pos][1], pos))[:spare])
    spread_ = {pos: q + (1 if pos in extra else 0) for pos, (q, _) in shares.items()}
    return {pos: n for pos, n in spread_.items() if n > 0}


def refund_note_lines(*, invoice: Invoice, amount: Decimal) -> dict[int, Decimal]:
    """How a refund's credit note spreads its amount over the invoice's charge lines:
    proportionally to what each has left to credit (so a refund reduces each charge and its
    tax alike), in whole minor units (`spread`). Read under the invoice's lock."""
    places = exponent(invoice.currency)
    lefts = {pos: int(x.scaleb(places)) for pos, (_, x) in credit_room(invoice=invoice).lines.items() if x > 0}
    units = int(amount.scaleb(places))
    if units > sum(lefts.values()):
        raise Conflict(f"{invoice.number} has less than {amount} left to credit.", code="refund_exceeds_paid")
    return {pos: Decimal(n).scaleb(-places) for pos, n in spread(units, lefts).items()}


def _correct_books(*, refund: Refund, invoice: Invoice, now: datetime) -> CreditNote:
    return credit_note_issue(
        invoice_id=invoice.pk,
        lines=refund_note_lines(invoice=invoice, amount=refund.amount),
        reason=f"refund {refund.pk}: {refund.reason}",
        actor=refund.requested_by,
        settlement=CreditNote.Settlement.REFUND,
        now=now,
    )


def refunds_sync_apply(*, remotes: list[providers.RemoteRefund], now: datetime | None = None) -> list[Refund]:
    """refund_sync_apply for each refund of a charge (charge.refunded): ours, applied."""
    applied = (refund_sync_apply(remote=remote, now=now) for remote in remotes)
    return [refund for refund in applied if refund is not None]


# ---------------------------------------------------------------- reading
@dataclass(frozen=True)
class RefundTotals:
    """An invoice's money, reconciled: `paid` (its total, once paid) = `refunded` (refunds
    succeeded) + what stays paid; `refunded` = `credited_by_refund` (credit notes settled by
    refund) always; `in_flight` is reserved by refunds not settled yet; `refundable` is
    what a new refund may still take."""

    currency: str
    paid: Decimal
    refunded: Decimal
    in_flight: Decimal
    credited_by_refund: Decimal
    credited_as_credit: Decimal
    refundable: Decimal


def refund_totals(*, invoice: Invoice) -> RefundTotals:
    """One invoice's refunds and credit notes, summed (a consistent read wants the invoice's
    lock or a single snapshot; the console reads it as a figure)."""

    def total(rows: QuerySet[Any], field: str = "amount") -> Decimal:
        return rows.aggregate(s=Sum(field))["s"] or Decimal(0)

    notes = invoice.credit_notes.all()
    return RefundTotals(
        currency=invoice.currency,
        paid=invoice.total if invoice.status == Invoice.Status.PAID else Decimal(0),
        refunded=total(invoice.refunds.filter(status=S.SUCCEEDED)),
        in_flight=total(invoice.refunds.filter(status__in=PENDING)),
        credited_by_refund=total(notes.filter(settlement=CreditNote.Settlement.REFUND), "total"),
        credited_as_credit=total(notes.filter(settlement=CreditNote.Settlement.CREDIT), "total"),
        refundable=refundable(invoice=invoice),
    )


def refunds_awaiting_submission(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Requested refunds left unsubmitted for 5 minutes: their task was lost, a process died
    mid-call (its lease has run out), or Stripe was unreachable and the back-off has passed.
    Never one blocked or backing off (billing_project.work)."""
    now = now or timezone.now()
    due = (
        Refund.objects.filter(status=S.REQUESTED, created_at__lte=now - timedelta(minutes=5))
        .filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lte=now))
        .exclude(work_held(job=jobs.REFUND_SUBMIT, now=now))
    )
    return list(due.order_by("created_at").values_list("pk", flat=True)[:limit])
