"""Billing periods as records: a plan change splits the period, currency travels with
the period, closed periods never change, and no accepted usage falls outside what the
period close bills (a property test over random subscription histories)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_project.money import CurrencyMismatch, Money
from invoicing import services as invoicing_services
from invoicing.drafting import DraftLine, write_lines
from invoicing.ledger import credit_apply
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import invoice_close_periods
from plans.services import catalog_import, catalog_validate
from subscriptions.models import BillingPeriod, ProrationItem, Subscription, SubscriptionEvent
from subscriptions.services import (
    subscription_apply,
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    subscription_roll,
    tenant_upsert,
)

pytestmark = [pytest.mark.django_db]

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
CATALOG: dict[str, Any] = {
    "currency": "USD",
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count"},
        {"code": "storage_gb", "name": "Storage", "aggregation": "max"},
    ],
    "features": [],
    "plans": [
        {
            "code": "basic",
            "name": "Basic",
            "interval": "month",
            "currency": "USD",
            "base_fee": "10.00",
            "charges": [
                {"metric": "api_calls", "model": "per_unit", "unit_price": "0.01"},
                {"metric": "storage_gb", "model": "per_unit", "unit_price": "1.00"},
            ],
        },
        {
            "code": "plus",
            "name": "Plus",
            "interval": "month",
            "currency": "USD",
            "base_fee": "20.00",
            # storage is not charged on Plus
            "charges": [{"metric": "api_calls", "model": "per_unit", "unit_price": "0.02"}],
        },
    ],
}
PRICE = {"basic": Decimal("0.01"), "plus": Decimal("0.02")}


@pytest.fixture
def catalog(db):
    catalog_import(spec=catalog_validate(CATALOG))


@pytest.fixture
def key(make_key):
    return make_key("service", metrics=["api_calls", "storage_gb"])


# The closes run with the process clock at the instant they are given, as beat runs them:
# what they stamp (an invoice's created_at, which the next late-usage look-back starts
# from) must not be the day the suite runs.
def invoices_close_due(*, now: datetime) -> int:
    with time_machine.travel(now, tick=False):
        return invoicing_services.invoices_close_due(now=now)


def invoices_late_usage_due(*, now: datetime) -> int:
    with time_machine.travel(now, tick=False):
        return invoicing_services.invoices_late_usage_due(now=now)


def call(api, key, method, path, body=None, *, at):
    with time_machine.travel(at, tick=False):
        response = getattr(api, method)(path, body, format="json", **key.header)
    assert response.status_code in (200, 201), response.content
    return response.json()


def report(api, key, tenant, metric, at, *, n=1, quantity="1", reported_at=None):
    events = [
        {
            "tenant": tenant,
            "metric": metric,
            "quantity": quantity,
            "idempotency_key": f"{tenant}-{metric}-{at.isoformat()}-{i}",
            "occurred_at": at.isoformat(),
        }
        for i in range(n)
    ]
    body = call(api, key, "post", "/api/v1/usage/events", {"events": events}, at=reported_at or at)
    assert body["accepted"] == n, body


def lines_of(invoice):
    return [(x.kind, x.metric, x.amount) for x in invoice.lines.order_by("position")]


def test_a_plan_change_on_the_30th_of_a_31_day_month_splits_its_usage(api, key, catalog):
    """Over HTTP: 100 calls at 0.01, change now to a plan at 0.02, 100 more calls, cancel,
    close. Usage before the change is Basic's, after it Plus's: 1.00 + 2.00, not 4.00.
    Storage, which Plus does not charge, is still billed for the days on Basic."""
    call(api, key, "put", "/api/v1/tenants/acme", {"name": "Acme", "currency": "USD"}, at=JAN1)
    call(api, key, "post", "/api/v1/tenants/acme/subscription", {"plan": "basic"}, at=JAN1)
    report(api, key, "acme", "api_calls", datetime(2026, 1, 10, tzinfo=UTC), n=100)
    report(api, key, "acme", "storage_gb", datetime(2026, 1, 12, tzinfo=UTC), quantity="3")
    change = datetime(2026, 1, 30, tzinfo=UTC)  # 2 of January's 31 days left
    call(api, key, "post", "/api/v1/tenants/acme/subscription/change", {"plan": "plus", "when": "now"}, at=change)
    report(api, key, "acme", "api_calls", datetime(2026, 1, 30, 12, tzinfo=UTC), n=100)
    report(api, key, "acme", "storage_gb", datetime(2026, 1, 30, 13, tzinfo=UTC), quantity="5")
    cancel = datetime(2026, 1, 31, tzinfo=UTC)
    call(api, key, "post", "/api/v1/tenants/acme/subscription/cancel", {"at_period_end": False}, at=cancel)
    assert invoices_close_due(now=datetime(2026, 2, 1, tzinfo=UTC)) == 3

    opening, basic, plus = Invoice.objects.order_by("number")
    assert lines_of(opening) == [("base_fee", "", Decimal("10.00"))]
    assert (basic.period_start, basic.period_end) == (JAN1, change)
    assert lines_of(basic) == [
        ("usage", "api_calls", Decimal("1.00")),  # 100 × 0.01
        ("usage", "storage_gb", Decimal("3.00")),  # max 3 GB × 1.00, on Basic's days only
        ("proration", "", Decimal("-0.65")),  # Basic unused: −10 × 2/31 = −0.645…
        ("proration", "", Decimal("1.29")),  # Plus for the rest: 20 × 2/31 = 1.290…
    ]
    assert (plus.period_start, plus.period_end) == (change, cancel)
    assert lines_of(plus) == [("usage", "api_calls", Decimal("2.00"))]  # 100 × 0.02; no storage charge
    usage = InvoiceLine.objects.filter(kind="usage", metric="api_calls")
    assert sum(x.amount for x in usage) == Decimal("3.00")
    assert [x.explanation["plan"] for x in usage.order_by("period_start")] == ["basic", "plus"]
    periods = BillingPeriod.objects.order_by("start")
    assert [(p.start, p.end, p.plan_version.plan.code, p.closed) for p in periods] == [
        (JAN1, change, "basic", True),
        (change, cancel, "plus", True),
    ]
    assert [p.invoice for p in periods] == [basic, plus]  # one invoice per period


def test_late_usage_of_an_ended_subscription_is_billed_in_its_periods_currency(api, key, catalog):
    """The tenant pays in USD, cancels, then changes its currency to JPY (allowed once no
    subscription is live). Late January usage is billed in USD, never as yen."""
    call(api, key, "put", "/api/v1/tenants/acme", {"name": "Acme", "currency": "USD"}, at=JAN1)
    call(api, key, "post", "/api/v1/tenants/acme/subscription", {"plan": "basic"}, at=JAN1)
    report(api, key, "acme", "api_calls", datetime(2026, 1, 5, tzinfo=UTC), n=10)
    call(
        api,
        key,
        "post",
        "/api/v1/tenants/acme/subscription/cancel",
        {"at_period_end": False},
        at=datetime(2026, 1, 20, tzinfo=UTC),
    )
    invoices_close_due(now=datetime(2026, 1, 21, tzinfo=UTC))
    call(
        api,
        key,
        "put",
        "/api/v1/tenants/acme",
        {"name": "Acme", "currency": "JPY"},
        at=datetime(2026, 1, 22, tzinfo=UTC),
    )
    report(
        api,
        key,
        "acme",
        "api_calls",
        datetime(2026, 1, 6, tzinfo=UTC),
        n=50,
        reported_at=datetime(2026, 1, 23, tzinfo=UTC),
    )
    assert invoices_late_usage_due(now=datetime(2026, 1, 24, tzinfo=UTC)) == 1
    late = Invoice.objects.filter(lines__kind="late_usage").get()
    assert late.currency == "USD"
    assert lines_of(late) == [("late_usage", "api_calls", Decimal("0.50"))]  # 50 more × 0.01 USD
    assert late.lines.get().currency == "USD"


def test_a_line_in_another_currency_is_refused_everywhere(catalog):
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    draft = Invoice.objects.create(tenant=tenant, currency="USD", period_start=JAN1, period_end=JAN1)
    euros = DraftLine(kind="usage", description="x", amount=Money(Decimal("1.00"), "EUR"))
    with pytest.raises(CurrencyMismatch), transaction.atomic():
        write_lines(draft, [euros])
    # below the ORM too: the line guard compares the line's currency with its invoice's
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.create(
            invoice=draft, position=1, kind="usage", description="x", amount=Decimal(1), currency="EUR"
        )
    with pytest.raises(CurrencyMismatch), transaction.atomic():
        credit_apply(invoice=draft, up_to=Money(Decimal("5.00"), "EUR"), actor="t")
    assert not draft.lines.exists()


def test_a_proration_item_in_another_currency_stops_the_close(catalog):
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="basic", actor="t", at=JAN1)
    change = subscription_change_plan(
        tenant=tenant, plan_code="plus", when="now", actor="t", at=datetime(2026, 1, 10, tzinfo=UTC)
    )
    event = SubscriptionEvent.objects.filter(action="change_plan").get()
    ProrationItem.objects.create(
        subscription=sub,
        event=event,
        kind="charge",
        description="stray",
        amount=Decimal(5),
        currency="EUR",
        period_start=change.effective_at,
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
    )
    with pytest.raises(CurrencyMismatch):
        invoice_close_periods(subscription_id=sub.pk, now=datetime(2026, 1, 11, tzinfo=UTC))
    assert not Invoice.objects.exists()  # nothing half-written: the whole close rolled back


def test_a_closed_period_never_changes_and_an_open_one_only_moves_its_end(catalog):
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="basic", actor="t", at=JAN1)
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 1, tzinfo=UTC))
    closed, current = BillingPeriod.objects.order_by("start")
    assert (closed.closed, current.closed) == (True, False)
    for sql in (
        'UPDATE subscriptions_billingperiod SET "end" = "end" + interval \'1 day\' WHERE id = %s',
        "DELETE FROM subscriptions_billingperiod WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [closed.pk])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE subscriptions_billingperiod SET start = start - interval '1 day' WHERE id = %s", [current.pk]
        )
    with transaction.atomic(), connection.cursor() as cursor:  # the open one's end may move (cancelled now)
        cursor.execute(
            'UPDATE subscriptions_billingperiod SET "end" = "end" - interval \'1 day\' WHERE id = %s', [current.pk]
        )


def test_a_trial_is_a_period_that_bills_nothing(catalog):
    doc = catalog_validate({**CATALOG, "plans": [{**CATALOG["plans"][0], "trial_days": 14}, CATALOG["plans"][1]]})
    catalog_import(spec=doc)
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="basic", actor="t", at=JAN1)
    subscription_change_plan(
        tenant=tenant, plan_code="plus", when="now", actor="t", at=datetime(2026, 1, 5, tzinfo=UTC)
    )
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 1, 16, tzinfo=UTC))
    periods = list(BillingPeriod.objects.order_by("start").values_list("kind", "fee_in_advance", "closed"))
    assert periods == [("trial", False, True), ("trial", False, True), ("paid", True, False)]
    invoices_close_due(now=datetime(2026, 1, 20, tzinfo=UTC))
    assert [lines_of(i) for i in Invoice.objects.all()] == [[("base_fee", "", Decimal("20.00"))]]


# ------------------------------------------------------------------ the property
DAY = timedelta(days=1)
ACTIONS = st.sampled_from(["change_now", "change_end", "cancel_now", "cancel_end", "suspend", "resume", "close"])


@st.composite
def histories(draw):
    """A subscription's history: operations and usage at random instants over ~100 days,
    each event reported after a random delay (some after their period was invoiced)."""
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        at = JAN1 + timedelta(hours=draw(st.integers(1, 100 * 24)))
        steps.append((at, "op", draw(ACTIONS)))
    for _ in range(draw(st.integers(1, 12))):
        at = JAN1 + timedelta(hours=draw(st.integers(0, 100 * 24)), minutes=draw(st.integers(0, 59)))
        delay = timedelta(hours=draw(st.sampled_from([0, 1, 30, 24 * 20])))
        steps.append((at + delay, "usage", (at, draw(st.integers(1, 3)))))
    return sorted(steps, key=lambda s: s[0])


def _apply(sub, tenant, action, at):
    from billing_project.errors import BillingError

    sub.refresh_from_db()
    try:
        if action == "close":
            invoices_close_due(now=at)
        elif action.startswith("change"):
            code = "plus" if sub.plan_version.plan.code == "basic" else "basic"
            subscription_change_plan(tenant=tenant, plan_code=code, when=action[7:], actor="t", at=at)
        elif action.startswith("cancel"):
            subscription_cancel(tenant=tenant, at_period_end=action == "cancel_end", actor="t", at=at)
        else:
            subscription_apply(subscription=sub, action=action, actor="t", at=at)
    except BillingError:
        pass  # an operation the state refuses (resume while active, change when canceled…)


counter = iter(range(10**9))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_every_accepted_event_is_billed_once_by_its_periods_version(api, key, catalog, history):
    """Whatever happens to a subscription, every accepted event lies in exactly one of its
    billing periods, which is invoiced once closed (a trial's is free); and what the
    invoices bill for it, in arrears and as late usage, is exactly each event priced by
    the version of the period it fell in."""
    name = f"t{next(counter)}"
    tenant = tenant_upsert(external_id=name, name=name, currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="basic", actor="t", at=JAN1)
    accepted = []
    for at, kind, what in history:
        if kind == "op":
            _apply(sub, tenant, what, at)
            continue
        occurred, n = what
        with time_machine.travel(at, tick=False):
            events = [
                {
                    "tenant": name,
                    "metric": "api_calls",
                    "idempotency_key": f"{occurred}-{i}",
                    "occurred_at": occurred.isoformat(),
                }
                for i in range(n)
            ]
            body = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header).json()
        accepted += [occurred] * body["accepted"]
        invoices_late_usage_due(now=at)  # the hourly beat
    end = JAN1 + 130 * DAY
    subscription_roll(subscription_id=sub.pk, at=end)
    sub.refresh_from_db()
    if sub.status == Subscription.Status.SUSPENDED:
        subscription_cancel(tenant=tenant, at_period_end=False, actor="t", at=end)
        sub.refresh_from_db()
    invoices_close_due(now=end + DAY)
    invoices_late_usage_due(now=end + DAY)
    periods = list(BillingPeriod.objects.filter(subscription=sub).select_related("plan_version__plan"))
    expected = Decimal(0)
    for occurred in accepted:
        holding = [p for p in periods if p.start <= occurred < p.end]
        assert len(holding) == 1, (occurred, periods)  # usage outside every period is refused
        if holding and holding[0].kind == "paid":
            period = holding[0]
            assert period.closed is False or hasattr(period, "invoice") or period.end == period.start
            expected += PRICE[period.plan_version.plan.code]
    billed = InvoiceLine.objects.filter(invoice__subscription=sub, metric="api_calls").exclude(kind="credit")
    open_usage = Decimal(0)
    for period in periods:
        if not period.closed and period.kind == "paid":
            count = sum(1 for o in accepted if period.start <= o < period.end)
            open_usage += count * PRICE[period.plan_version.plan.code]  # the open period bills later
    assert sum((x.amount for x in billed), Decimal(0)) + open_usage == expected


def test_late_usage_of_a_yearly_period_is_billed_a_year_later(api, make_key, db):
    """Last year's usage that arrives the day after the renewal is accepted (it is within
    LATE_USAGE_WINDOW_DAYS of its arrival); the next close, a year on, must still bill it."""
    from tests.plans.factories import demo

    catalog_import(spec=catalog_validate(demo()))
    key = make_key("service", metrics=["active_users"])
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="t", at=JAN1)  # yearly, no trial
    renewal = datetime(2027, 1, 1, tzinfo=UTC)
    subscription_roll(subscription_id=sub.pk, at=renewal)
    invoices_close_due(now=renewal + DAY)
    late = {
        "tenant": "acme",
        "metric": "active_users",
        "quantity": "1",
        "idempotency_key": "late",
        "occurred_at": "2026-12-20T10:00:00Z",
        "properties": {"user_ref": "u1"},
    }
    call(api, key, "post", "/api/v1/usage/events", late, at=renewal + 2 * DAY)
    subscription_roll(subscription_id=sub.pk, at=datetime(2028, 1, 1, tzinfo=UTC))
    invoices_close_due(now=datetime(2028, 1, 2, tzinfo=UTC))
    line = InvoiceLine.objects.get(kind="late_usage")
    assert (line.amount, line.period_start, line.period_end) == (Decimal("6.00"), JAN1, renewal)


def test_the_billing_view_prices_each_part_of_a_split_cycle_by_its_own_version(api, key, catalog):
    call(api, key, "put", "/api/v1/tenants/acme", {"name": "Acme", "currency": "USD"}, at=JAN1)
    call(api, key, "post", "/api/v1/tenants/acme/subscription", {"plan": "basic"}, at=JAN1)
    invoices_close_due(now=datetime(2026, 1, 2, tzinfo=UTC))  # Basic's fee, in advance
    report(api, key, "acme", "api_calls", datetime(2026, 1, 10, tzinfo=UTC), n=100)
    change = datetime(2026, 1, 30, tzinfo=UTC)
    call(api, key, "post", "/api/v1/tenants/acme/subscription/change", {"plan": "plus", "when": "now"}, at=change)
    report(api, key, "acme", "api_calls", datetime(2026, 1, 30, 12, tzinfo=UTC), n=100)
    view = call(api, key, "get", "/api/v1/tenants/acme/billing", at=datetime(2026, 1, 30, 13, tzinfo=UTC))
    assert view["usage"] == [
        {"metric": "api_calls", "model": "per_unit", "quantity": "200", "cost_to_date": "3.00"},
        {"metric": "storage_gb", "model": "per_unit", "quantity": "0", "cost_to_date": "0.00"},  # Basic's
    ]
    cost = view["cost_to_date"]
    # 10.00 fee (invoiced) + 1.00 Basic usage + 2.00 Plus usage + 0.64 proration (−0.65 + 1.29)
    assert (cost["total"], cost["invoiced"], cost["to_come"]) == ("13.64", "10.00", "3.64")
    assert [(x["kind"], x["amount"], x["invoiced"]) for x in cost["lines"]] == [
        ("base_fee", "10.00", True),
        ("usage", "3.00", False),
        ("proration", "0.64", False),
    ]
    invoices_close_due(now=datetime(2026, 1, 30, 14, tzinfo=UTC))  # the Basic part is invoiced
    view = call(api, key, "get", "/api/v1/tenants/acme/billing", at=datetime(2026, 1, 30, 15, tzinfo=UTC))
    cost = view["cost_to_date"]
    assert (cost["total"], cost["invoiced"], cost["to_come"]) == ("13.64", "11.64", "2.00")
