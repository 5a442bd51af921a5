"""The billing view of a tenant (API.md): its subscription, usage so far this period with
its cost to date, credit balance and last invoices. Composed here, at the top layer,
because it reads subscriptions, usage and prices together."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing_project.errors import NotFound
from billing_project.money import exponent, format_decimal, round_line
from plans.models import BillableMetric, PlanVersion
from plans.pricing import price
from plans.selectors import plan_spec_from_version, versions_with_terms
from subscriptions.models import LIVE_STATUSES, Tenant
from subscriptions.selectors import billing_state, latest_subscription
from usage.selectors import usage_over

from .documents import invoice_summary
from .ledger import credit_balance
from .models import Invoice

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
    base = Decimal(0) if in_trial else round_line(version.base_fee, currency)
    view["usage"] = lines
    view["cost_to_date"] = {
        "currency": currency,
        "base_fee": format_decimal(base, places),
        "usage": format_decimal(usage_total, places),
        "total": format_decimal(base + usage_total, places),
        "in_trial": in_trial,
        "as_of": end,
    }
    return view
