"""The billing view's cost to date tells what is already invoiced from what is still to come:
a yearly plan's base fee is billed in advance, so once its invoice is out it is no longer
"to come" (a yearly plan once showed 25,312.00 to date, 24,000.00 of it billed already)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from invoicing.tasks import close_periods
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]

T0 = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)  # the subscription starts: its yearly fee is due


def billing(api, key):
    response = api.get("/api/v1/tenants/acme/billing", **key.header)
    assert response.status_code == 200, response.content
    return response.json()["cost_to_date"]


def report_users(api, key, at: datetime, count: int) -> None:
    events = [
        {
            "tenant": "acme",
            "metric": "active_users",
            "quantity": "1",
            "idempotency_key": f"u{i}",
            "occurred_at": at.isoformat(),
            "properties": {"user_ref": f"user-{i}"},
        }
        for i in range(count)
    ]
    response = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    assert response.status_code == 200, response.content


def test_a_yearly_fee_invoiced_in_advance_is_not_still_to_come(api, make_key):
    key = make_key("service", metrics=["active_users"])
    with time_machine.travel(T0, tick=False):
        catalog_import(spec=catalog_validate(demo()))
        tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
        subscription_create(tenant=tenant, plan_code="enterprise", actor="t")  # yearly, 24,000.00, no trial

    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        report_users(api, key, T0 + timedelta(minutes=5), 3)  # 3 × 6.00
        before = billing(api, key)
    # Within the grace window the fee's invoice is not out yet: all of it is to come.
    assert (before["base_fee"], before["usage"], before["total"]) == ("24000.00", "18.00", "24018.00")
    assert (before["invoiced"], before["to_come"]) == ("0.00", "24018.00")
    assert before["lines"][0] == {"kind": "base_fee", "amount": "24000.00", "invoiced": False, "invoices": []}

    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert close_periods() == 1  # the boundary that opened the year: its fee, in advance
        from invoicing.models import Invoice

        invoice = Invoice.objects.get(tenant=tenant)
        report_users(api, key, T0 + timedelta(hours=1, minutes=30), 5)  # 5 distinct users in all
        after = billing(api, key)
    assert (after["base_fee"], after["usage"], after["total"]) == ("24000.00", "30.00", "24030.00")
    assert (after["invoiced"], after["to_come"]) == ("24000.00", "30.00")
    assert after["lines"] == [
        {"kind": "base_fee", "amount": "24000.00", "invoiced": True, "invoices": [invoice.number]},
        {"kind": "usage", "amount": "30.00", "invoiced": False, "invoices": []},
    ]
    assert invoice.total == 24000


def test_a_trial_has_nothing_invoiced_and_nothing_to_come(api, make_key):
    key = make_key("service", metrics=["active_users"])
    with time_machine.travel(T0, tick=False):
        catalog_import(spec=catalog_validate(demo()))
        tenant_upsert(external_id="acme", name="Acme", currency="USD")
        from subscriptions.models import Tenant

        subscription_create(tenant=Tenant.objects.get(external_id="acme"), plan_code="pro", actor="t")
        cost = billing(api, key)
    assert (cost["total"], cost["invoiced"], cost["to_come"], cost["in_trial"]) == ("0.00", "0.00", "0.00", True)
