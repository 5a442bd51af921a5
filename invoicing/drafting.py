"""Drafting: the lines of an invoice, read from billing periods, and the draft that holds them.

A subscription's periods are records (subscriptions.BillingPeriod). A paid period's
usage is billed in arrears, by the invoice that closes it, priced by the plan version
of that period alone (a plan change mid-period splits the period, so each version
prices only its own usage). A period's base fee is billed in advance when it starts,
unless proration already covers it. Proration items wait for the next invoice; late
usage of earlier periods is billed by difference. Every amount travels as Money, and
a draft refuses a line in another currency than its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Min, Sum

from billing_project.money import CurrencyMismatch, Money, exponent, format_decimal, round_line
from plans.models import BillableMetric, PlanVersion
from plans.pricing import Charge, ChargePrice, price
from plans.selectors import plan_spec_from_version, versions_with_terms
from subscriptions.models import BillingPeriod, ProrationItem, Subscription, Tenant
from usage.ingestion import detached_until
from usage.models import UsageEvent
from usage.selectors import usage_over

from .models import Invoice, InvoiceLine


@dataclass
class DraftLine:
    kind: str
    description: str
    amount: Money
    metric: str = ""
    quantity: Decimal | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    proration_item: ProrationItem | None = None
    billing_period: BillingPeriod | None = None


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


def _version(period: BillingPeriod) -> PlanVersion:
    return versions_with_terms(PlanVersion.objects.filter(pk=period.plan_version_id)).get()


def _priced_usage(
    *, period: BillingPeriod, version: PlanVersion, charge: Charge, metric: BillableMetric
) -> tuple[ChargePrice, dict[str, Any]]:
    used = usage_over(tenant_id=period.subscription.tenant_id, metric=metric, start=period.start, end=period.end)
    priced = price(charge, used or Decimal(0), period.currency)
    explanation = {
        "metric": metric.code,
        "aggregation": metric.aggregation,
        "model": charge.model,
        "plan": version.plan.code,
        "plan_version": version.version,
        "plan_version_id": version.pk,
        "billing_period_id": period.pk,
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "quantity": format_decimal(used or Decimal(0)),
        "unit_price": format_decimal(charge.unit_price) if charge.unit_price is not None else None,
        "packages": format_decimal(priced.packages) if priced.packages is not None else None,
        **(
            {
                "package_size": format_decimal(charge.package_size) if charge.package_size is not None else None,
                "package_price": format_decimal(charge.package_price) if charge.package_price is not None else None,
                "free_units": format_decimal(charge.free_units),
            }
            if charge.model == "package"
            else {}
        ),
        "tiers": _tiers(priced),
        "unrounded_amount": format_decimal(priced.raw_amount),
        "events": events_behind(
            tenant_id=period.subscription.tenant_id, metric=metric, start=period.start, end=period.end
        ),
    }
    return priced, explanation


def _charges(version: PlanVersion) -> list[tuple[Charge, BillableMetric]]:
    charges = plan_spec_from_version(version).charges
    metrics = {m.code: m for m in BillableMetric.objects.filter(code__in=[c.metric for c in charges])}
    return [(charge, metrics[charge.metric]) for charge in charges]


def usage_lines(period: BillingPeriod) -> list[DraftLine]:
    """A closed paid period's usage, one line per charge of its own plan version."""
    version = _version(period)
    lines = []
    for charge, metric in _charges(version):
        priced, explanation = _priced_usage(period=period, version=version, charge=charge, metric=metric)
        lines.append(
            DraftLine(
                kind=InvoiceLine.Kind.USAGE,
                description=(
                    f"{charge.metric} ({charge.model.replace('_', ' ')}, {version.plan.name}), "
                    f"{_day(period.start)} – {_day(period.end)}"
                ),
                amount=Money(priced.amount, period.currency),
                metric=charge.metric,
                quantity=priced.quantity,
                period_start=period.start,
                period_end=period.end,
                explanation=explanation,
                billing_period=period,
            )
        )
    return lines


def base_fee_line(period: BillingPeriod) -> DraftLine:
    version = _version(period)
    interval = "monthly" if version.interval == "month" else "yearly"
    return DraftLine(
        kind=InvoiceLine.Kind.BASE_FEE,
        description=f"{version.plan.name} base fee ({interval}), {_day(period.start)} – {_day(period.planned_end)}",
        amount=Money(round_line(version.base_fee, period.currency), period.currency),
        quantity=Decimal(1),
        period_start=period.start,
        period_end=period.planned_end,
        explanation={
            "plan": version.plan.code,
            "plan_version": version.version,
            "billing_period_id": period.pk,
            "in_advance": True,
        },
        billing_period=period,
    )


def proration_lines(sub: Subscription, upto: datetime) -> list[DraftLine]:
    """Proration items of plan changes made by `upto` and not billed yet (locked: one
    invoice takes each)."""
    items = ProrationItem.objects.select_for_update(of=("self",)).filter(subscription=sub, invoiced_at__isnull=True)
    return [
        DraftLine(
            kind=InvoiceLine.Kind.PRORATION,
            description=item.description,
            amount=Money(round_line(item.amount, item.currency), item.currency),
            quantity=Decimal(1),
            period_start=item.period_start,
            period_end=item.period_end,
            explanation={"unrounded_amount": format_decimal(item.amount), "plan_change_event": item.event_id},
            proration_item=item,
        )
        for item in items.filter(event__at__lte=upto).order_by("created_at", "id")
    ]


def late_usage_lines(sub: Subscription, now: datetime) -> list[DraftLine]:
    """Usage that arrived after an invoice billed its period: the difference between the
    period's price now and what its lines already billed, as a line of its own.

    Every billed paid period that may hold such usage (see `since`) is priced again by its
    own plan version and compared by amount, rather than looking for events received after
    some instant: an event whose transaction was still open when the period was counted has
    an earlier `received_at` and would be missed. Voided invoices count as billed: voiding
    is a decision about collection, not a reason to bill the same usage again. Drafts count
    too: with Stripe Tax one may still wait for its tax, and its lines are billed."""
    # Ingestion accepts an event whose occurred_at is within the window of the instant it
    # arrives, so anything that arrived since this subscription's previous invoice was
    # drafted lies in a period ending after (that draft − the window). Counting from the
    # previous draft, not from now, keeps a yearly plan's last period in view a year on;
    # the hour covers ingest transactions that began before that draft.
    previous = Invoice.objects.filter(subscription=sub).aggregate(at=Max("created_at"))["at"]
    since = min(now, previous - timedelta(hours=1)) if previous is not None else now
    since -= timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)
    billed_periods = BillingPeriod.objects.filter(
        subscription=sub, kind=BillingPeriod.Kind.PAID, closed=True, end__gte=since, invoice__isnull=False
    ).select_related("subscription")
    detached = detached_until(now)
    if detached is not None:
        # a period reaching into a month whose events were detached (archived) cannot be
        # priced again: without them it would credit back what was rightly billed. Detaching
        # waited until it was past re-pricing; a window widened since does not bring it back.
        billed_periods = billed_periods.exclude(start__lt=detached)
    lines = []
    for period in billed_periods.order_by("start", "id"):
        version = _version(period)
        billed = InvoiceLine.objects.filter(
            billing_period=period, kind__in=(InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE)
        ).select_related("invoice")
        by_metric: dict[str, list[InvoiceLine]] = {}
        for line in billed:
            by_metric.setdefault(line.metric, []).append(line)
        for charge, metric in _charges(version):
            priced, explanation = _priced_usage(period=period, version=version, charge=charge, metric=metric)
            group = by_metric.get(charge.metric, [])
            already = sum((line.amount for line in group), Decimal(0))
            if priced.amount == already:
                continue
            last = max(group, key=lambda line: (line.invoice_id, line.position), default=None)
            explanation["already_billed"] = {
                "quantity": format_decimal((last.quantity or Decimal(0)) if last else Decimal(0)),
                "amount": format_decimal(already, exponent(period.currency)),
                "invoices": sorted({line.invoice.number or "" for line in group}),
            }
            lines.append(
                DraftLine(
                    kind=InvoiceLine.Kind.LATE_USAGE,
                    description=f"Late usage: {charge.metric}, {_day(period.start)} – {_day(period.end)}",
                    amount=Money(priced.amount - already, period.currency),
                    metric=charge.metric,
                    quantity=priced.quantity,
                    period_start=period.start,
                    period_end=period.end,
                    explanation=explanation,
                    billing_period=period,
                )
            )
    return lines


def write_lines(invoice: Invoice, lines: list[DraftLine], first_position: int = 1) -> None:
    """The lines onto a draft, each in the invoice's currency or none at all."""
    strangers = sorted({x.amount.currency for x in lines if x.amount.currency != invoice.currency})
    if strangers:
        raise CurrencyMismatch(f"lines in {', '.join(strangers)} on an invoice in {invoice.currency}")
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=first_position + i,
                kind=line.kind,
                description=line.description[:300],
                metric=line.metric,
                quantity=line.quantity,
                amount=line.amount.amount,
                currency=line.amount.currency,
                period_start=line.period_start,
                period_end=line.period_end,
                explanation=line.explanation,
                proration_item=line.proration_item,
                billing_period=line.billing_period,
            )
            for i, line in enumerate(lines)
        ]
    )


def draft_create(
    *,
    tenant: Tenant,
    sub: Subscription,
    currency: str,
    lines: list[DraftLine],
    start: datetime,
    end: datetime,
    period: BillingPeriod | None,
    now: datetime,
) -> Invoice:
    """A draft with its lines; the proration items it bills are marked invoiced."""
    invoice = Invoice.objects.create(
        tenant=tenant,
        subscription=sub,
        period=period,
        currency=currency,
        series=settings.INVOICE_SERIES,
        period_start=start,
        period_end=end,
    )
    write_lines(invoice, lines)
    ProrationItem.objects.filter(pk__in=[x.proration_item.pk for x in lines if x.proration_item]).update(
        invoiced_at=now
    )
    return invoice


def charges_of(invoice: Invoice) -> Money:
    """The sum of a draft's lines, in its currency (a stray line's currency is refused)."""
    rows = invoice.lines.values("currency").annotate(s=Sum("amount"))
    result = Money(Decimal(0), invoice.currency)
    for row in rows:
        result = result + Money(row["s"], row["currency"])
    return result
