"""The billing view of a tenant (API.md): its subscription, usage so far this period with
its cost to date, credit balance and last invoices. Composed here, at the top layer,
because it reads subscriptions, usage and prices together."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from billing_project.errors import NotFound
from billing_project.money import exponent, format_decimal, round_line
from plans.models import BillableMetric, PlanVersion
from plans.pricing import price
from plans.selectors import plan_spec_from_version, versions_with_terms
from subscriptions.models import LIVE_STATUSES, BillingPeriod, Subscription, Tenant
from subscriptions.selectors import billing_state, latest_subscription
from usage.models import UsageEvent
from usage.selectors import usage_over

from .documents import invoice_summary
from .ledger import credit_balance
from .models import Invoice, InvoiceLine

FINALIZED = ("open", "paid", "void", "uncollectible")


def invoices_of(tenant: Tenant, *, limit: int = 100) -> list[Invoice]:
    """A tenant's finalized invoices, newest first (drafts are not issued yet)."""
    return list(Invoice.objects.filter(tenant=tenant, status__in=FINALIZED).order_by("-finalized_at", "-id")[:limit])


def invoice_by_number(number: str) -> Invoice:
    invoice = Invoice.objects.select_related("tenant").filter(number=number).first()
    if invoice is None:
        raise NotFound(f"No invoice {number!r}.", code="not_found")
    return invoice


def invoice_owner(number: str) -> str | None:
    """The external id of the tenant an invoice number belongs to (the tenant-binding rule)."""
    return Invoice.objects.filter(number=number).values_list("tenant__external_id", flat=True).first()


def billing_view(tenant: Tenant, *, now: datetime) -> dict[str, Any]:
    view = billing_state(tenant)
    view["credit_balance"] = format_decimal(
        credit_balance(tenant=tenant, currency=tenant.currency), exponent(tenant.currency)
    )
    view["invoices"] = [invoice_summary(i) for i in invoices_of(tenant, limit=5)]
    sub = latest_subscription(tenant)
    if sub is None or sub.status not in LIVE_STATUSES:
        view["cost_to_date"] = None
        return view
    version = versions_with_terms(PlanVersion.objects.filter(pk=sub.plan_version_id)).get()
    terms = plan_spec_from_version(version)
    currency, places = version.currency, exponent(version.currency)
    end = min(now, sub.current_period_end)
    metrics = {m.code: m for m in BillableMetric.objects.filter(code__in=[c.metric for c in terms.charges])}
    lines, usage_total = [], Decimal(0)
    in_trial = sub.status == "trialing"  # a trial is free: usage is shown, not charged
    for charge in terms.charges:
        used = usage_over(
            tenant_id=tenant.pk, metric=metrics[charge.metric], start=sub.current_period_start, end=end
        ) or Decimal(0)
        cost = Decimal(0) if in_trial else price(charge, used, currency).amount
        usage_total += cost
        lines.append(
            {
                "metric": charge.metric,
                "model": charge.model,
                "quantity": format_decimal(used),
                "cost_to_date": format_decimal(cost, places),
            }
        )
    # The base fee is billed in advance by the invoice of the boundary that opened the period
    # (once its grace has passed), usage in arrears when the period closes.
    fee_lines: list[InvoiceLine] = []
    base = Decimal(0)
    if not in_trial:
        fee_lines = list(
            InvoiceLine.objects.filter(
                invoice__subscription=sub,
                invoice__status__in=FINALIZED,  # voided counts: nothing bills it again
                kind=InvoiceLine.Kind.BASE_FEE,
                period_start=sub.current_period_start,
            )
            .select_related("invoice")
            .order_by("invoice__finalized_at", "pk")
        )
        billed = sum((line.amount for line in fee_lines), Decimal(0))
        base = billed if fee_lines else round_line(version.base_fee, currency)
    invoiced = base if fee_lines else Decimal(0)
    view["usage"] = lines
    view["cost_to_date"] = {
        "currency": currency,
        "base_fee": format_decimal(base, places),
        "usage": format_decimal(usage_total, places),
        "total": format_decimal(base + usage_total, places),
        "invoiced": format_decimal(invoiced, places),  # of the total: already on an issued invoice
        "to_come": format_decimal(base + usage_total - invoiced, places),  # of the total: still to invoice
        "lines": [
            {
                "kind": "base_fee",
                "amount": format_decimal(base, places),
                "invoiced": bool(fee_lines),
                "invoices": [line.invoice.number for line in fee_lines],
            },
            {"kind": "usage", "amount": format_decimal(usage_total, places), "invoiced": False, "invoices": []},
        ],
        "in_trial": in_trial,
        "as_of": end,
    }
    return view


# ------------------------------------------------------------------ what the beat jobs have due
def periods_to_invoice(sub: Subscription, *, cutoff: datetime) -> list[BillingPeriod]:
    """A subscription's closed paid periods that ended by `cutoff` and no invoice bills yet,
    oldest first. A period closed at its start is empty and bills nothing."""
    return list(
        BillingPeriod.objects.filter(
            subscription=sub,
            kind=BillingPeriod.Kind.PAID,
            closed=True,
            end__lte=cutoff,
            end__gt=F("start"),
            invoice__isnull=True,
        )
        .select_related("subscription")
        .order_by("end", "id")
    )


def subscriptions_to_invoice(*, cutoff: datetime, limit: int) -> list[int]:
    """Subscriptions with a closed paid period to invoice, or a base fee due, by `cutoff`."""
    unbilled = BillingPeriod.objects.filter(
        kind=BillingPeriod.Kind.PAID, closed=True, end__lte=cutoff, end__gt=F("start"), invoice__isnull=True
    )
    fee_billed = InvoiceLine.objects.filter(billing_period=OuterRef("pk"), kind=InvoiceLine.Kind.BASE_FEE)
    fee_due = BillingPeriod.objects.filter(fee_in_advance=True, start__lte=cutoff).exclude(Exists(fee_billed))
    due = Subscription.objects.filter(
        Exists(unbilled.filter(subscription=OuterRef("pk"))) | Exists(fee_due.filter(subscription=OuterRef("pk")))
    )
    return list(due.order_by("pk").values_list("pk", flat=True)[:limit])


def late_usage_due(*, now: datetime) -> list[int]:
    """Subscriptions that ended within LATE_USAGE_WINDOW_DAYS and received usage after their
    last invoice was drafted: no period is left to carry it, so it gets its own invoice.
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


def payment_retries_due(*, now: datetime, limit: int = 500) -> list[int]:
    """Open invoices at Stripe whose next dunning retry is due."""
    return list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, next_payment_retry_at__lte=now)
        .exclude(stripe_invoice_id=None)
        .order_by("next_payment_retry_at")
        .values_list("pk", flat=True)[:limit]
    )


def invoices_awaiting_collection(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Invoices Stripe should hold but does not yet, left for at least 10 minutes: their
    collection task was lost or has given up. The beat sweeper queues them again."""
    now = now or timezone.now()
    pending = Invoice.objects.filter(stripe_number="", created_at__lte=now - timedelta(minutes=10)).filter(
        # every draft the services made (all have a subscription) waits for Stripe's tax
        Q(status=Invoice.Status.OPEN, total__gt=0) | Q(status=Invoice.Status.DRAFT, subscription__isnull=False)
    )
    return list(pending.order_by("created_at").values_list("pk", flat=True)[:limit])
