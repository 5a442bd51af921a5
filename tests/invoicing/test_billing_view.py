"""GET /api/v1/tenants/{tenant}/billing: the subscription, usage so far this period with its
cost to date, the credit balance and the last invoices (API.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


def NOW() -> str:  # noqa: N802
    # the suite's clock, frozen by `acme`: the subscriptions below start at this instant
    return datetime.now(UTC).isoformat()


@pytest.fixture
def acme(db, clock):
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


def test_usage_so_far_with_its_cost_to_date(api, make_key, acme, clock):
    subscription_create(tenant=acme, plan_code="enterprise", actor="t")  # no trial
    key = make_key("service", metrics=["active_users", "ai_tokens"])
    events = [
        {
            "tenant": "acme",
            "metric": "active_users",
            "quantity": "1",
            "idempotency_key": f"u{i}",
            "occurred_at": NOW(),
            "properties": {"user_ref": f"user-{i % 3}"},
        }
        for i in range(7)
    ]
    api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    clock.shift(timedelta(minutes=1))  # "so far" is [period start, now): asked a minute later
    body = api.get("/api/v1/tenants/acme/billing", **key.header).json()
    assert body["subscription"]["plan"] == "enterprise"
    users = next(line for line in body["usage"] if line["metric"] == "active_users")
    assert (users["quantity"], users["cost_to_date"]) == ("3", "18.00")  # 3 distinct users × 6.00
    cost = body["cost_to_date"]
    assert (cost["base_fee"], cost["usage"], cost["total"], cost["in_trial"]) == (
        "24000.00",
        "18.00",
        "24018.00",
        False,
    )
    assert body["credit_balance"] == "0.00"
    assert body["invoices"] == []


def test_a_trial_shows_usage_but_costs_nothing(api, make_key, acme, clock):
    subscription_create(tenant=acme, plan_code="pro", actor="t")
    key = make_key("service", metrics=["api_calls"])
    api.post(
        "/api/v1/usage/events",
        {"tenant": "acme", "metric": "api_calls", "quantity": "1", "idempotency_key": "a", "occurred_at": NOW()},
        format="json",
        **key.header,
    )
    clock.shift(timedelta(minutes=1))
    body = api.get("/api/v1/tenants/acme/billing", **key.header).json()
    assert body["cost_to_date"]["total"] == "0.00"
    assert body["cost_to_date"]["in_trial"] is True
    assert next(x for x in body["usage"] if x["metric"] == "api_calls")["quantity"] == "1"


def test_without_a_subscription(api, service_key, acme):
    body = api.get("/api/v1/tenants/acme/billing", **service_key.header).json()
    assert (body["subscription"], body["cost_to_date"], body["usage"]) == (None, None, [])
