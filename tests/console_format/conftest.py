"""An enterprise customer a year on: a usage invoice whose tokens reach the tier with a flat
fee (100,000,000 × 0.000008 + 500.00 = 1,300.00), a base fee in the thousands, a credit
applied to the first invoice, and a plan change's proration items on another tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import Invoice
from invoicing.services import invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription, Tenant
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo

T0 = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)
LATER = datetime(2027, 1, 3, tzinfo=UTC)


@pytest.fixture
def catalog(db: None) -> None:
    catalog_import(spec=catalog_validate(demo()))


@pytest.fixture
def bigcorp(catalog: None) -> Tenant:
    return tenant_upsert(
        external_id="bigcorp",
        name="Big Corp Holdings",
        billing_email="ap@bigcorp.example",
        country="DE",
        currency="USD",
    )[0]


def report(api: Any, key: Any, metric: str, quantity: int, at: datetime, n: int = 1) -> None:
    events = [
        {
            "tenant": "bigcorp",
            "metric": metric,
            "quantity": str(quantity),
            "idempotency_key": f"{metric}-{at.isoformat()}-{i}",
            "occurred_at": at.isoformat(),
            "properties": {"user_ref": f"u-{i}"} if metric == "active_users" else {},
        }
        for i in range(n)
    ]
    with time_machine.travel(at + timedelta(minutes=1), tick=False):
        response = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    assert response.json()["accepted"] == n, response.content


@pytest.fixture
def enterprise_year(api: Any, make_key: Any, bigcorp: Tenant) -> Subscription:
    """Enterprise from T0 (no trial): its first year's fee, 250.00 of credit, 600,000,000
    tokens and 3 active users in the year, then the year's close."""
    sub = subscription_create(tenant=bigcorp, plan_code="enterprise", actor="test", at=T0)
    credit_grant(tenant=bigcorp, amount=Money(Decimal("250.00"), "USD"), reason="goodwill", actor="staff:ann")
    invoices_close_due(now=T0 + timedelta(hours=2))  # the first year's fee, in advance
    reporter = make_key("service", metrics=["ai_tokens", "active_users"])
    report(api, reporter, "ai_tokens", 600_000_000, datetime(2026, 2, 1, tzinfo=UTC))
    report(api, reporter, "active_users", 1, datetime(2026, 2, 2, tzinfo=UTC), n=3)
    subscription_roll(subscription_id=sub.pk, at=YEAR_END)
    invoices_close_due(now=LATER)
    return sub


@pytest.fixture
def usage_invoice(enterprise_year: Subscription) -> Invoice:
    """The year's close: tokens 1,300.00, users 18.00, next year's fee 24,000.00."""
    return Invoice.objects.filter(subscription=enterprise_year, lines__kind="usage").distinct().get()


@pytest.fixture
def fee_invoice(enterprise_year: Subscription) -> Invoice:
    """The first year's fee, 24,000.00, less 250.00 of credit: 23,750.00 due."""
    return Invoice.objects.filter(subscription=enterprise_year).exclude(lines__kind="usage").get()
