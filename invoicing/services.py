"""Invoice services: close a period into an invoice, finalize it, and move its
collection status. Each public function is one business action in one transaction.

One invoice per billable period boundary (subscriptions records them as
SubscriptionEvents with `data.bill`): usage of the period that closed, in arrears,
priced by the plan version that held it at its end; the base fee of the period that
opened, in advance; pending proration; late usage of earlier periods; then credit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from billing_project.errors import Conflict, InvalidRequest
from billing_project.money import exponent, format_decimal, round_line
from plans.models import BillableMetric, PlanVersion
from plans.pricing import ChargePrice, price
from plans.selectors import plan_spec_from_version, versions_with_terms
from subscriptions.models import ProrationItem, Subscription, SubscriptionEvent, Tenant
from subscriptions.services import subscription_apply, subscription_recover_after_payment
from usage.models import UsageEvent
from usage.selectors import usage_over

from .ledger import credit_apply, credit_from_invoice, credit_restore, next_invoice_number
from .models import CreditNote, CreditNoteLine, Invoice, InvoiceLine

logger = logging.getLogger(__name__)
SYSTEM = "system"


@dataclass
class _Line:
    kind: str
    description: str
    amount: Decimal
    metric: str = ""
    quantity: Decimal | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    proration_item: ProrationItem | None = None


def _period(doc: dict[str, Any]) -> tuple[datetime, datetime, PlanVersion]:
    version = versions_with_terms(PlanVersion.objects.filter(pk=doc["plan_version"])).get()
    return datetime.fromisoformat(doc["start"]), datetime.fromisoformat(doc["end"]), version


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _tiers(priced: ChargePrice) -> list[dict[str, str | None]]:
    return [
        {
            "from": format_decimal(t.from_),
            "to": format_decimal(t.to) if t.to is not None else None,
            "quantity": format_decimal(t.quantity),
            "unit_price": format_decimal(t.unit_price),
            "flat_fee": format_decimal(t.flat_fee),
            "amount": format_decimal(t.amount),
        }
        for t in priced.tiers
    ]


def events_behind(*, tenant_id: int, metric: BillableMetric, start: datetime, end: datetime) -> dict[str, Any]:
    """The usage events behind a usage line: how many, the first and last, and where to list them."""
    row = UsageEvent.objects.filter(tenant_id=tenant_id, metric=metric, occurred_at__gte=start, occurred_at__lt=end)
    stats = row.aggregate(count=Count("id"), first=Min("occurred_at"), last=Max("occurred_at"))
    named = row.exclude(correlation_id="").values_list("correlation_id", flat=True)
    correlations = list(named.distinct().order_by("correlation_id")[:20])
    return {
        "count": stats["count"],
        "first_at": stats["first"].isoformat() if stats["first"] else None,
        "last_at": stats["last"].isoformat() if stats["last"] else None,
        "correlation_ids": correlations,
        "list_url": "/admin/usage/usageevent/?"
        + urlencode(
            {
                "tenant__id__exact": tenant_id,
                "metric__id__exact": metric.pk,
                "occurred_at__gte": start.isoformat(),
                "occurred_at__lt": end.isoformat(),
            }
        ),
    }


def _usage_line(
    *, tenant: Tenant, version: PlanVersion, charge: Any, metric: BillableMetric, start: datetime, end: datetime
) -> tuple[ChargePrice, dict[str, Any]]:
    used = usage_over(tenant_id=tenant.pk, metric=metric, start=start, end=end) or Decimal(0)
    priced = price(charge, used, version.currency)
    explanation = {
        "metric": metric.code,
        "aggregation": metric.aggregation,
        "model": charge.model,
        "plan": version.plan.code,
        "plan_version": version.version,
        "plan_version_id": version.pk,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "quantity": format_decimal(used),
        "unit_price": format_decimal(charge.unit_price) if charge.unit_price is not None else None,
        "packages": format_decimal(priced.packages) if priced.packages is not None else None,
        "tiers": _tiers(priced),
        "unrounded_amount": format_decimal(priced.raw_amount),
        "events": events_behind(tenant_id=tenant.pk, metric=metric, start=start, end=end),
    }
    return priced, explanation


def _usage_lines(tenant: Tenant, closed: dict[str, Any]) -> list[_Line]:
    start, end, version = _period(closed)
    terms = plan_spec_from_version(version)
    metrics = {m.code: m for m in BillableMetric.objects.filter(code__in=[c.metric for c in terms.charges])}
    lines = []
    for charge in terms.charges:
        priced, explanation = _usage_line(
            tenant=tenant, version=version, charge=charge, metric=metrics[charge.metric], start=start, end=end
        )
        lines.append(
            _Line(
                kind=InvoiceLine.Kind.USAGE,
                description=f"{charge.metric} ({charge.model.replace('_', ' ')}), {_day(start)} – {_day(end)}",
                amount=priced.amount,
                metric=charge.metric,
                quantity=priced.quantity,
                period_start=start,
                period_end=end,
                explanation=explanation,
            )
        )
    return lines


def _late_lines(sub: Subscription, tenant: Tenant, now: datetime) -> list[_Line]:
    """Usage that arrived after an earlier invoice billed its period: the difference between
    the period's price now and what its invoices already billed, as its own line.

    Every usage period that ended within LATE_USAGE_WINDOW_DAYS is priced again and compared
    by amount, rather than looking for events received after some instant: an event whose
    transaction was still open when the period was counted has an earlier `received_at`
    and would be missed. Voided invoices count as billed: voiding is a decision about
    collection, not a reason to bill the same usage again."""
    billed: dict[tuple[str, datetime, datetime], list[InvoiceLine]] = {}
    earlier = InvoiceLine.objects.filter(
        invoice__subscription=sub,
        # drafts too: with Stripe Tax one may still wait for its tax, and its lines are billed
        invoice__status__in=("draft", "open", "paid", "uncollectible", "void"),
        kind__in=(InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE),
        period_end__gte=now - timedelta(days=settings.LATE_USAGE_WINDOW_DAYS),
    ).select_related("invoice")
    for line in earlier:
        if line.period_start is not None and line.period_end is not None:  # usage lines always have one
            billed.setdefault((line.metric, line.period_start, line.period_end), []).append(line)
    lines = []
    for (code, start, end), group in sorted(billed.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        metric = BillableMetric.objects.get(code=code)
        version_id = group[0].explanation["plan_version_id"]
        version = versions_with_terms(PlanVersion.objects.filter(pk=version_id)).get()
        charge = next(c for c in plan_spec_from_version(version).charges if c.metric == code)
        priced, explanation = _usage_line(
            tenant=tenant, version=version, charge=charge, metric=metric, start=start, end=end
        )
        already = sum((line.amount for line in group), Decimal(0))
        if priced.amount == already:
            continue
        last = max(group, key=lambda line: (line.invoice_id, line.position))  # the latest billed quantity
        billed_quantity = last.quantity or Decimal(0)
        explanation["already_billed"] = {
            "quantity": format_decimal(billed_quantity),
            "amount": format_decimal(already, exponent(version.currency)),
            "invoices": sorted({line.invoice.number or "" for line in group}),
        }
        lines.append(
            _Line(
                kind=InvoiceLine.Kind.LATE_USAGE,
                description=f"Late usage: {code}, {_day(start)} – {_day(end)}",
                amount=priced.amount - already,
                metric=code,
                quantity=priced.quantity,
                period_start=start,
                period_end=end,
                explanation=explanation,
            )
        )
    return lines


def _base_fee_line(opened: dict[str, Any]) -> _Line:
    start, end, version = _period(opened)
    interval = "monthly" if version.interval == "month" else "yearly"
    return _Line(
        kind=InvoiceLine.Kind.BASE_FEE,
        description=f"{version.plan.name} base fee ({interval}), {_day(start)} – {_day(end)}",
        amount=round_line(version.base_fee, version.currency),
        quantity=Decimal(1),
        period_start=start,
        period_end=end,
        explanation={"plan": version.plan.code, "plan_version": version.version, "in_advance": True},
    )


def _proration_lines(sub: Subscription, upto: datetime) -> list[_Line]:
    items = ProrationItem.objects.select_for_update(of=("self",)).filter(subscription=sub, invoiced_at__isnull=True)
    return [
        _Line(
            kind=InvoiceLine.Kind.PRORATION,
            description=item.description,
            amount=round_line(item.amount, item.currency),
            quantity=Decimal(1),
            period_start=item.period_start,
            period_end=item.period_end,
            explanation={"unrounded_amount": format_decimal(item.amount), "plan_change_event": item.event_id},
            proration_item=item,
        )
        # only plan changes made by the boundary: a later one belongs to a later invoice
        for item in items.filter(event__at__lte=upto).order_by("created_at", "id")
    ]


def _write_lines(invoice: Invoice, lines: list[_Line], first_position: int = 1) -> None:
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=first_position + i,
                kind=line.kind,
                description=line.description[:300],
                metric=line.metric,
                quantity=line.quantity,
                amount=line.amount,
                period_start=line.period_start,
                period_end=line.period_end,
                explanation=line.explanation,
                proration_item=line.proration_item,
            )
            for i, line in enumerate(lines)
        ]
    )


def _draft(event: SubscriptionEvent, now: datetime) -> Invoice:
    sub = event.subscription
    tenant = sub.tenant
    closed, opened = event.data.get("closed"), event.data.get("opened")
    lines: list[_Line] = []
    if closed and closed["paid"]:
        lines += _usage_lines(tenant, closed)
    if opened and opened["paid"]:
        lines.append(_base_fee_line(opened))
    lines += _proration_lines(sub, event.at)
    lines += _late_lines(sub, tenant, now)
    doc = closed or opened
    assert doc is not None  # noqa: S101 - billable boundaries have a period
    currency = _period(doc)[2].currency
    invoice = Invoice.objects.create(
        tenant=tenant,
        subscription=sub,
        boundary=event,
        currency=currency,
        series=settings.INVOICE_SERIES,
        period_start=datetime.fromisoformat(doc["start"]),
        period_end=datetime.fromisoformat(doc["end"]),
    )
    _write_lines(invoice, lines)
    ProrationItem.objects.filter(pk__in=[x.proration_item.pk for x in lines if x.proration_item]).update(
        invoiced_at=now
    )
    return invoice


def _seller() -> dict[str, str]:
    return dict(settings.INVOICE_SELLER)


def _buyer(tenant: Tenant) -> dict[str, str]:
    return {
        "name": tenant.name,
        "email": tenant.billing_email,
        "country": tenant.country,
        "reference": tenant.external_id,
    }


def _settle_credit(invoice: Invoice) -> None:
    """Credit on a draft, once, before tax: a negative balance of charges is carried to the
    ledger (an invoice never totals below zero), then the tenant's credit is applied up to
    what is left. Done before a draft goes to Stripe, so Stripe taxes what is charged."""
    charges = sum(invoice.lines.values_list("amount", flat=True), Decimal(0))
    position = invoice.lines.count() + 1
    if charges < 0:
        carried = -charges
        _write_lines(
            invoice,
            [_Line(kind=InvoiceLine.Kind.CREDIT, description="Carried to the credit balance", amount=carried)],
            position,
        )
        position += 1
        charges = Decimal(0)
        credit_from_invoice(
            invoice=invoice, amount=carried, reason="proration credit beyond the invoice's charges", actor=SYSTEM
        )
    applied = credit_apply(invoice=invoice, up_to=charges, actor=SYSTEM)
    if applied:
        _write_lines(
            invoice,
            [_Line(kind=InvoiceLine.Kind.CREDIT, description="Credit applied", amount=-applied)],
            position,
        )


def _finalize(invoice: Invoice, *, now: datetime, tax_lines: list[_Line] | None = None) -> Invoice:
    """Tax lines (from Stripe Tax, when enabled), totals and the next number, all in the
    caller's transaction: a finalized invoice never changes again. Credit was settled on
    the draft (_settle_credit)."""
    lines = list(invoice.lines.order_by("position"))
    if tax_lines:
        _write_lines(invoice, tax_lines, len(lines) + 1)
        invoice.tax_status = Invoice.Tax.CALCULATED
    applied = -sum((x.amount for x in lines if x.kind == InvoiceLine.Kind.CREDIT and x.amount < 0), Decimal(0))
    subtotal = sum((x.amount for x in lines), Decimal(0)) + applied  # charges, and any carried balance
    tax = sum((line.amount for line in tax_lines or []), Decimal(0))
    invoice.subtotal, invoice.tax, invoice.credit_applied = subtotal, tax, applied
    invoice.total = subtotal + tax - applied
    invoice.number = next_invoice_number(series=invoice.series, year=now.year)
    invoice.status = Invoice.Status.PAID if invoice.total == 0 else Invoice.Status.OPEN
    invoice.finalized_at = now
    invoice.due_at = now + timedelta(days=settings.INVOICE_DUE_DAYS)
    if invoice.total == 0:
        invoice.paid_at = now  # nothing to collect
    invoice.seller, invoice.buyer = _seller(), _buyer(invoice.tenant)
    invoice.save()
    return invoice


def boundaries_due(*, now: datetime, limit: int) -> list[int]:
    """Billable boundaries past the grace window for late events, not invoiced yet."""
    cutoff = now - timedelta(minutes=settings.INVOICE_GRACE_MINUTES)
    return list(
        SubscriptionEvent.objects.filter(data__bill=True, at__lte=cutoff, invoice__isnull=True)
        .order_by("at", "id")
        .values_list("pk", flat=True)[:limit]
    )


@transaction.atomic
def invoice_close_boundary(*, event_id: int, now: datetime | None = None) -> Invoice | None:
    """Draft the invoice of one period boundary and, without Stripe Tax, finalize it.
    Returns None when another run got there first (the boundary row lock and the
    one-invoice-per-boundary constraint make a rerun a no-op)."""
    now = now or timezone.now()
    # Locks the boundary only: concurrent closes of it queue here; the subscription stays free.
    event = (
        SubscriptionEvent.objects.select_for_update(of=("self",))
        .select_related("subscription__tenant")
        .get(pk=event_id)
    )
    if Invoice.objects.filter(boundary=event).exists():
        return None
    # The tenant next, before any row pointing at it is written: every close and credit
    # application takes the same locks in the same order, so concurrent ones queue, never deadlock.
    Tenant.objects.select_for_update().get(pk=event.subscription.tenant_id)
    return _issue(_draft(event, now), now)


def collect_after_commit(invoice_id: int) -> None:
    """Queue collection at Stripe once the invoice is committed. A lost send is picked
    up by the sweeper (invoices_awaiting_collection)."""
    if not settings.STRIPE_COLLECTION_ENABLED:
        return
    from .tasks import collect_invoice  # the tasks module imports this one

    def send() -> None:
        try:
            collect_invoice.delay(invoice_id)
        except Exception:
            logger.exception("invoicing.collect_enqueue_failed", extra={"invoice_id": invoice_id})

    transaction.on_commit(send)


def invoices_awaiting_collection(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Invoices Stripe should hold but does not yet, left for at least 10 minutes: their
    collection task was lost or has given up. The beat sweeper queues them again."""
    now = now or timezone.now()
    pending = Invoice.objects.filter(stripe_number="", created_at__lte=now - timedelta(minutes=10)).filter(
        # every draft the services made (all have a subscription) waits for Stripe's tax
        Q(status=Invoice.Status.OPEN, total__gt=0) | Q(status=Invoice.Status.DRAFT, subscription__isnull=False)
    )
    return list(pending.order_by("created_at").values_list("pk", flat=True)[:limit])


def invoices_close_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """The beat job: one transaction per boundary, so one failure does not hold back the rest."""
    now = now or timezone.now()
    made, failed = 0, []
    for event_id in boundaries_due(now=now, limit=limit):
        try:
            made += invoice_close_boundary(event_id=event_id, now=now) is not None
        except Exception:
            logger.exception("invoicing.close_failed", extra={"event_id": event_id})
            failed.append(event_id)
    if failed:  # the task retries, and records a failure once its retries are spent
        raise RuntimeError(f"period close failed for boundary events {failed}")
    return made


def _issue(invoice: Invoice, now: datetime) -> Invoice:
    """Credit, then finalize now, or, with Stripe Tax, leave the draft for the collection
    task to have taxed; queue collection when something is due."""
    _settle_credit(invoice)
    taxed_at_stripe = settings.STRIPE_TAX_ENABLED and settings.STRIPE_COLLECTION_ENABLED
    if not taxed_at_stripe or sum(invoice.lines.values_list("amount", flat=True), Decimal(0)) == 0:
        invoice = _finalize(invoice, now=now)  # nothing charged: no tax to ask Stripe for
    if invoice.status == Invoice.Status.DRAFT or invoice.total > 0:
        collect_after_commit(invoice.pk)
    return invoice


def late_usage_due(*, now: datetime) -> list[int]:
    """Subscriptions that ended within LATE_USAGE_WINDOW_DAYS and received usage after their
    last invoice was drafted: no boundary is left to carry it, so it gets its own invoice.
    (A pre-filter only; the invoice compares prices. The hour of margin covers ingest
    transactions that started before the draft and committed after it.)"""
    since = now - timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)
    ended = Subscription.objects.filter(status__in=("canceled", "ended"), ended_at__gte=since).annotate(
        last_drafted=Max("invoices__created_at")
    )
    due = []
    # every subscription ended within the window is looked at (one EXISTS each): a limit
    # before the filter could leave some never checked
    for sub_id, tenant_id, last in ended.order_by("ended_at").values_list("pk", "tenant_id", "last_drafted"):
        if (
            last is not None
            and UsageEvent.objects.filter(tenant_id=tenant_id, received_at__gt=last - timedelta(hours=1)).exists()
        ):
            due.append(sub_id)
    return due


@transaction.atomic
def invoice_late_usage(*, subscription_id: int, now: datetime | None = None) -> Invoice | None:
    """An invoice of late usage alone, for a subscription that has ended (a live one bills
    it on its next boundary invoice). None when there is nothing to bill, so reruns are
    no-ops: the comparison is with what earlier invoices billed."""
    now = now or timezone.now()
    sub = Subscription.objects.get(pk=subscription_id)
    tenant = Tenant.objects.select_for_update().get(pk=sub.tenant_id)  # the close's lock order
    if sub.status not in ("canceled", "ended"):
        return None
    if SubscriptionEvent.objects.filter(subscription=sub, data__bill=True, invoice__isnull=True).exists():
        return None  # its last boundary is not invoiced yet: that invoice will carry it
    lines = [x for x in _late_lines(sub, tenant, now) if x.amount != 0]
    if not lines:
        return None
    invoice = Invoice.objects.create(
        tenant=tenant,
        subscription=sub,
        currency=tenant.currency,
        series=settings.INVOICE_SERIES,
        period_start=min(x.period_start for x in lines if x.period_start),
        period_end=max(x.period_end for x in lines if x.period_end),
    )
    _write_lines(invoice, lines)
    return _issue(invoice, now)


def invoices_late_usage_due(*, now: datetime | None = None) -> int:
    """The beat job: late usage of ended subscriptions, one transaction each."""
    now = now or timezone.now()
    return sum(invoice_late_usage(subscription_id=pk, now=now) is not None for pk in late_usage_due(now=now))


@transaction.atomic
def invoice_finalize(*, invoice_id: int, now: datetime | None = None) -> Invoice:
    """Finalize a draft made by hand as it stands (no tax lines): credit, totals, the next number."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        return invoice
    Tenant.objects.select_for_update().get(pk=invoice.tenant_id)
    if not invoice.credits.exists():
        _settle_credit(invoice)
    return _finalize(invoice, now=now or timezone.now())


@transaction.atomic
def invoice_finalize_with_tax(
    *, invoice_id: int, tax: list[tuple[str, Decimal]], now: datetime | None = None
) -> Invoice:
    """Finalize a draft with the tax Stripe computed for it (description, amount)."""
    now = now or timezone.now()
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        return invoice
    lines = [_Line(kind=InvoiceLine.Kind.TAX, description=d, amount=round_line(a, invoice.currency)) for d, a in tax]
    return _finalize(invoice, now=now, tax_lines=lines)


# ------------------------------------------------------------------ collection status
def _locked(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice_id)  # join-free: see subscriptions._live_locked


@transaction.atomic
def invoice_mark_paid(*, invoice_id: int, at: datetime | None = None, actor: str = SYSTEM) -> Invoice:
    """Paid (at Stripe, or by staff): the subscription recovers if it was past due."""
    invoice = _locked(invoice_id)
    if invoice.status == Invoice.Status.PAID:
        return invoice
    if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        raise Conflict(f"A {invoice.status} invoice cannot be paid.", code="invoice_not_payable")
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


def payment_retries_due(*, now: datetime, limit: int = 500) -> list[int]:
    return list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, next_payment_retry_at__lte=now)
        .exclude(stripe_invoice_id=None)
        .order_by("next_payment_retry_at")
        .values_list("pk", flat=True)[:limit]
    )


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
    if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        raise Conflict(f"A {invoice.status} invoice cannot be voided.", code="invoice_not_voidable")
    invoice.status, invoice.voided_at = Invoice.Status.VOID, at or timezone.now()
    invoice.save(update_fields=["status", "voided_at"])
    credit_restore(invoice=invoice, actor=actor)
    logger.info("invoicing.voided", extra={"number": invoice.number, "reason": reason, "actor": actor})
    return invoice


@transaction.atomic
def invoice_mark_uncollectible(*, invoice_id: int, actor: str, at: datetime | None = None) -> Invoice:
    invoice = _locked(invoice_id)
    if invoice.status == Invoice.Status.OPEN:
        invoice.status, invoice.uncollectible_at = Invoice.Status.UNCOLLECTIBLE, at or timezone.now()
        invoice.save(update_fields=["status", "uncollectible_at"])
    return invoice


# ------------------------------------------------------------------ corrections
CREDITABLE = (
    InvoiceLine.Kind.BASE_FEE,
    InvoiceLine.Kind.USAGE,
    InvoiceLine.Kind.PRORATION,
    InvoiceLine.Kind.LATE_USAGE,
    InvoiceLine.Kind.TAX,
)


@transaction.atomic
def credit_note_issue(
    *,
    invoice_id: int,
    reason: str,
    actor: str,
    lines: dict[int, Decimal] | None = None,
    now: datetime | None = None,
) -> CreditNote:
    """Correct a paid invoice with a credit note: `lines` maps a line's position to the
    amount credited on it (all that is left when omitted). The amount goes to the tenant's
    credit balance. Neither a line nor the invoice is ever credited beyond what it charged
    (its subtotal and tax: negative lines such as proration count), however many notes and
    however concurrent (the invoice row lock serialises them). An unpaid invoice is voided
    instead, so a note never gives credit for money that was not paid."""
    now = now or timezone.now()
    if not reason.strip():
        raise InvalidRequest("Say why the invoice is corrected.", code="validation_error")
    invoice = _locked(invoice_id)  # then the tenant (the ledger): the same order as voiding
    if invoice.status != Invoice.Status.PAID:
        raise Conflict(
            f"A {invoice.status} invoice takes no credit note (an unpaid one is voided).",
            code="invoice_not_creditable",
        )
    Tenant.objects.select_for_update().get(pk=invoice.tenant_id)
    credited = dict(
        CreditNoteLine.objects.filter(invoice_line__invoice=invoice)
        .values("invoice_line_id")
        .annotate(s=Sum("amount"))
        .values_list("invoice_line_id", "s")
    )
    charge_lines = {x.position: x for x in invoice.lines.filter(kind__in=CREDITABLE, amount__gt=0)}
    # what the invoice charged in all (negative lines included) less what notes gave back
    invoice_left = invoice.subtotal + invoice.tax - sum(credited.values(), Decimal(0))
    if lines is not None:
        wanted = lines
    else:  # everything left, line by line, until the invoice's own limit
        wanted, budget = {}, invoice_left
        for pos, x in sorted(charge_lines.items()):
            take = min(x.amount - credited.get(x.pk, Decimal(0)), budget)
            wanted[pos], budget = take, budget - max(take, Decimal(0))
    note_lines = []
    for position, amount in sorted(wanted.items()):
        line = charge_lines.get(position)
        if line is None:
            raise InvalidRequest(f"Line {position} is not a charge of {invoice.number}.", code="validation_error")
        left = line.amount - credited.get(line.pk, Decimal(0))
        if amount <= 0 and lines is None:
            continue
        if amount <= 0 or amount > left or round_line(amount, invoice.currency) != amount:
            raise InvalidRequest(
                f"Line {position} can be credited up to {left} {invoice.currency}, in whole minor units.",
                code="invalid_amount",
                details={"line": position, "amount": str(amount), "creditable": str(left)},
            )
        note_lines.append((line, amount))
    if not note_lines:
        raise Conflict(f"{invoice.number} has nothing left to credit.", code="invoice_not_creditable")
    total = sum((amount for _, amount in note_lines), Decimal(0))
    if total > invoice_left:
        raise InvalidRequest(
            f"{invoice.number} can be credited up to {invoice_left} {invoice.currency} in all.",
            code="invalid_amount",
            details={"amount": str(total), "creditable": str(invoice_left)},
        )
    note = CreditNote.objects.create(
        invoice=invoice,
        tenant_id=invoice.tenant_id,
        number=next_invoice_number(series=settings.CREDIT_NOTE_SERIES, year=now.year),
        currency=invoice.currency,
        total=total,
        reason=reason.strip(),
        actor=actor,
    )
    CreditNoteLine.objects.bulk_create(
        [
            CreditNoteLine(credit_note=note, invoice_line=line, description=line.description, amount=amount)
            for line, amount in note_lines
        ]
    )
    credit_from_invoice(invoice=invoice, amount=total, reason=f"credit note {note.number}: {note.reason}", actor=actor)
    return note
