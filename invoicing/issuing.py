"""Issuing: close billing periods into invoices, settle credit, finalize with the next number.

The period close works per subscription, under its tenant's row lock (the lock order of
subscriptions.locks), with one invoice per instant where a paid period closed or one
opened, past the grace window for late events: the usage of the period that closed, in
arrears; the base fee of the one that opened, in advance; the proration of plan changes
made by then; late usage of earlier periods. Reruns and concurrent closes find the
periods billed (one invoice per period, one fee line per period, both unique in the
database) and do nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_project.dry_run import dry_run
from billing_project.errors import Conflict
from billing_project.money import CurrencyMismatch, Money, round_line
from billing_project.redis_client import get_redis, rkey
from billing_project.work import Item, work_attempt
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import BillingPeriod, Subscription, Tenant
from subscriptions.selectors import live_subscription
from subscriptions.services import subscription_roll

from . import jobs, selectors
from .documents import invoice_document
from .drafting import (
    DraftLine,
    base_fee_line,
    charges_of,
    draft_create,
    late_usage_lines,
    proration_lines,
    usage_lines,
    write_lines,
)
from .ledger import credit_apply, credit_from_invoice, next_invoice_number
from .models import Invoice, InvoiceLine
from .pdf import invoice_document_issue

logger = logging.getLogger(__name__)
SYSTEM = "system"


# ------------------------------------------------------------------ credit and finalization
def _seller() -> dict[str, str]:
    return dict(settings.INVOICE_SELLER)


def _buyer(invoice: Invoice) -> dict[str, str]:
    tenant = invoice.tenant
    return {
        "name": tenant.name,
        "address": tenant.address,
        "country": tenant.country,
        "tax_id": tenant.tax_id,
        "email": tenant.billing_email,
        "reference": tenant.external_id,
    }


def _settle_credit(invoice: Invoice) -> None:
    """Credit on a draft, once, before tax: a negative balance of charges is carried to the
    ledger (an invoice never totals below zero), then the tenant's credit is applied up to
    what is left. Done before a draft goes to Stripe, so Stripe taxes what is charged."""
    charges = charges_of(invoice)
    position = invoice.lines.count() + 1
    if charges.amount < 0:
        carried = -charges
        write_lines(
            invoice,
            [DraftLine(kind=InvoiceLine.Kind.CREDIT, description="Carried to the credit balance", amount=carried)],
            position,
        )
        position += 1
        charges = Money(Decimal(0), invoice.currency)
        credit_from_invoice(
            invoice=invoice, amount=carried, reason="proration credit beyond the invoice's charges", actor=SYSTEM
        )
    applied = credit_apply(invoice=invoice, up_to=charges, actor=SYSTEM)
    if applied.amount:
        write_lines(
            invoice,
            [DraftLine(kind=InvoiceLine.Kind.CREDIT, description="Credit applied", amount=-applied)],
            position,
        )


def _finalize(invoice: Invoice, *, now: datetime, tax_lines: list[DraftLine] | None = None) -> Invoice:
    """Tax lines (from Stripe Tax, when enabled), totals and the next number, all in the
    caller's transaction: a finalized invoice never changes again. Credit was settled on
    the draft (_settle_credit). Every line must be in the invoice's currency."""
    lines = list(invoice.lines.order_by("position"))
    strangers = sorted({x.currency for x in lines if x.currency != invoice.currency})
    if strangers:
        raise CurrencyMismatch(f"invoice {invoice.pk} in {invoice.currency} holds lines in {', '.join(strangers)}")
    if tax_lines:
        write_lines(invoice, tax_lines, len(lines) + 1)
        invoice.tax_status = Invoice.Tax.CALCULATED
    applied = -sum((x.amount for x in lines if x.kind == InvoiceLine.Kind.CREDIT and x.amount < 0), Decimal(0))
    subtotal = sum((x.amount for x in lines), Decimal(0)) + applied  # charges, and any carried balance
    tax = sum((line.amount.amount for line in tax_lines or []), Decimal(0))
    invoice.subtotal, invoice.tax, invoice.credit_applied = subtotal, tax, applied
    invoice.total = subtotal + tax - applied
    invoice.number = next_invoice_number(series=invoice.series, year=now.year)
    invoice.status = Invoice.Status.PAID if invoice.total == 0 else Invoice.Status.OPEN
    invoice.finalized_at = now
    invoice.due_at = now + timedelta(days=settings.INVOICE_DUE_DAYS)
    if invoice.total == 0:
        invoice.paid_at = now  # nothing to collect
    invoice.seller, invoice.buyer = _seller(), _buyer(invoice)
    invoice.save()
    invoice_document_issue(invoice)  # its PDF, once, as it is now
    return invoice


def _issue(invoice: Invoice, now: datetime) -> Invoice:
    """Credit, then finalize now, or, with Stripe Tax, leave the draft for the collection
    task to have taxed; queue collection when something is due."""
    _settle_credit(invoice)
    taxed_at_stripe = settings.STRIPE_TAX_ENABLED and settings.STRIPE_COLLECTION_ENABLED
    if not taxed_at_stripe or charges_of(invoice).amount == 0:
        invoice = _finalize(invoice, now=now)  # nothing charged: no tax to ask Stripe for
    if invoice.status == Invoice.Status.DRAFT or invoice.total > 0:
        jobs.collect_after_commit(invoice.pk)
    return invoice


# ------------------------------------------------------------------ the period close
def _boundary_invoice(
    sub: Subscription, closed: BillingPeriod | None, opened: list[BillingPeriod], at: datetime, now: datetime
) -> Invoice:
    """The invoice of one instant of a subscription's history: the usage of the period that
    closed then, in arrears; the base fee of the period that opened then, in advance; the
    proration of plan changes made by then; late usage of earlier periods."""
    lines = usage_lines(closed) if closed is not None else []
    lines += [base_fee_line(p) for p in opened]
    lines += proration_lines(sub, at)
    lines += late_usage_lines(sub, now)
    invoice = draft_create(
        tenant=sub.tenant,
        sub=sub,
        currency=closed.currency if closed is not None else opened[0].currency,
        lines=lines,
        start=closed.start if closed is not None else opened[0].start,
        end=closed.end if closed is not None else opened[0].planned_end,
        period=closed,
        now=now,
    )
    return _issue(invoice, now)


@transaction.atomic
def invoice_close_periods(*, subscription_id: int, now: datetime | None = None, final: bool = False) -> list[Invoice]:
    """Invoice what a subscription has due past the grace window: each closed paid period's
    usage and each base fee in advance, one invoice per instant where a period closed or
    opened. Returns the invoices made; none when another run got there first. `final`
    waits for no late events (an erasure's last invoice, made while the buyer is known)."""
    now = now or timezone.now()
    sub = Subscription.objects.select_related("tenant").get(pk=subscription_id)
    tenant_select_for_update(tenant_id=sub.tenant_id)  # first: concurrent closes queue here
    cutoff = now if final else now - timedelta(minutes=settings.INVOICE_GRACE_MINUTES)
    closing = {p.end: p for p in selectors.periods_to_invoice(sub, cutoff=cutoff)}
    opening: dict[datetime, list[BillingPeriod]] = {}
    for period in selectors.fees_due(sub, upto=cutoff):
        opening.setdefault(period.start, []).append(period)
    # one invoice per instant, in order, as if the close had run at each (a late run
    # makes the same invoices as punctual ones would have)
    return [
        _boundary_invoice(sub, closing.get(at), opening.get(at, []), at, now)
        for at in sorted(closing.keys() | opening.keys())
    ]


def _subscription(job: str, subscription_id: int) -> Item:
    def subject() -> str:
        tenant = Subscription.objects.filter(pk=subscription_id).values_list("tenant__external_id", flat=True).first()
        return f"subscription {subscription_id} of {tenant}"

    return Item(job=job, object_id=subscription_id, subject=subject)


def invoices_close_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Close every subscription due, here, one after the other (up to `limit`): what one
    chunk of the fan-out does, and what a test or a command runs at once."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.INVOICE_GRACE_MINUTES)
    return invoices_close_chunk(
        subscription_ids=selectors.subscriptions_to_invoice(cutoff=cutoff, limit=limit, now=now), now=now
    )


def invoices_close_chunk(*, subscription_ids: list[int], now: datetime) -> int:
    """One transaction per subscription, so one failure does not hold back the rest. A
    subscription whose close fails is counted and backed off, or blocked when a retry
    cannot help (a currency mismatch), and left out until it is due again or staff retry it
    (billing_project.work): not retried on every run for ever. Each close is idempotent
    (under the tenant's lock, what is invoiced already is not again), so a chunk run twice,
    or two chunks that share a subscription, bill nothing twice. How many invoices."""
    made = 0
    for sub_id in subscription_ids:
        invoices = work_attempt(
            _subscription(jobs.CLOSE, sub_id),
            partial(invoice_close_periods, subscription_id=sub_id, now=now),
            permanent=jobs.PERMANENT,
            now=now,
        )
        made += len(invoices or [])
    return made


def _claimed(subscription_ids: list[int], now: datetime) -> list[int]:
    """Those of `subscription_ids` no earlier run queued within INVOICE_CLOSE_CLAIM_SECONDS
    (a claim each in Redis, taken here). Redis out of reach: all of them, since closing
    twice bills nothing twice; the claims only spare the work."""
    ttl = settings.INVOICE_CLOSE_CLAIM_SECONDS
    try:
        pipe = get_redis().pipeline(transaction=False)
        for sub_id in subscription_ids:
            pipe.set(rkey("close-claim", sub_id), now.isoformat(), nx=True, ex=ttl)
        taken = pipe.execute()
    except redis.RedisError:
        logger.warning("invoicing.close_claims_unavailable", exc_info=True)
        return subscription_ids
    return [sub_id for sub_id, ok in zip(subscription_ids, taken, strict=True) if ok]


def invoices_close_fan_out(*, now: datetime | None = None, limit: int = 1_000_000) -> tuple[int, int]:
    """The beat job: every subscription due, in chunks of INVOICE_CLOSE_CHUNK. The first
    chunk is closed here; the others are queued as close_period_chunk tasks that any number
    of workers run side by side (each subscription under its own tenant's lock). Those a
    run before queued and no worker has closed yet are not queued again (`_claimed`); past
    the claim, a chunk lost with its worker is queued again. (invoices made here, chunks
    queued)."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.INVOICE_GRACE_MINUTES)
    due = _claimed(selectors.subscriptions_to_invoice(cutoff=cutoff, limit=limit, now=now), now)
    size = settings.INVOICE_CLOSE_CHUNK
    chunks = [due[i : i + size] for i in range(0, len(due), size)]
    for chunk in chunks[1:]:
        jobs.close_chunk_send(chunk, now)
    if not chunks:
        return 0, 0
    return invoices_close_chunk(subscription_ids=chunks[0], now=now), len(chunks) - 1


# ------------------------------------------------------------------ late usage of ended subscriptions
@transaction.atomic
def invoice_late_usage(*, subscription_id: int, now: datetime | None = None) -> Invoice | None:
    """An invoice of late usage alone, for a subscription that has ended (a live one bills
    it on its next invoice). In the currency of the periods it re-prices, never the
    tenant's current one. None when there is nothing to bill, so reruns are no-ops: the
    comparison is with what earlier invoices billed."""
    now = now or timezone.now()
    sub = Subscription.objects.select_related("tenant").get(pk=subscription_id)
    tenant_select_for_update(tenant_id=sub.tenant_id)  # the close's lock order
    if sub.status not in ("canceled", "ended"):
        return None
    if selectors.periods_to_invoice(sub, cutoff=now):
        return None  # its last period is not invoiced yet: that invoice will carry it
    lines = [x for x in late_usage_lines(sub, now) if x.amount.amount != 0]
    if not lines:
        return None
    currencies = {x.amount.currency for x in lines}
    if len(currencies) > 1:  # one subscription's periods share its tenant's locked currency
        raise CurrencyMismatch(f"late usage of subscription {sub.pk} in {sorted(currencies)}")
    invoice = draft_create(
        tenant=sub.tenant,
        sub=sub,
        currency=lines[0].amount.currency,
        lines=lines,
        start=min(x.period_start for x in lines if x.period_start),
        end=max(x.period_end for x in lines if x.period_end),
        period=None,
        now=now,
    )
    return _issue(invoice, now)


def invoices_late_usage_due(*, now: datetime | None = None) -> int:
    """The beat job: late usage of ended subscriptions, one transaction each, each failure
    counted as the close counts its own."""
    now = now or timezone.now()
    made = 0
    for sub_id in selectors.late_usage_due(now=now):
        invoice = work_attempt(
            _subscription(jobs.LATE_USAGE, sub_id),
            partial(invoice_late_usage, subscription_id=sub_id, now=now),
            permanent=jobs.PERMANENT,
            now=now,
        )
        made += invoice is not None
    return made


# ------------------------------------------------------------------ drafts made by hand, and tax
@transaction.atomic
def invoice_finalize(*, invoice_id: int, now: datetime | None = None) -> Invoice:
    """Finalize a draft made by hand as it stands (no tax lines): credit, totals, the next number."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        return invoice
    tenant_select_for_update(tenant_id=invoice.tenant_id)
    if not invoice.credits.exists():
        _settle_credit(invoice)
    return _finalize(invoice, now=now or timezone.now())


def _tax_lines(invoice: Invoice, tax: list[tuple[str, Decimal]]) -> list[DraftLine]:
    return [
        DraftLine(
            kind=InvoiceLine.Kind.TAX,
            description=d,
            amount=Money(round_line(a, invoice.currency), invoice.currency),
        )
        for d, a in tax
    ]


def invoice_total_with_tax(*, invoice_id: int, tax: list[tuple[str, Decimal]]) -> Decimal:
    """What a draft would total once finalized with this tax (Stripe's), without finalizing
    it: its lines (credit included) plus the tax, each rounded as finalization rounds them.
    Compared with Stripe's total before either invoice is frozen."""
    invoice = Invoice.objects.get(pk=invoice_id)
    lines = sum((x.amount for x in invoice.lines.all()), Decimal(0))
    return lines + sum((x.amount.amount for x in _tax_lines(invoice, tax)), Decimal(0))


@transaction.atomic
def invoice_finalize_with_tax(
    *, invoice_id: int, tax: list[tuple[str, Decimal]], expect_total: Decimal | None = None, now: datetime | None = None
) -> Invoice:
    """Finalize a draft with the tax Stripe computed for it (description, amount). With
    `expect_total` (Stripe's total), a draft that would total anything else is left a
    draft: Conflict, and nothing is written."""
    now = now or timezone.now()
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        return invoice
    invoice = _finalize(invoice, now=now, tax_lines=_tax_lines(invoice, tax))
    if expect_total is not None and invoice.total != expect_total:
        # the draft changed since it was compared: roll the finalization back whole
        raise Conflict(
            f"draft invoice {invoice.pk} would total {invoice.total}, Stripe's {expect_total}",
            code="stripe_total_mismatch",
        )
    return invoice


def invoice_upcoming(*, tenant: Tenant) -> dict[str, Any] | None:
    """The next invoice as it stands: the live subscription's current period closed at its
    end, by the very code of the period close (roll, draft, credit, finalize), inside a
    transaction that is always rolled back. Nothing is written, no number is taken, nothing
    is queued (work deferred to a rolled-back block's commit never runs). None without a
    live subscription."""
    sub = live_subscription(tenant)
    if sub is None:
        return None
    boundary = sub.current_period_end
    grace = timedelta(minutes=settings.INVOICE_GRACE_MINUTES)

    def close_now() -> dict[str, Any] | None:
        subscription_roll(subscription_id=sub.pk, at=boundary)
        made = invoice_close_periods(subscription_id=sub.pk, now=boundary + grace)
        return invoice_document(made[-1]) if made else None

    document = dry_run(close_now)
    if document is None:
        return None
    not_yet = {"number": None, "finalized_at": None, "due_at": None, "paid_at": None}
    return {**document, **not_yet, "status": "upcoming", "as_of": boundary}
