"""Period close: one invoice per billing period, priced on exact period aggregates by the
period's own plan version, base fee in advance, proration, late usage and credit,
checked against hand computations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction

from billing_project.money import Money
from invoicing.ledger import credit_balance, credit_grant
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import invoice_close_periods, invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import BillingPeriod
from subscriptions.services import subscription_change_plan, subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # subscribed; Pro's 14-day trial ends on Jan 15
PAID_START, PAID_END = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC)
LATER = datetime(2026, 3, 1, tzinfo=UTC)  # well past every grace window


@pytest.fixture
def acme(db):
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


@pytest.fixture
def reporter(make_key):
    return make_key("service", metrics=["ai_tokens", "api_calls", "active_users", "storage_gb"])


def report(api, key, metric, quantity, at, n=1, **props):
    events = [
        {
            "tenant": "acme",
            "metric": metric,
            "quantity": str(quantity),
            "idempotency_key": f"{metric}-{at.isoformat()}-{i}-{sorted(props.items())}",
            "occurred_at": at.isoformat(),
            "properties": {k: (f"{v}-{i}" if k == "user_ref" else v) for k, v in props.items()},
        }
        for i in range(n)
    ]
    with time_machine.travel(at + timedelta(minutes=1), tick=False):  # reported as it happens
        response = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    assert response.json()["accepted"] == n, response.content


def amounts(invoice):
    return [(line.kind, line.metric, line.amount) for line in invoice.lines.order_by("position")]


def test_a_month_closes_into_one_invoice_matching_a_hand_computation(api, acme, reporter):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    subscription_roll(subscription_id=sub.pk, at=PAID_START)  # trial ends: Pro's fee in advance
    assert not Invoice.objects.exists()  # the period close (beat) drafts invoices, not the roll
    invoices_close_due(now=LATER)
    first = Invoice.objects.get()
    assert amounts(first) == [("base_fee", "", Decimal("49.00"))]  # the trial's usage is free
    assert (first.status, first.total, first.number) == ("open", Decimal("49.00"), "INV-2026-000001")

    mid = datetime(2026, 2, 1, tzinfo=UTC)
    report(api, reporter, "ai_tokens", 1_500_000, datetime(2026, 1, 20, tzinfo=UTC))
    report(api, reporter, "ai_tokens", 1_500_000, datetime(2026, 2, 10, tzinfo=UTC))
    report(api, reporter, "active_users", 1, datetime(2026, 1, 21, tzinfo=UTC), n=3, user_ref="u")
    report(api, reporter, "storage_gb", 5, datetime(2026, 1, 22, tzinfo=UTC))
    report(api, reporter, "storage_gb", 2, datetime(2026, 2, 12, tzinfo=UTC))
    subscription_change_plan(tenant=acme, plan_code="team", when="now", actor="t", at=mid)  # 14 of 31 days left
    credit_grant(tenant=acme, amount=Money(Decimal("10.00"), "USD"), reason="goodwill", actor="staff:ann")
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)

    # The change split the period: Pro prices its usage until Feb 1, Team its usage after.
    second, third = Invoice.objects.exclude(pk=first.pk).order_by("number")
    assert (second.period_start, second.period_end) == (PAID_START, mid)
    assert amounts(second) == [
        ("usage", "ai_tokens", Decimal("0.00")),  # Pro, graduated: 1.5M within the 2M free
        ("usage", "api_calls", Decimal("0.00")),  # none reported
        ("usage", "active_users", Decimal("24.00")),  # Pro: 3 users × 8.00
        ("usage", "storage_gb", Decimal("0.50")),  # Pro: max 5 GB × 0.10
        ("proration", "", Decimal("-22.13")),  # 49 × 14/31 back
        ("proration", "", Decimal("89.87")),  # 199 × 14/31 due
        ("credit", "", Decimal("-10.00")),
    ]
    # 24.00 + 0.50 − 22.13 + 89.87 = 92.24, less 10.00 credit
    assert (second.subtotal, second.credit_applied, second.total) == (
        Decimal("92.24"),
        Decimal("10.00"),
        Decimal("82.24"),
    )
    assert second.total == sum(a for _, _, a in amounts(second))
    assert (third.period_start, third.period_end) == (mid, PAID_END)
    assert amounts(third) == [
        ("usage", "ai_tokens", Decimal("27.00")),  # Team, volume: 1.5M × 0.000018
        ("usage", "api_calls", Decimal("0.00")),
        ("usage", "active_users", Decimal("0.00")),  # nobody active after the change
        ("usage", "storage_gb", Decimal("0.16")),  # Team: max 2 GB × 0.08
        ("base_fee", "", Decimal("199.00")),  # Team's fee for the period that opened, in advance
    ]
    assert third.total == Decimal("226.16")
    assert (second.number, third.number) == ("INV-2026-000002", "INV-2026-000003")
    assert credit_balance(tenant=acme, currency="USD") == 0
    assert second.tax_status == "not_calculated"
    assert second.buyer["name"] == "Acme"
    assert {line.currency for line in InvoiceLine.objects.all()} == {"USD"}


def test_each_usage_line_explains_itself(api, acme, reporter):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    report(api, reporter, "ai_tokens", 1_000_000, datetime(2026, 1, 20, tzinfo=UTC), n=3)
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)
    line = InvoiceLine.objects.get(kind="usage", metric="ai_tokens", period_start=PAID_START)
    why = line.explanation
    assert (why["aggregation"], why["model"], why["quantity"], why["plan"]) == ("sum", "graduated", "3000000", "pro")
    assert [t["amount"] for t in why["tiers"]] == ["0", "20"]  # 2M free, then 1M × 0.00002
    assert why["events"]["count"] == 3
    assert why["events"]["first_at"].startswith("2026-01-20")
    assert line.amount == Decimal("20.00")


def test_rerunning_the_close_never_bills_a_period_twice(api, acme):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 20, tzinfo=UTC))  # activate + 2 renewals
    assert invoices_close_due(now=datetime(2026, 4, 1, tzinfo=UTC)) == 3
    assert invoices_close_due(now=datetime(2026, 4, 1, tzinfo=UTC)) == 0
    assert invoice_close_periods(subscription_id=sub.pk, now=LATER) == []
    billed = BillingPeriod.objects.filter(subscription=sub, invoice__isnull=False).first()
    assert billed is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            tenant=acme, subscription=sub, period=billed, currency="USD", period_start=T0, period_end=T0
        )
    fee = InvoiceLine.objects.filter(kind="base_fee").first()
    assert fee is not None
    draft = Invoice.objects.create(tenant=acme, subscription=sub, currency="USD", period_start=T0, period_end=T0)
    with pytest.raises(IntegrityError), transaction.atomic():  # a second fee line for the same period
        InvoiceLine.objects.create(
            invoice=draft,
            position=1,
            kind="base_fee",
            description="again",
            amount=Decimal(49),
            currency="USD",
            billing_period=fee.billing_period,
        )
    assert Invoice.objects.exclude(pk=draft.pk).count() == 3
    numbers = sorted(str(n) for n in Invoice.objects.exclude(pk=draft.pk).values_list("number", flat=True))
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]


def test_a_period_waits_for_its_grace_window(api, acme, settings):
    settings.INVOICE_GRACE_MINUTES = 60
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    subscription_roll(subscription_id=sub.pk, at=PAID_START)
    assert invoices_close_due(now=PAID_START + timedelta(minutes=59)) == 0
    assert invoices_close_due(now=PAID_START + timedelta(minutes=60)) == 1


def test_late_usage_is_billed_on_the_next_invoice(api, acme, reporter):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    report(api, reporter, "ai_tokens", 2_500_000, datetime(2026, 1, 20, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)
    billed = InvoiceLine.objects.get(kind="usage", metric="ai_tokens", period_start=PAID_START)
    assert billed.amount == Decimal("10.00")  # 500k × 0.00002
    # 1M more tokens for January, reported after January's invoice was finalized
    report(api, reporter, "ai_tokens", 1_000_000, datetime(2026, 1, 25, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 15, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 20, tzinfo=UTC))
    late = InvoiceLine.objects.get(kind="late_usage")
    assert late.amount == Decimal("20.00")  # 3.5M now costs 30.00; 10.00 was billed
    assert (late.period_start, late.quantity) == (PAID_START, Decimal("3500000"))
    assert late.explanation["already_billed"]["amount"] == "10.00"
    # and the adjustment is not repeated by the invoice after that
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 4, 15, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 4, 20, tzinfo=UTC))
    assert InvoiceLine.objects.filter(kind="late_usage").count() == 1


def test_cancelling_now_bills_the_usage_so_far(api, acme, reporter):
    from subscriptions.services import subscription_cancel

    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)  # no trial: fee up front
    report(api, reporter, "active_users", 1, datetime(2026, 1, 3, tzinfo=UTC), n=2, user_ref="u")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", reason="", at=datetime(2026, 1, 10, tzinfo=UTC))
    invoices_close_due(now=LATER)
    opening, closing = Invoice.objects.order_by("number")
    assert amounts(opening) == [("base_fee", "", Decimal("24000.00"))]
    assert ("usage", "active_users", Decimal("12.00")) in amounts(closing)  # 2 users × 6.00
    assert closing.period_end == datetime(2026, 1, 10, tzinfo=UTC)
    assert sub.pk == closing.subscription_id


def test_the_explanations_link_lists_exactly_the_events_behind_the_line(api, acme, reporter, admin_client):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    report(api, reporter, "ai_tokens", 10, datetime(2026, 1, 20, tzinfo=UTC), n=2)
    report(api, reporter, "ai_tokens", 10, datetime(2026, 2, 20, tzinfo=UTC))  # next period: not behind it
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)
    events = InvoiceLine.objects.get(kind="usage", metric="ai_tokens").explanation["events"]
    page = admin_client.get(events["list_url"])
    assert page.status_code == 200
    assert page.context["cl"].result_count == 2


def test_each_close_bills_what_was_due_at_its_time(api, acme):
    """The close runs as time passes: the trial's end bills Pro's fee alone; a change
    mid-period closes the Pro part (its usage and the proration); the period's end bills
    the Team part and Team's next fee. A plan change made later never rides on an
    earlier invoice."""
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    grace = timedelta(hours=2)
    subscription_roll(subscription_id=sub.pk, at=PAID_START)
    assert invoices_close_due(now=PAID_START + grace) == 1
    mid = datetime(2026, 2, 1, tzinfo=UTC)
    subscription_change_plan(tenant=acme, plan_code="team", when="now", actor="t", at=mid)
    assert invoices_close_due(now=mid + grace) == 1
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    assert invoices_close_due(now=PAID_END + grace) == 1
    first, second, third = Invoice.objects.order_by("number")
    assert [k for k, _, _ in amounts(first)] == ["base_fee"]
    assert [k for k, _, _ in amounts(second)] == ["usage"] * 4 + ["proration"] * 2
    assert {line.explanation["plan"] for line in second.lines.filter(kind="usage")} == {"pro"}
    assert [k for k, _, _ in amounts(third)] == ["usage"] * 4 + ["base_fee"]
    assert {line.explanation["plan"] for line in third.lines.filter(kind="usage")} == {"team"}


def test_late_usage_after_the_subscription_ended_gets_an_invoice_of_its_own(api, acme, reporter):
    from invoicing.services import invoices_late_usage_due
    from subscriptions.services import subscription_cancel

    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    report(api, reporter, "active_users", 1, datetime(2026, 1, 3, tzinfo=UTC), n=2, user_ref="u")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", reason="", at=datetime(2026, 1, 10, tzinfo=UTC))
    with time_machine.travel(LATER, tick=False):  # drafted at LATER, not on whatever day the suite runs
        invoices_close_due(now=LATER)
    assert invoices_late_usage_due(now=LATER) == 0  # nothing arrived since
    # a third user's event for January arrives after the last invoice
    report(api, reporter, "active_users", 1, datetime(2026, 1, 5, tzinfo=UTC), n=1, user_ref="late")
    assert invoices_late_usage_due(now=LATER) == 1
    late = Invoice.objects.filter(lines__kind="late_usage").get()
    assert amounts(late) == [("late_usage", "active_users", Decimal("6.00"))]  # 3 users now, 2 billed
    assert (late.status, late.subscription_id, late.total) == ("open", sub.pk, Decimal("6.00"))
    assert invoices_late_usage_due(now=LATER) == 0  # a rerun bills nothing twice


def test_usage_a_moment_before_cancelling_now_is_billed(api, acme, reporter):
    from subscriptions.services import subscription_cancel

    subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    cancel_at = datetime(2026, 1, 10, 12, 0, 0, 500_000, tzinfo=UTC)
    report(api, reporter, "active_users", 1, cancel_at - timedelta(microseconds=1), user_ref="u")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", reason="", at=cancel_at)
    invoices_close_due(now=LATER)
    closing = Invoice.objects.get(period_end=cancel_at)
    assert ("usage", "active_users", Decimal("6.00")) in amounts(closing)


def test_late_usage_is_found_whatever_the_services_clock_says(api, acme, reporter, settings):
    """The look-back compared usage's received_at (the database's clock) with the last draft's
    created_at (the service's): with the service's clock ahead of the database's by more than
    the hour of margin, late usage was never found. The draft's drafted_at is on the
    database's clock, as received_at is."""
    from invoicing.services import invoices_late_usage_due
    from subscriptions.services import subscription_cancel

    settings.LATE_USAGE_WINDOW_DAYS = 40_000  # the service's clock below is a century ahead
    ahead = datetime(2126, 1, 1, tzinfo=UTC)
    subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    report(api, reporter, "active_users", 1, datetime(2026, 1, 3, tzinfo=UTC), n=2, user_ref="u")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", reason="", at=datetime(2026, 1, 10, tzinfo=UTC))
    with time_machine.travel(ahead, tick=False):
        invoices_close_due(now=ahead)
    drafted = Invoice.objects.order_by("-created_at").first()
    assert drafted is not None
    assert drafted.created_at == ahead  # the service's clock
    assert drafted.drafted_at is not None
    assert drafted.drafted_at < ahead
    report(api, reporter, "active_users", 1, datetime(2026, 1, 5, tzinfo=UTC), n=1, user_ref="late")
    with time_machine.travel(ahead, tick=False):
        assert invoices_late_usage_due(now=ahead) == 1
