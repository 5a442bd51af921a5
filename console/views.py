"""The finance overview (/admin/console/) and its CSV exports (/admin/console/export/): admin
pages for `finance`, `finance-approver` and `auditor` (`console.view_finance_overview`).
Thin: every figure comes from console/selectors.py, every CSV from console/exports.py."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing_project.money import Money
from invoicing.models import StripeMismatch, StripeReconciliation
from invoicing.reconciliation import reconciliation_kinds, stripe_url

from . import charts, exports, selectors

PERMISSION = "console.view_finance_overview"


View = Callable[[HttpRequest], HttpResponse | StreamingHttpResponse]


def _require(view: View) -> View:
    """Staff login (the admin's, with its second factor), then the overview's permission: 403 without it."""

    def guarded(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        return view(request)

    guarded.__name__ = view.__name__
    guarded.__doc__ = view.__doc__
    return admin.site.admin_view(guarded)


class ExportForm(forms.Form):
    what = forms.ChoiceField(label="Export", choices=[(e.name, e.label) for e in exports.EXPORTS.values()])
    start = forms.DateField(
        label="From", widget=forms.DateInput(attrs={"type": "date"}), help_text="UTC day, included."
    )
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}), help_text="UTC day, included.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            raise forms.ValidationError("The range ends before it starts.")
        for day in (start, end):
            if day and not (date(2000, 1, 1) <= day <= date(2999, 12, 31)):
                raise forms.ValidationError("Days from 2000-01-01 to 2999-12-31.")
        return data


def _link(name: str, *args: object, query: str = "") -> str | None:
    try:
        return reverse(name, args=args) + (f"?{query}" if query else "")
    except NoReverseMatch:
        return None


def _currency_table(now: datetime) -> dict[str, Any]:
    """Rows of figures, columns of currencies; an empty cell where a currency has nothing."""
    figures: list[tuple[str, str, dict[str, Money], dict[str, int] | None]] = []

    def add(label: str, help_text: str, figure: selectors.Figure, counted: bool = True) -> None:
        figures.append(
            (
                label,
                help_text,
                {c: t.total for c, t in figure.items()},
                {c: t.count for c, t in figure.items()} if counted else None,
            )
        )

    add("MRR (now)", "Base fees of active and past-due subscriptions, per month (yearly ÷ 12); no usage, no trials.",
        selectors.mrr(now=now))  # fmt: skip
    arr = selectors.arr(now=now)
    figures.append(("ARR (now)", "12 × MRR.", arr, None))
    add("Invoiced this month", "Totals of invoices finalized this month.", selectors.invoiced_this_month(now=now))
    add("Collected this month", "Totals of invoices paid this month.", selectors.collected_this_month(now=now))
    add("Outstanding (now)", "Totals of invoices open now.", selectors.outstanding(now=now))
    add(
        "Refunded this month",
        "Refunds that succeeded this month (Stripe confirmed, or paid out by staff).",
        selectors.refunded_this_month(now=now),
    )
    add("Credit notes this month", "Credit notes issued this month.", selectors.credit_notes_this_month(now=now))
    add("Credits granted this month", "Ledger grants this month (staff, credit notes, proration).",
        selectors.credits_granted_this_month(now=now))  # fmt: skip
    currencies = sorted({c for _, _, amounts, _ in figures for c in amounts})
    rows = []
    for label, help_text, amounts, counts in figures:
        cells = []
        for currency in currencies:
            value = amounts.get(currency)
            cells.append(
                {
                    "amount": charts.amount(value.amount, currency) if value is not None else "—",
                    "count": counts.get(currency) if counts is not None and value is not None else None,
                }
            )
        rows.append({"label": label, "help": help_text, "cells": cells})
    return {"currencies": currencies, "rows": rows}


def _ageing(now: datetime) -> list[dict[str, Any]]:
    ageing = selectors.receivables_ageing(now=now)
    return [
        {
            "currency": currency,
            "link": _link("admin:invoicing_invoice_changelist", query=f"status__exact=open&currency__exact={currency}"),
            "buckets": [
                {"amount": charts.amount(t.total.amount, currency), "count": t.count} for t in buckets.values()
            ],
            "total": charts.amount(sum((t.total.amount for t in buckets.values()), Decimal(0)), currency),
        }
        for currency, buckets in ageing.items()
    ]


def _troubled(troubled: selectors.Troubled) -> dict[str, Any]:
    return {
        "count": troubled.count,
        "rows": [
            {
                "tenant": s.tenant,
                "tenant_name": s.tenant_name,
                "plan": s.plan,
                "since": s.since,
                "link": _link("console-tenant:page", s.tenant_id),
                "subscription_link": _link("admin:subscriptions_subscription_change", s.subscription_id),
            }
            for s in troubled.subscriptions
        ],
    }


def _revenue_charts(now: datetime) -> list[dict[str, Any]]:
    months = selectors.revenue_by_month(now=now)
    currencies = sorted({c for m in months for c in m.totals})
    result = []
    for currency in currencies:
        series = [(m.month, m.totals[currency]) for m in months]
        result.append(
            {
                "currency": currency,
                "svg": charts.revenue_chart(currency=currency, months=series),
                "months": [{"label": charts.month_label(d), "amount": charts.money(v)} for d, v in series],
            }
        )
    return result


def _usage_charts(now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "code": metric.code,
            "name": metric.name,
            "aggregation": metric.aggregation,
            "svg": charts.usage_chart(name=metric.name, days=metric.days),
            "total_days": sum(1 for _, v in metric.days if v),
            "peak": charts.quantity(max((v for _, v in metric.days), default=Decimal(0))),
        }
        for metric in selectors.usage_by_day(now=now)
    ]


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Finance overview: the month's money per currency, receivables ageing, subscriptions in
    trouble, what waits for staff, and the charts; the export form below."""
    now = timezone.now()
    month_start, _ = selectors.month_bounds(now)
    today = now.astimezone(UTC).date()
    approvals = selectors.approvals_pending(now=now)
    blocked = selectors.work_items_blocked()
    context = {
        **admin.site.each_context(request),
        "title": "Finance overview",
        "now": now,
        "month": month_start,
        "money": _currency_table(now),
        "ageing": _ageing(now),
        "ageing_buckets": ["Not due yet", "0–30 days", "31–60 days", "61–90 days", "Over 90 days"],
        "past_due": _troubled(selectors.subscriptions_past_due()),
        "suspended": _troubled(selectors.subscriptions_suspended()),
        "past_due_link": _link("admin:subscriptions_subscription_changelist", query="status__exact=past_due"),
        "suspended_link": _link("admin:subscriptions_subscription_changelist", query="status__exact=suspended"),
        "approvals": approvals,
        "approvals_amounts": [charts.money(t.total) for t in approvals.amounts.values()],
        "approvals_link": _link("admin:approvals_approvalrequest_changelist", query="status__exact=pending"),
        "task_failures": selectors.task_failures_open(),
        "task_failures_link": _link("admin:billing_project_taskfailure_changelist", query="resolved_at__isempty=1"),
        "reconciliation": selectors.reconciliation_latest(),
        "reconciliation_link": _link("console:reconciliation"),
        "blocked": sum(blocked.values()),
        "blocked_jobs": sorted(blocked.items()),
        "blocked_link": _link("admin:billing_project_workitem_changelist", query="state__exact=blocked"),
        "revenue": _revenue_charts(now),
        "usage": _usage_charts(now),
        "export_form": ExportForm(initial={"what": "invoices", "start": month_start.date(), "end": today}),
    }
    return TemplateResponse(request, "console/dashboard.html", context)


def export_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """One CSV export over a range of UTC days, streamed. An invalid form shows the overview's
    export form again with its errors (400)."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        context = {**admin.site.each_context(request), "title": "Export", "export_form": form}
        return TemplateResponse(request, "console/dashboard_export.html", context, status=400)
    what: str = form.cleaned_data["what"]
    first: date = form.cleaned_data["start"]
    last: date = form.cleaned_data["end"]
    start, end = selectors.day_bounds(first, last)
    response = StreamingHttpResponse(
        exports.export_rows(name=what, start=start, end=end), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{what}-{first:%Y-%m-%d}-to-{last:%Y-%m-%d}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _report(request: HttpRequest) -> StripeReconciliation | None:
    """The report of `?day=YYYY-MM-DD` (404 when that day has none), else the latest."""
    day = request.GET.get("day")
    if day is None:
        return StripeReconciliation.objects.order_by("-day").first()
    try:
        return StripeReconciliation.objects.get(day=date.fromisoformat(day))
    except (ValueError, StripeReconciliation.DoesNotExist) as exc:
        raise Http404("no reconciliation that day") from exc


def _mismatch_rows(report: StripeReconciliation) -> list[dict[str, Any]]:
    rows = []
    for m in report.mismatches.select_related("invoice", "refund"):
        if m.refund_id:
            ours = (f"refund {m.refund_id}", _link("admin:invoicing_refund_change", m.refund_id))
        elif m.invoice_id:
            ours = (f"invoice {m.invoice}", _link("admin:invoicing_invoice_change", m.invoice_id))
        else:
            ours = ("", None)
        rows.append({"m": m, "ours_label": ours[0], "ours_link": ours[1], "stripe_link": stripe_url(m)})
    return rows


def reconciliation_view(request: HttpRequest) -> HttpResponse:
    """A day's reconciliation with Stripe (`?day=`, else the latest): each mismatch, its
    kind and both sides; the days before, listed."""
    report = _report(request)
    days = [  # one query for the counts of all 60 days
        {"r": r, "count": r.found, "link": _link("console:reconciliation", query=f"day={r.day}")}
        for r in StripeReconciliation.objects.annotate(found=Count("mismatches")).order_by("-day")[:60]
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Reconciliation with Stripe",
        "report": report,
        "kinds": [
            {
                "object": k.split(" ", 1)[0],
                "code": k.split(" ", 1)[1],
                "count": n,
                "label": StripeMismatch.Kind(k.split(" ", 1)[1]).label,
            }
            for k, n in (reconciliation_kinds(report) if report else {}).items()
        ],
        "collection_enabled": settings.STRIPE_COLLECTION_ENABLED,
        "rows": _mismatch_rows(report) if report else [],
        "days": days,
        "csv_link": _link("console:reconciliation_csv", query=f"day={report.day}") if report else None,
        "kind_labels": dict(StripeMismatch.Kind.choices),
    }
    return TemplateResponse(request, "console/reconciliation.html", context)


def reconciliation_csv_view(request: HttpRequest) -> HttpResponse:
    """The same day's mismatches as CSV (no report yet: the header only)."""
    report = _report(request)
    rows = _mismatch_rows(report) if report else []
    fields = ["day", "object", "kind", "stripe_id", "ours", "theirs", "invoice", "refund", "detail", "stripe_url"]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    writer = csv.writer(response)
    writer.writerow(fields)
    for row in rows:
        m: StripeMismatch = row["m"]
        cells: list[object] = [report.day.isoformat() if report else "", m.object_type, m.kind, m.stripe_id]
        cells += [m.ours, m.theirs, m.invoice.number if m.invoice else "", m.refund_id or "", m.detail]
        cells.append(row["stripe_link"])
        writer.writerow([exports.text_cell(c) for c in cells])
    day = report.day.isoformat() if report else "none"
    response["Content-Disposition"] = f'attachment; filename="reconciliation-{day}.csv"'
    response["Cache-Control"] = "no-store"
    return response


dashboard = _require(dashboard_view)
export = _require(export_view)
reconciliation = _require(reconciliation_view)
reconciliation_csv = _require(reconciliation_csv_view)
