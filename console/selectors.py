"""The finance overview's figures, one function each. Finance quotes these numbers, so each
docstring says exactly what is counted; the dashboard, the CSV exports and the tests read
the same functions.

Conventions for every figure:
* Money is per currency, never added across currencies: `{currency: Tally}` (a total as
  `Money`, rounded to the currency's minor unit, and how many records make it), currencies
  in alphabetical order. A currency with nothing to count is absent.
* "This month" is the UTC calendar month holding `now`, `[first day 00:00, next first day)`,
  half-open like every period here. The caller passes `now`: no selector reads the clock.
* Invoices count once finalized (drafts are not issued); their `total` is what the tenant
  owes (after credit applied, with tax).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, F, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Concat, TruncDay, TruncMonth

from approvals.models import ApprovalRequest
from billing_project.models import TaskFailure, WorkItem
from billing_project.money import CONTEXT, Money, round_line
from invoicing.models import CreditEntry, CreditNote, Invoice, Refund, StripeReconciliation
from plans.models import BillableMetric, PlanVersion
from subscriptions.models import Subscription
from usage.models import UsageRollup, UsageUniqueValue

FINALIZED = ("open", "paid", "void", "uncollectible")
# MRR counts what paying subscriptions bill: active ones, and past-due ones (dunning has not
# given up on them). Trials pay nothing yet; suspended ones bill nothing until they resume.
RECURRING_STATUSES = ("active", "past_due")
AGEING_BUCKETS = ("current", "0-30", "31-60", "61-90", "90+")


@dataclass(frozen=True)
class Tally:
    """A money total in one currency and how many records it sums."""

    total: Money
    count: int


Figure = dict[str, Tally]


# ---------------------------------------------------------------- time
def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month holding `now`: [its first instant, the next month's)."""
    at = now.astimezone(UTC)
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, _next_month(start)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _previous_month(start: datetime) -> datetime:
    return start.replace(year=start.year - 1, month=12) if start.month == 1 else start.replace(month=start.month - 1)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """Whole UTC days from `first` to `last`, both included: [first 00:00, the day after last 00:00)."""
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
    )


# ---------------------------------------------------------------- helpers
def _money(amount: Decimal | None, currency: str) -> Money:
    return Money(round_line(amount or Decimal(0), currency), currency)


def _figure(rows: Iterable[dict[str, Any]]) -> Figure:
    """{currency: Tally} from rows of (currency, total, n)."""
    return {
        row["currency"]: Tally(_money(row["total"], row["currency"]), row["n"])
        for row in sorted(rows, key=lambda r: str(r["currency"]))
        if row["n"]
    }


def _sum_by_currency(queryset: QuerySet[Any], amount: str = "total") -> Figure:
    return _figure(queryset.values("currency").annotate(total=Sum(amount), n=Count("pk")).order_by("currency"))


# ---------------------------------------------------------------- what the exports list
# The exports (console/exports.py) list exactly these querysets, so a CSV's rows add up to
# the figure of the same range.
def invoices_finalized(*, start: datetime, end: datetime) -> QuerySet[Invoice]:
    """Invoices finalized in [start, end), whatever their status now (a voided or
    uncollectible invoice was issued all the same: its number is taken)."""
    return Invoice.objects.filter(status__in=FINALIZED, finalized_at__gte=start, finalized_at__lt=end)


def credit_notes_issued(*, start: datetime, end: datetime) -> QuerySet[CreditNote]:
    """Credit notes issued in [start, end), however settled (as credit or by a refund)."""
    return CreditNote.objects.filter(created_at__gte=start, created_at__lt=end)


def refunds_succeeded(*, start: datetime, end: datetime) -> QuerySet[Refund]:
    """Refunds that succeeded in [start, end) (by `succeeded_at`: Stripe confirmed, or staff paid
    out): money returned. Refunds requested, awaiting approval, submitted or failed have
    returned nothing and are not here."""
    return Refund.objects.filter(status=Refund.Status.SUCCEEDED, succeeded_at__gte=start, succeeded_at__lt=end)


def ledger_entries(*, start: datetime, end: datetime) -> QuerySet[CreditEntry]:
    """Every credit ledger entry written in [start, end): grants (+), applications to
    invoices (−) and reversals of applications of voided invoices (+)."""
    return CreditEntry.objects.filter(created_at__gte=start, created_at__lt=end)


def credit_grants(*, start: datetime, end: datetime) -> QuerySet[CreditEntry]:
    """Ledger grants written in [start, end): credit staff granted, credit notes settled as
    credit, and proration credit beyond an invoice's charges."""
    return ledger_entries(start=start, end=end).filter(kind=CreditEntry.Kind.GRANT)


# ---------------------------------------------------------------- flows over a range
def invoiced(*, start: datetime, end: datetime) -> Figure:
    """Invoiced: the totals of the invoices finalized in [start, end) (by `finalized_at`),
    per currency, whatever happened to them since (paid, void, uncollectible or open).
    Usage, base fees, proration and tax are all in; credit applied is already taken off."""
    return _sum_by_currency(invoices_finalized(start=start, end=end))


def collected(*, start: datetime, end: datetime) -> Figure:
    """Collected: the totals of the invoices paid in [start, end) (by `paid_at`), per
    currency, whenever they were issued. Refunds are not taken off (see refunded)."""
    return _sum_by_currency(Invoice.objects.filter(status=Invoice.Status.PAID, paid_at__gte=start, paid_at__lt=end))


def refunded(*, start: datetime, end: datetime) -> Figure:
    """Refunded: the amounts of the refunds that succeeded in [start, end), per currency."""
    return _sum_by_currency(refunds_succeeded(start=start, end=end), "amount")


def credits_granted(*, start: datetime, end: datetime) -> Figure:
    """Credits granted: the ledger grants written in [start, end), per currency (staff
    grants, credit notes settled as credit, proration credit). Credit used by invoices
    and reversals are not counted here; the ledger export lists them."""
    return _sum_by_currency(credit_grants(start=start, end=end), "amount")


def credit_notes(*, start: datetime, end: datetime) -> Figure:
    """Credit notes: the totals of the credit notes issued in [start, end), per currency
    (those settled by a refund included: each refund's credit note has its amount)."""
    return _sum_by_currency(credit_notes_issued(start=start, end=end))


def invoiced_this_month(*, now: datetime) -> Figure:
    """`invoiced` over the UTC month holding `now`."""
    return invoiced(start=month_bounds(now)[0], end=month_bounds(now)[1])


def collected_this_month(*, now: datetime) -> Figure:
    """`collected` over the UTC month holding `now`."""
    return collected(start=month_bounds(now)[0], end=month_bounds(now)[1])


def refunded_this_month(*, now: datetime) -> Figure:
    """`refunded` over the UTC month holding `now`."""
    return refunded(start=month_bounds(now)[0], end=month_bounds(now)[1])


def credits_granted_this_month(*, now: datetime) -> Figure:
    """`credits_granted` over the UTC month holding `now`."""
    return credits_granted(start=month_bounds(now)[0], end=month_bounds(now)[1])


def credit_notes_this_month(*, now: datetime) -> Figure:
    """`credit_notes` over the UTC month holding `now`."""
    return credit_notes(start=month_bounds(now)[0], end=month_bounds(now)[1])


# ---------------------------------------------------------------- state at `now`
def _open_invoices(now: datetime) -> QuerySet[Invoice]:
    return Invoice.objects.filter(status=Invoice.Status.OPEN, finalized_at__lte=now)


def outstanding(*, now: datetime) -> Figure:
    """Outstanding: the totals of the invoices open now (finalized by `now`, neither paid,
    voided nor marked uncollectible), per currency, whatever month they were issued in.
    Uncollectible invoices are written off and not counted."""
    return _sum_by_currency(_open_invoices(now))


def receivables_ageing(*, now: datetime) -> dict[str, dict[str, Tally]]:
    """The outstanding invoices by how long they are past due at `now`, per currency:
    `current` (not due yet: `due_at` after `now`), then whole days past `due_at`:
    `0-30` (due up to 30 days ago, today included), `31-60`, `61-90` and `90+` (91 days
    or more). Every bucket of a currency is present; the buckets add up to `outstanding`."""
    day = timedelta(days=1)
    bucket = Case(
        When(Q(due_at__isnull=True) | Q(due_at__gt=now), then=Value("current")),
        When(due_at__gt=now - 31 * day, then=Value("0-30")),
        When(due_at__gt=now - 61 * day, then=Value("31-60")),
        When(due_at__gt=now - 91 * day, then=Value("61-90")),
        default=Value("90+"),
    )
    rows = (
        _open_invoices(now)
        .annotate(bucket=bucket)
        .values("currency", "bucket")
        .annotate(total=Sum("total"), n=Count("pk"))
        .order_by("currency", "bucket")
    )
    ageing: dict[str, dict[str, Tally]] = {}
    for row in rows:
        currency = row["currency"]
        buckets = ageing.setdefault(currency, {b: Tally(_money(None, currency), 0) for b in AGEING_BUCKETS})
        buckets[row["bucket"]] = Tally(_money(row["total"], currency), row["n"])
    return dict(sorted(ageing.items()))


def mrr(*, now: datetime) -> Figure:
    """Monthly recurring revenue, per currency: the base fees of the subscriptions that pay
    now (active or past due, started by `now`), each normalised to a month (a yearly
    fee / 12), on the plan version each is on (a change scheduled for the period's end is
    not counted yet). Trials (nothing paid yet) and suspended subscriptions (billing nothing)
    are out; so are canceled and ended ones. A subscription set to cancel at its period
    end still counts until it ends. Usage charges are not recurring and are not in MRR: they
    are in `invoiced` and in revenue per month. The exact sum is rounded once, to the minor
    unit (half up). The count is the number of subscriptions."""
    exact, counts = _monthly_fees(now)
    return {c: Tally(_money(amount, c), counts[c]) for c, amount in sorted(exact.items())}


def arr(*, now: datetime) -> dict[str, Money]:
    """Annual recurring revenue, per currency: 12 × MRR, computed from MRR's exact sum
    (so a yearly fee counts once, whole) and rounded once to the minor unit."""
    exact, _ = _monthly_fees(now)
    return {c: _money(amount * 12, c) for c, amount in sorted(exact.items())}


def _monthly_fees(now: datetime) -> tuple[dict[str, Decimal], dict[str, int]]:
    rows = (
        Subscription.objects.filter(status__in=RECURRING_STATUSES, started_at__lte=now)
        .values(currency=F("plan_version__currency"), interval=F("plan_version__interval"))
        .annotate(fees=Sum("plan_version__base_fee"), n=Count("pk"))
        .order_by("currency", "interval")
    )
    exact: dict[str, Decimal] = {}
    counts: dict[str, int] = {}
    for row in rows:
        fees = row["fees"] or Decimal(0)
        monthly = CONTEXT.divide(fees, Decimal(12)) if row["interval"] == PlanVersion.Interval.YEAR else fees
        exact[row["currency"]] = exact.get(row["currency"], Decimal(0)) + monthly
        counts[row["currency"]] = counts.get(row["currency"], 0) + row["n"]
    return exact, counts


@dataclass(frozen=True)
class TroubledSubscription:
    tenant: str  # external id
    tenant_name: str
    tenant_id: int
    subscription_id: int
    plan: str
    since: datetime | None


@dataclass(frozen=True)
class Troubled:
    count: int
    subscriptions: list[TroubledSubscription] = field(default_factory=list)


def subscriptions_past_due(*, limit: int = 20) -> Troubled:
    """Subscriptions past due now (a payment failed, dunning runs): how many, and the
    `limit` longest past due with the tenant and since when (`past_due_since`)."""
    queryset = Subscription.objects.filter(status=Subscription.Status.PAST_DUE)
    rows = queryset.select_related("tenant", "plan_version__plan").order_by("past_due_since", "pk")[:limit]
    return Troubled(queryset.count(), [_troubled(s, s.past_due_since) for s in rows])


def subscriptions_suspended(*, limit: int = 20) -> Troubled:
    """Subscriptions suspended now (by dunning or by staff): how many, and the `limit`
    longest suspended with the tenant and since when (their last suspension event)."""
    queryset = Subscription.objects.filter(status=Subscription.Status.SUSPENDED).annotate(
        since=Max("events__at", filter=Q(events__to_status=Subscription.Status.SUSPENDED))
    )
    rows = queryset.select_related("tenant", "plan_version__plan").order_by("since", "pk")[:limit]
    return Troubled(queryset.count(), [_troubled(s, s.since) for s in rows])


def _troubled(sub: Subscription, since: datetime | None) -> TroubledSubscription:
    return TroubledSubscription(
        sub.tenant.external_id, sub.tenant.name, sub.tenant_id, sub.pk, str(sub.plan_version), since
    )


@dataclass(frozen=True)
class PendingApprovals:
    count: int
    amounts: Figure  # of the requests that carry an amount


def approvals_pending(*, now: datetime) -> PendingApprovals:
    """Approval requests waiting for a second person: pending and not expired at `now`
    (`expires_at` after it: one past it is expired, whether or not the hourly sweep has
    marked it yet), how many, and the amounts of those that move money, per currency."""
    pending = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING, expires_at__gt=now)
    with_amount = pending.filter(amount__isnull=False).exclude(currency="")
    return PendingApprovals(pending.count(), _sum_by_currency(with_amount, "amount"))


def task_failures_open() -> int:
    """Background tasks that failed after all their retries and nobody marked resolved yet."""
    return TaskFailure.objects.filter(resolved_at__isnull=True).count()


def reconciliation_latest() -> tuple[str, int] | None:
    """The latest reconciliation with Stripe: its day and how many mismatches it found."""
    report = StripeReconciliation.objects.order_by("-day").first()
    return (report.day.isoformat(), report.mismatches.count()) if report else None


def work_items_blocked() -> dict[str, int]:
    """Background work blocked until staff retry it (an invoice's collection, a dunning
    retry, a period close, a Stripe event), how many per job. Items still retrying on
    their own back-off are not counted."""
    rows = WorkItem.objects.filter(state=WorkItem.State.BLOCKED).values("job").annotate(n=Count("pk")).order_by("job")
    return {row["job"]: row["n"] for row in rows}


# ---------------------------------------------------------------- charts
@dataclass(frozen=True)
class MonthRevenue:
    month: date  # its first day
    totals: dict[str, Money]  # every currency invoiced in any of the months, zero where none


def revenue_by_month(*, now: datetime, months: int = 12) -> list[MonthRevenue]:
    """Invoiced per UTC calendar month and currency, for the `months` months ending with the
    one holding `now` (that one so far), oldest first: the month's `invoiced` figure (totals
    of the invoices finalized in it, whatever their status since)."""
    end = month_bounds(now)[1]
    start = month_bounds(now)[0]
    for _ in range(months - 1):
        start = _previous_month(start)
    rows = (
        invoices_finalized(start=start, end=end)
        .annotate(month=TruncMonth("finalized_at", tzinfo=UTC))
        .values("month", "currency")
        .annotate(total=Sum("total"))
        .order_by("month", "currency")
    )
    found = {(row["month"].date(), row["currency"]): row["total"] for row in rows}
    currencies = sorted({currency for _, currency in found})
    result = []
    month = start
    while month < end:
        day = month.date()
        result.append(MonthRevenue(day, {c: _money(found.get((day, c)), c) for c in currencies}))
        month = _next_month(month)
    return result


@dataclass(frozen=True)
class MetricUsage:
    code: str
    name: str
    aggregation: str
    days: list[tuple[date, Decimal]]  # every day of the window, oldest first


def usage_by_day(*, now: datetime, days: int = 30) -> list[MetricUsage]:
    """Usage per metric and UTC day, over all tenants, for the `days` days ending with the
    one holding `now` (that one so far), read from the hourly rollups (usage.UsageRollup):
    what the last aggregation run folded in, so at most a minute or so behind the raw
    events. What a day's number is depends on the metric's aggregation:
    count — events reported; sum — quantities reported, added; max — the highest single
    quantity any tenant reported; unique_count — each tenant's distinct values that day
    (a value seen in two hours of the day counts once), added over tenants; latest — each
    tenant's last reported value that day, added over tenants (e.g. seats in use at the
    end of the day). Metrics with no usage in the window are
    listed with zeros, metrics by code."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    start, end = day_bounds(first, now.astimezone(UTC).date())
    window = [first + timedelta(days=n) for n in range(days)]
    values: dict[tuple[int, date], Decimal] = {}
    rollups = UsageRollup.objects.filter(hour__gte=start, hour__lt=end).annotate(day=TruncDay("hour", tzinfo=UTC))
    additive = (
        rollups.filter(metric__aggregation__in=("count", "sum", "max"))
        .values("metric_id", "metric__aggregation", "day")
        .annotate(count=Sum("count"), sum=Sum("sum"), max=Max("max"))
        .order_by()
    )
    for row in additive:
        summed: dict[str, Any] = dict(row)
        values[(summed["metric_id"], summed["day"].date())] = Decimal(summed[summed["metric__aggregation"]] or 0)
    latest = (
        rollups.filter(metric__aggregation="latest", latest_at__isnull=False)
        .order_by("metric_id", "tenant_id", "day", "-latest_at", "-latest_event_id")
        .distinct("metric_id", "tenant_id", "day")
        .values_list("metric_id", "day", "latest_value")
    )
    for metric_id, day, value in latest.iterator(chunk_size=2000):
        key = (metric_id, day.date())
        values[key] = values.get(key, Decimal(0)) + (value or Decimal(0))
    uniques = (
        UsageUniqueValue.objects.filter(hour__gte=start, hour__lt=end)
        .annotate(day=TruncDay("hour", tzinfo=UTC))
        .values("metric_id", "day")
        .annotate(n=Count(Concat("tenant_id", Value(":"), "value"), distinct=True))
        .order_by()
    )
    for distinct in uniques:
        values[(distinct["metric_id"], distinct["day"].date())] = Decimal(distinct["n"])
    return [
        MetricUsage(
            metric.code,
            metric.name,
            metric.aggregation,
            [(day, values.get((metric.pk, day), Decimal(0))) for day in window],
        )
        for metric in BillableMetric.objects.order_by("code")
    ]
