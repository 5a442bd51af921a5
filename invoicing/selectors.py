"""The billing view of a tenant (API.md): its subscription, usage so far this period with
its cost to date, credit balance and last invoices. Composed here, at the top layer,
because it reads subscriptions, usage and prices together."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, Max, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing_project.errors import NotFound
from billing_project.money import CurrencyMismatch, exponent, format_decimal, round_line
from billing_project.work import work_held
from entitlements.services import entitlements_list
from plans.models import BillableMetric, PlanVersion
from plans.pricing import price
from plans.selectors import plan_spec_from_version, versions_with_terms
from subscriptions.models import LIVE_STATUSES, BillingPeriod, ProrationItem, Subscription, Tenant
from subscriptions.selectors import billing_state, latest_subscription
from usage.models import UsageEvent
from usage.selectors import usage_over

from . import jobs
from .documents import explanation_rows, invoice_summary, line_document
from .ledger import credit_balance, credit_balances
from .models import CreditNote, Invoice, InvoiceLine

FINALIZED = ("open", "paid", "void", "uncollectible")


def invoices_of(tenant: Tenant, *, limit: int = 100) -> list[Invoice]:
    """A tenant's finalized invoices, newest first (drafts are not issued yet)."""
    return list(Invoice.objects.filter(tenant=tenant, status__in=FINALIZED).order_by("-finalized_at", "-id")[:limit])


# What invoice_document reads of an invoice beyond its row: fetched together, not per line.
DOCUMENT_RELATIONS = ("lines", "credit_notes__lines__invoice_line")


def invoice_by_number(number: str, *, document: bool = False) -> Invoice:
    """The invoice numbered `number`; with `document`, what its document reads too."""
    found = Invoice.objects.select_related("tenant").filter(number=number)
    invoice = (found.prefetch_related(*DOCUMENT_RELATIONS) if document else found).first()
    if invoice is None:
        raise NotFound(f"No invoice {number!r}.", code="not_found")
    return invoice


def invoice_owner(number: str) -> str | None:
    """The external id of the tenant an invoice number belongs to (the tenant-binding rule)."""
    return Invoice.objects.filter(number=number).values_list("tenant__external_id", flat=True).first()


def credit_note_owner(number: str) -> str | None:
    return CreditNote.objects.filter(number=number).values_list("tenant__external_id", flat=True).first()


def billing_view(tenant: Tenant, *, now: datetime) -> dict[str, Any]:
    view = billing_state(tenant)
    # in the currency the subscription bills in (a credit in another currency applies to nothing of it)
    sub = latest_subscription(tenant)
    currency = sub.plan_version.currency if sub is not None else tenant.currency
    view["credit_balance"] = format_decimal(credit_balance(tenant=tenant, currency=currency), exponent(currency))
    view["credit_balances"] = {
        code: format_decimal(amount, exponent(code)) for code, amount in sorted(credit_balances(tenant=tenant).items())
    }
    view["invoices"] = [invoice_summary(i) for i in invoices_of(tenant, limit=5)]
    if sub is None or sub.status not in LIVE_STATUSES:
        view["cost_to_date"] = None
        return view
    view["usage"], view["cost_to_date"] = _cost_to_date(sub, now=now)
    return view


def _cost_to_date(sub: Subscription, *, now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The current cycle's cost so far, from its billing periods: each period's usage priced
    by its own plan version (a change now split the cycle), the base fees of the periods
    that bill one in advance, and proration of plan changes. Each part is either already on
    an issued invoice or still to come."""
    currency, places = sub.plan_version.currency, exponent(sub.plan_version.currency)
    end = min(now, sub.current_period_end)
    in_trial = sub.status == "trialing"  # a trial is free: usage is shown, not charged
    periods = list(
        BillingPeriod.objects.filter(subscription=sub, start__gte=sub.current_period_start, start__lt=end)
        .select_related("invoice")
        .order_by("start", "id")
    ) or list(BillingPeriod.objects.filter(subscription=sub, closed=False))
    usage: dict[str, dict[str, Any]] = {}
    usage_cost = {True: Decimal(0), False: Decimal(0)}  # invoiced or not
    usage_invoices: list[str] = []
    for period in periods:
        if period.currency != currency:  # a cycle's periods share one currency; never add two
            raise CurrencyMismatch(f"period {period.pk} bills in {period.currency}, the cycle in {currency}")
        version = versions_with_terms(PlanVersion.objects.filter(pk=period.plan_version_id)).get()
        charges = plan_spec_from_version(version).charges
        metrics = {m.code: m for m in BillableMetric.objects.filter(code__in=[c.metric for c in charges])}
        invoice = getattr(period, "invoice", None) if period.closed else None
        if invoice is not None and invoice.number:
            usage_invoices.append(invoice.number)
        for charge in charges:
            used = usage_over(
                tenant_id=sub.tenant_id, metric=metrics[charge.metric], start=period.start, end=min(period.end, end)
            ) or Decimal(0)
            cost = (
                Decimal(0) if period.kind == BillingPeriod.Kind.TRIAL else price(charge, used, period.currency).amount
            )
            usage_cost[invoice is not None] += cost
            entry = usage.setdefault(
                charge.metric, {"metric": charge.metric, "model": charge.model, "cost": Decimal(0)}
            )
            entry["model"], entry["cost"] = charge.model, entry["cost"] + cost
    lines = []
    for code, entry in usage.items():  # usage so far in the cycle, whatever version priced it
        metric = BillableMetric.objects.get(code=code)
        used = usage_over(tenant_id=sub.tenant_id, metric=metric, start=sub.current_period_start, end=end) or Decimal(0)
        lines.append(
            {
                "metric": code,
                "model": entry["model"],
                "quantity": format_decimal(used),
                "cost_to_date": format_decimal(entry["cost"], places),
            }
        )
    # Base fees: billed in advance by the invoice of the instant their period opened (once
    # its grace has passed); voided counts as invoiced, since nothing bills it again.
    fee_lines: list[InvoiceLine] = []
    fee_due = Decimal(0)
    for period in periods:
        if not period.fee_in_advance:
            continue
        billed = list(
            InvoiceLine.objects.filter(
                billing_period=period, kind=InvoiceLine.Kind.BASE_FEE, invoice__status__in=FINALIZED
            )
            .select_related("invoice")
            .order_by("invoice__finalized_at", "pk")
        )
        if billed:
            fee_lines += billed
        else:
            fee_due += round_line(PlanVersion.objects.get(pk=period.plan_version_id).base_fee, period.currency)
    fee_invoiced = sum((line.amount for line in fee_lines), Decimal(0))
    prorations = list(ProrationItem.objects.filter(subscription=sub, event__at__gte=sub.current_period_start))
    proration = {
        invoiced: sum(
            (round_line(x.amount, x.currency) for x in prorations if (x.invoiced_at is not None) == invoiced),
            Decimal(0),
        )
        for invoiced in (True, False)
    }
    base = fee_invoiced + fee_due
    usage_total = usage_cost[True] + usage_cost[False]
    total = base + usage_total + proration[True] + proration[False]
    invoiced = fee_invoiced + usage_cost[True] + proration[True]
    parts = [
        {
            "kind": "base_fee",
            "amount": format_decimal(base, places),
            "invoiced": fee_due == 0 and bool(fee_lines),
            "invoices": [line.invoice.number for line in fee_lines],
        },
        {
            "kind": "usage",
            "amount": format_decimal(usage_total, places),
            "invoiced": usage_cost[False] == 0 and bool(usage_invoices),
            "invoices": usage_invoices,
        },
    ]
    if prorations:
        parts.append(
            {
                "kind": "proration",
                "amount": format_decimal(proration[True] + proration[False], places),
                "invoiced": all(x.invoiced_at is not None for x in prorations),
                "invoices": [],
            }
        )
    return lines, {
        "currency": currency,
        "base_fee": format_decimal(base, places),
        "usage": format_decimal(usage_total, places),
        "total": format_decimal(total, places),
        "invoiced": format_decimal(invoiced, places),  # of the total: already on an issued invoice
        "to_come": format_decimal(total - invoiced, places),  # of the total: still to invoice
        "lines": parts,
        "in_trial": in_trial,
        "as_of": end,
    }


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


def subscriptions_to_invoice(*, cutoff: datetime, limit: int, now: datetime) -> list[int]:
    """Subscriptions with a closed paid period to invoice, or a base fee due, by `cutoff`;
    not those whose close is blocked or backing off at `now` (billing_project.work)."""
    unbilled = BillingPeriod.objects.filter(
        kind=BillingPeriod.Kind.PAID, closed=True, end__lte=cutoff, end__gt=F("start"), invoice__isnull=True
    )
    fee_billed = InvoiceLine.objects.filter(billing_period=OuterRef("pk"), kind=InvoiceLine.Kind.BASE_FEE)
    fee_due = BillingPeriod.objects.filter(fee_in_advance=True, start__lte=cutoff).exclude(Exists(fee_billed))
    due = Subscription.objects.filter(
        Exists(unbilled.filter(subscription=OuterRef("pk"))) | Exists(fee_due.filter(subscription=OuterRef("pk")))
    ).exclude(work_held(job=jobs.CLOSE, now=now))
    return list(due.order_by("pk").values_list("pk", flat=True)[:limit])


def fees_due(sub: Subscription, *, upto: datetime) -> list[BillingPeriod]:
    """Paid periods started by `upto` whose base fee is billed in advance and not yet."""
    fee_billed = InvoiceLine.objects.filter(billing_period=OuterRef("pk"), kind=InvoiceLine.Kind.BASE_FEE)
    return list(
        BillingPeriod.objects.filter(subscription=sub, fee_in_advance=True, start__lte=upto)
        .exclude(Exists(fee_billed))
        .order_by("start", "id")
    )


def late_usage_due(*, now: datetime) -> list[int]:
    """Subscriptions that ended within LATE_USAGE_WINDOW_DAYS and received usage after their
    last invoice was drafted: no period is left to carry it, so it gets its own invoice.
    (A pre-filter only; the invoice compares prices. The hour of margin covers ingest
    transactions that started before the draft and committed after it.) Both instants are
    on the database's clock: usage's received_at, and the draft's drafted_at (invoices
    drafted before it was kept fall back to created_at, the service's clock)."""
    since = now - timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)
    ended = (
        Subscription.objects.filter(status__in=("canceled", "ended"), ended_at__gte=since)
        .exclude(work_held(job=jobs.LATE_USAGE, now=now))
        # an erased tenant's usage was invoiced to its erasure; an event that raced it is not
        # billed to a buyer no invoice may name (README, Privacy and compliance)
        .exclude(tenant__erased_at__isnull=False)
        .annotate(last_drafted=Max(Coalesce("invoices__drafted_at", "invoices__created_at")))
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
    """Open invoices at Stripe whose next dunning retry is due (and not blocked or backing off)."""
    return list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, next_payment_retry_at__lte=now)
        .exclude(stripe_invoice_id=None)
        .exclude(work_held(job=jobs.PAYMENT_RETRY, now=now))
        .order_by("next_payment_retry_at")
        .values_list("pk", flat=True)[:limit]
    )


def invoices_awaiting_collection(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Invoices Stripe should hold but does not yet, left for at least 10 minutes: their
    collection task was lost or failed. The beat sweeper queues them again, except those
    blocked (Stripe refused them, or totals disagree) or backing off after a failure."""
    now = now or timezone.now()
    pending = (
        Invoice.objects.filter(stripe_number="", created_at__lte=now - timedelta(minutes=10))
        .filter(
            # every draft the services made (all have a subscription) waits for Stripe's tax
            Q(status=Invoice.Status.OPEN, total__gt=0) | Q(status=Invoice.Status.DRAFT, subscription__isnull=False)
        )
        .exclude(work_held(job=jobs.COLLECT, now=now))
    )
    return list(pending.order_by("created_at").values_list("pk", flat=True)[:limit])


# ------------------------------------------------------------------ answers an assistant can quote
def invoice_explanation(invoice: Invoice) -> dict[str, Any]:
    """Each line of a finalized invoice and how its amount was reached, structured: what was
    measured, which price and tier, which events (the same explanation the document prints)."""
    currency = invoice.currency
    lines = []
    for line in invoice.lines.order_by("position"):
        document = line_document(line, currency)
        explanation = dict(line.explanation or {})
        lines.append(
            {
                **{k: document[k] for k in ("position", "kind", "description", "metric", "quantity", "amount")},
                "period": {"start": line.period_start, "end": line.period_end},
                "measured": (
                    {"metric": explanation.get("metric"), "aggregation": explanation.get("aggregation")}
                    if explanation.get("metric")
                    else None
                ),
                "price": (
                    {
                        "model": explanation.get("model"),
                        "plan": explanation.get("plan"),
                        "plan_version": explanation.get("plan_version"),
                        "unit_price": explanation.get("unit_price"),
                        "tiers": explanation.get("tiers") or [],
                    }
                    if explanation.get("model")
                    else None
                ),
                "events": explanation.get("events"),
                "already_billed": explanation.get("already_billed"),
                "unrounded_amount": explanation.get("unrounded_amount"),
                # the same arithmetic the document prints, row by row, adding up to the amount
                "worked": explanation_rows(explanation, line.amount, currency),
            }
        )
    places = exponent(currency)
    return {
        "number": invoice.number,
        "tenant": invoice.tenant.external_id,
        "status": invoice.status,
        "currency": currency,
        "period": {"start": invoice.period_start, "end": invoice.period_end},
        "subtotal": format_decimal(invoice.subtotal, places),
        "credit_applied": format_decimal(invoice.credit_applied, places),
        "tax": format_decimal(invoice.tax, places),
        "total": format_decimal(invoice.total, places),
        "lines": lines,
    }


def billing_summary(tenant: Tenant, *, now: datetime) -> dict[str, Any]:
    """One answer to "where does this tenant stand": plan and period, usage against its
    limits, cost to date, credit balance, open invoices, and what the period's end brings."""
    view = billing_view(tenant, now=now)
    sub = view.get("subscription")
    limits = entitlements_list(tenant=tenant.external_id)["entitlements"]
    open_invoices = [
        invoice_summary(i)
        for i in Invoice.objects.filter(tenant=tenant, status__in=(Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE))
        .exclude(number=None)
        .order_by("due_at", "pk")
    ]
    at_period_end: dict[str, Any] | None = None
    if sub is not None and sub.get("status") in LIVE_STATUSES:
        pending = sub.get("pending_change")
        if pending and pending.get("cancel"):
            at_period_end = {"what": "cancels", "at": pending["effective_at"]}
        elif pending:
            at_period_end = {"what": "changes_plan", "plan": pending["plan"], "at": pending["effective_at"]}
        elif sub.get("status") == "trialing" and sub.get("trial_end"):
            at_period_end = {"what": "trial_ends", "plan": sub["plan"], "at": sub["trial_end"]}
        else:
            at_period_end = {"what": "renews", "plan": sub["plan"], "at": sub["current_period"]["end"]}
    return {
        "tenant": tenant.external_id,
        "name": tenant.name,
        "currency": view["currency"],
        "as_of": now,
        "subscription": sub,
        "usage": view.get("usage") or [],
        "limits": [
            {k: e.get(k) for k in ("feature", "allowed", "reason", "used", "limit", "remaining")} for e in limits
        ],
        "cost_to_date": view.get("cost_to_date"),
        "credit_balance": view.get("credit_balance"),
        "credit_balances": view.get("credit_balances"),
        "open_invoices": open_invoices,
        "amount_due": {
            currency: format_decimal(sum((Decimal(i["total"]) for i in rows), Decimal(0)), exponent(currency))
            for currency, rows in _by_currency(open_invoices).items()
        },
        "at_period_end": at_period_end,
    }


def _by_currency(invoices: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in invoices:
        grouped.setdefault(row["currency"], []).append(row)
    return grouped
