"""A hand-built ledger with known amounts at known dates, for the finance overview's tests.

The clock is set to T = 2027-01-10 09:30 UTC ("this month" is January 2027, the month before
is December of another year, and the twelve months of revenue run from February 2026).
Every record is made at its own instant (time-machine), by the services where they exist.
What each figure must come to is worked out by hand in EXPECTED, below the builder.

Subscriptions (all started 2026-12-01 unless said):
  acme  USD starter 49.00/month   active
  bolt  USD annual 1,000.00/year  active
  core  USD starter               past due since 2027-01-03
  dusk  USD starter               suspended 2027-01-05
  euro  EUR euro 20.00/month      active
  kyo   JPY yen 7,500/month       active
  tria  USD trial 99.00/month     trialing (started 2027-01-05, 14 days)
  gone  USD starter               canceled 2026-12-15

Invoices (finalized at, total, then; due = finalized + 14 days):
  i1  acme 2026-12-01 10:00      49.00 USD  paid 2026-12-05 (refunded 10.00 on 2026-12-20)
  i12 acme 2026-12-31 23:59:59   60.00 USD  paid 2027-01-01 00:00 (the month's first instant)
  i2  acme 2027-01-02 10:00   1,200.00 USD  paid 2027-01-03; credit note 100.00 as credit on
                                            01-06; refund 200.00 succeeded 01-07 (its credit
                                            note 200.00); refunds 30.00 failed, 25.00 submitted
  i10 bolt 2027-01-01 00:00      40.00 USD  voided 2027-01-04
  i3  bolt 2027-01-09 10:00     300.00 USD  less 10.00 credit granted 01-08 → 290.00, open (not due)
  i4  core 2026-12-17 09:30      20.00 USD  open, due 2026-12-31 09:30: 10 days past due
  i5  core 2026-11-27 09:30       5.00 USD  open, 30 days past due (the 0–30 edge)
  i6  dusk 2026-11-26 09:30       7.00 USD  open, 31 days past due
  i7  dusk 2026-10-13 09:30      11.00 USD  open, 75 days past due
  i8  dusk 2026-09-27 09:30      13.00 USD  open, 91 days past due
  i9  gone 2026-09-01 10:00      17.00 USD  uncollectible 2026-12-01 (written off)
  i13 gone 2026-01-31 23:00      99.00 USD  paid (before the twelve months)
  i14 gone 2026-02-01 00:00       1.00 USD  paid (the twelve months' first instant)
  e1  euro 2027-01-03 10:00      20.00 EUR  paid 2027-01-04
  e2  euro 2026-06-01 10:00      50.00 EUR  open, 209 days past due
  j1  kyo  2027-01-05 10:00     75,000 JPY  open (not due)
  and a draft of 999.00 USD for acme, never finalized.

Credit ledger: gone +25.00 USD (staff, 2026-12-28); acme +100.00 USD (credit note, 01-06);
bolt +10.00 USD (staff, 01-08) then −10.00 applied to i3 (01-09); euro +15.00 EUR (staff,
01-08); kyo +1,000 JPY (staff, 01-09).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import time_machine
from django.test import override_settings

from billing_project.models import TaskFailure, WorkItem
from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import CreditNote, Invoice, InvoiceLine, Refund
from invoicing.services import (
    credit_note_issue,
    invoice_finalize,
    invoice_mark_paid,
    invoice_mark_uncollectible,
    invoice_void,
)
from plans.models import BillableMetric
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription, Tenant
from subscriptions.services import subscription_apply, subscription_cancel, subscription_create, tenant_upsert
from usage.models import UsageRollup, UsageUniqueValue

T = datetime(2027, 1, 10, 9, 30, tzinfo=UTC)


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


CATALOG: dict[str, Any] = {
    "currency": "USD",
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count"},
        {"code": "peak_gb", "name": "Peak storage", "aggregation": "max"},
        {"code": "seats", "name": "Seats", "aggregation": "latest"},
        {"code": "tokens", "name": "Tokens", "aggregation": "sum"},
        {"code": "users", "name": "Users", "aggregation": "unique_count", "unique_property": "user",
         "properties": ["user"]},
    ],
    "features": [{"code": "chat", "name": "Chat"}],
    "plans": [
        {"code": "starter", "name": "Starter", "interval": "month", "currency": "USD", "base_fee": "49.00"},
        {"code": "annual", "name": "Annual", "interval": "year", "currency": "USD", "base_fee": "1000.00"},
        {"code": "euro", "name": "Euro", "interval": "month", "currency": "EUR", "base_fee": "20.00"},
        {"code": "yen", "name": "Yen", "interval": "month", "currency": "JPY", "base_fee": "7500"},
        {"code": "trial", "name": "Trial", "interval": "month", "currency": "USD", "base_fee": "99.00",
         "trial_days": 14},
    ],
}  # fmt: skip


@dataclass
class Ledger:
    tenants: dict[str, Tenant]
    invoices: dict[str, Invoice]


def _issue(tenant: Tenant, amount: str, when: datetime, currency: str = "USD") -> Invoice:
    with time_machine.travel(when, tick=False):
        draft = Invoice.objects.create(tenant=tenant, currency=currency, period_start=when, period_end=when)
        InvoiceLine.objects.create(
            invoice=draft, position=1, kind="base_fee", description="fee", amount=Decimal(amount), currency=currency
        )
        return invoice_finalize(invoice_id=draft.pk, now=when)


def _paid(invoice: Invoice, when: datetime) -> Invoice:
    return invoice_mark_paid(invoice_id=invoice.pk, at=when)


def _grant(tenant: Tenant, amount: str, currency: str, when: datetime) -> None:
    with time_machine.travel(when, tick=False):
        credit_grant(tenant=tenant, amount=Money(Decimal(amount), currency), reason="goodwill", actor="staff:ann")


def _refunded(invoice: Invoice, amount: str, when: datetime, stripe_id: str) -> Refund:
    """A refund Stripe confirmed: its credit note settled by refund, as invoicing.refunds leaves it."""
    with time_machine.travel(when, tick=False):
        note = credit_note_issue(
            invoice_id=invoice.pk,
            lines={1: Decimal(amount)},
            reason="refund",
            actor="staff:ann",
            settlement=CreditNote.Settlement.REFUND,
            now=when,
        )
        return Refund.objects.create(
            invoice=invoice,
            tenant=invoice.tenant,
            amount=Decimal(amount),
            currency=invoice.currency,
            reason="customer asked",
            status=Refund.Status.SUCCEEDED,
            request_key=stripe_id,
            requested_by="staff:ann",
            stripe_refund_id=stripe_id,
            credit_note=note,
            submitted_at=when,
            succeeded_at=when,
        )


@override_settings(INVOICE_DUE_DAYS=14, STRIPE_COLLECTION_ENABLED=False, STRIPE_TAX_ENABLED=False)
def build() -> Ledger:
    catalog_import(spec=catalog_validate(CATALOG))
    currencies = {"euro": "EUR", "kyo": "JPY"}
    tenants = {
        code: tenant_upsert(external_id=code, name=f"{code.title()} Ltd", currency=currencies.get(code, "USD"))[0]
        for code in ("acme", "bolt", "core", "dusk", "euro", "kyo", "tria", "gone")
    }
    plans = {"bolt": "annual", "euro": "euro", "kyo": "yen"}
    for code in ("acme", "bolt", "core", "dusk", "euro", "kyo", "gone"):
        subscription_create(
            tenant=tenants[code], plan_code=plans.get(code, "starter"), actor="test", at=at(2026, 12, 1)
        )
    subscription_create(tenant=tenants["tria"], plan_code="trial", actor="test", at=at(2027, 1, 5))

    def live(code: str) -> Subscription:
        return Subscription.objects.get(tenant=tenants[code], status__in=("active", "past_due", "suspended"))

    with time_machine.travel(at(2026, 12, 15), tick=False):
        subscription_cancel(tenant=tenants["gone"], actor="test", reason="left", at_period_end=False)
    with time_machine.travel(at(2027, 1, 3), tick=False):
        subscription_apply(subscription=live("core"), action="mark_past_due", actor="test", reason="card declined")
    with time_machine.travel(at(2027, 1, 5), tick=False):
        subscription_apply(subscription=live("dusk"), action="suspend", actor="test", reason="fraud check")

    t = tenants
    inv: dict[str, Invoice] = {}
    inv["i13"] = _paid(_issue(t["gone"], "99.00", at(2026, 1, 31, 23)), at(2026, 2, 5))
    inv["i14"] = _paid(_issue(t["gone"], "1.00", at(2026, 2, 1)), at(2026, 2, 2))
    inv["e2"] = _issue(t["euro"], "50.00", at(2026, 6, 1, 10), "EUR")
    inv["i9"] = _issue(t["gone"], "17.00", at(2026, 9, 1, 10))
    invoice_mark_uncollectible(invoice_id=inv["i9"].pk, actor="test", at=at(2026, 12, 1))
    inv["i8"] = _issue(t["dusk"], "13.00", at(2026, 9, 27, 9, 30))
    inv["i7"] = _issue(t["dusk"], "11.00", at(2026, 10, 13, 9, 30))
    inv["i6"] = _issue(t["dusk"], "7.00", at(2026, 11, 26, 9, 30))
    inv["i5"] = _issue(t["core"], "5.00", at(2026, 11, 27, 9, 30))
    inv["i1"] = _paid(_issue(t["acme"], "49.00", at(2026, 12, 1, 10)), at(2026, 12, 5))
    inv["i4"] = _issue(t["core"], "20.00", at(2026, 12, 17, 9, 30))
    inv["i12"] = _paid(_issue(t["acme"], "60.00", at(2026, 12, 31, 23, 59, 59)), at(2027, 1, 1))
    inv["i10"] = _issue(t["bolt"], "40.00", at(2027, 1, 1))
    inv["i2"] = _paid(_issue(t["acme"], "1200.00", at(2027, 1, 2, 10)), at(2027, 1, 3))
    inv["e1"] = _paid(_issue(t["euro"], "20.00", at(2027, 1, 3, 10), "EUR"), at(2027, 1, 4))
    invoice_void(invoice_id=inv["i10"].pk, reason="sent twice", actor="test", at=at(2027, 1, 4))
    inv["j1"] = _issue(t["kyo"], "75000", at(2027, 1, 5, 10), "JPY")
    with time_machine.travel(at(2027, 1, 6), tick=False):
        Invoice.objects.create(tenant=t["acme"], currency="USD", period_start=T, period_end=T)  # a draft
        InvoiceLine.objects.create(
            invoice=Invoice.objects.get(status="draft"),
            position=1,
            kind="base_fee",
            description="fee",
            amount=Decimal("999.00"),
            currency="USD",
        )

    # refunds and credit notes
    _refunded(inv["i1"], "10.00", at(2026, 12, 20), "re_dec")
    with time_machine.travel(at(2027, 1, 6), tick=False):
        credit_note_issue(invoice_id=inv["i2"].pk, lines={1: Decimal("100.00")}, reason="outage", actor="staff:ann")
    _refunded(inv["i2"], "200.00", at(2027, 1, 7), "re_jan")
    with time_machine.travel(at(2027, 1, 8), tick=False):
        for status, amount, extra in (
            ("failed", "30.00", {"failed_at": at(2027, 1, 8), "failure_reason": "card expired"}),
            ("submitted", "25.00", {"stripe_refund_id": "re_pending", "submitted_at": at(2027, 1, 8)}),
        ):
            Refund.objects.create(
                invoice=inv["i2"],
                tenant=t["acme"],
                amount=Decimal(amount),
                currency="USD",
                reason="asked",
                status=status,
                request_key=status,
                requested_by="staff:ann",
                **extra,
            )

    # credit grants; bolt's is used by its next invoice
    _grant(t["gone"], "25.00", "USD", at(2026, 12, 28))
    _grant(t["bolt"], "10.00", "USD", at(2027, 1, 8))
    _grant(t["euro"], "15.00", "EUR", at(2027, 1, 8))
    _grant(t["kyo"], "1000", "JPY", at(2027, 1, 9))
    inv["i3"] = _issue(t["bolt"], "300.00", at(2027, 1, 9, 10))

    # operations
    with time_machine.travel(at(2027, 1, 9), tick=False):
        for n in range(3):
            TaskFailure.objects.create(
                task_name="invoicing.collect",
                task_id=f"task-{n}",
                exception_type="RuntimeError",
                message="boom",
                resolved_at=at(2027, 1, 9) if n == 2 else None,
            )
        for n, (job, state) in enumerate(
            [("invoicing.collect", "blocked"), ("webhooks.event", "blocked"), ("invoicing.collect", "retrying"),
             ("invoicing.close", "done")]
        ):  # fmt: skip
            WorkItem.objects.create(
                job=job,
                object_id=n,
                subject=f"item {n}",
                state=state,
                attempts=1,
                first_failed_at=at(2027, 1, 9),
                last_failed_at=at(2027, 1, 9),
                next_attempt_at=at(2027, 1, 10) if state == "retrying" else None,
                blocked_at=at(2027, 1, 9) if state == "blocked" else None,
                blocked_reason="Stripe refused it" if state == "blocked" else "",
            )

    _usage(t)
    return Ledger(tenants, inv)


def _usage(t: dict[str, Tenant]) -> None:
    metric = {m.code: m for m in BillableMetric.objects.all()}

    def rollup(tenant: str, code: str, hour: datetime, **values: Any) -> None:
        UsageRollup.objects.create(tenant=t[tenant], metric=metric[code], hour=hour, **values)

    rollup("acme", "api_calls", at(2026, 12, 11, 23), count=100, sum=100)  # the day before the window
    rollup("acme", "api_calls", at(2026, 12, 12, 0), count=3, sum=3)  # the window's first hour
    rollup("acme", "api_calls", at(2027, 1, 10, 8), count=5, sum=5)
    rollup("bolt", "api_calls", at(2027, 1, 10, 9), count=7, sum=7)
    rollup("acme", "tokens", at(2027, 1, 9, 10), count=1, sum=Decimal("1.5"))
    rollup("acme", "tokens", at(2027, 1, 9, 23), count=1, sum=Decimal("2.25"))
    rollup("acme", "peak_gb", at(2027, 1, 9, 10), count=1, sum=4, max=4)
    rollup("bolt", "peak_gb", at(2027, 1, 9, 11), count=1, sum=9, max=9)
    for tenant, hour, latest_at, value, event in (
        ("acme", at(2027, 1, 9, 10), at(2027, 1, 9, 10, 15), 3, 1),
        ("acme", at(2027, 1, 9, 20), at(2027, 1, 9, 20, 30), 5, 2),
        ("bolt", at(2027, 1, 9, 12), at(2027, 1, 9, 12, 5), 2, 3),
    ):
        rollup(tenant, "seats", hour, count=1, sum=value, max=value, latest_at=latest_at, latest_value=value,
               latest_event_id=event)  # fmt: skip
    for tenant, hour, user in (
        ("acme", at(2027, 1, 9, 10), "u1"),
        ("acme", at(2027, 1, 9, 10), "u2"),
        ("acme", at(2027, 1, 9, 11), "u2"),
        ("acme", at(2027, 1, 9, 11), "u3"),
        ("bolt", at(2027, 1, 9, 10), "u1"),
    ):
        UsageUniqueValue.objects.create(tenant=t[tenant], metric=metric["users"], hour=hour, value=user)


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def eur(amount: str) -> Money:
    return Money(Decimal(amount), "EUR")


def jpy(amount: str) -> Money:
    return Money(Decimal(amount), "JPY")
