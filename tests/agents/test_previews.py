"""What would happen, computed by the code that would do it and then undone (API.md):
the upcoming invoice by the period close itself, a plan change with its proration."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceLine, InvoiceSequence
from subscriptions.models import ProrationItem, Subscription, SubscriptionEvent
from tests.agents.demo import bearer

pytestmark = [pytest.mark.django_db]


def counts() -> tuple[object, ...]:
    return (
        sorted(InvoiceSequence.objects.values_list("series", "year", "last_number")),  # no number taken
        Invoice.objects.count(),
        InvoiceLine.objects.count(),
        SubscriptionEvent.objects.count(),
        ProrationItem.objects.count(),
        Subscription.objects.filter(status="active").count(),
    )


def test_the_upcoming_invoice_is_the_period_close_as_it_stands_and_writes_nothing(api, demo):
    before = counts()
    response = api.get("/api/v1/tenants/acme-demo/invoices/upcoming", **bearer(demo["agent_key"]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["number"], body["currency"]) == ("upcoming", None, "USD")
    lines = {line["metric"] or line["kind"]: line["amount"] for line in body["lines"]}
    assert lines == {
        "ai_tokens": "16.20",  # 900,000 tokens so far at 0.000018
        "active_users": "0.00",  # 2 users, 10 free
        "storage_gb": "10.00",  # 125 GB at most, at 0.08
        "api_calls": "0.00",
        "base_fee": "199.00",  # the next month, in advance
    }
    assert Decimal(body["total"]) == Decimal("225.20")
    summary = api.get("/api/v1/tenants/acme-demo/billing/summary", **bearer(demo["agent_key"])).json()
    assert summary["cost_to_date"]["total"] == body["total"]  # the same money, two ways
    assert counts() == before  # nothing written, no number taken
    trial = api.get("/api/v1/tenants/demo/invoices/upcoming", **bearer(demo["agent_key"])).json()
    assert [line["kind"] for line in trial["lines"]] == ["base_fee"]  # the trial's end: pro's first month
    assert trial["total"] == "49.00"


def test_no_live_subscription_no_upcoming_invoice(api, demo):
    from subscriptions.services import tenant_upsert

    tenant_upsert(external_id="idle", name="Idle", currency="USD")
    response = api.get("/api/v1/tenants/idle/invoices/upcoming", **bearer(demo["agent_key"]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_upcoming_invoice"


def test_a_plan_change_preview_shows_the_change_and_its_proration_and_applies_nothing(api, demo):
    sub = Subscription.objects.get(tenant__external_id="acme-demo")
    before = counts()
    response = api.post(
        "/api/v1/tenants/acme-demo/subscription/change",
        {"plan": "enterprise", "when": "now", "preview": True},
        format="json",
        **bearer(demo["service_key"]),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["preview"], body["applied"], body["when"]) == (True, False, "now")
    assert body["subscription"]["plan"] == "enterprise"  # what it would be
    assert body["proration"]  # a credit for the rest of team's month, a charge for enterprise's
    assert counts() == before
    sub.refresh_from_db()
    assert sub.plan_version.plan.code == "team"  # nothing applied
    applied = api.post(
        "/api/v1/tenants/acme-demo/subscription/change",
        {"plan": "enterprise", "when": "now"},
        format="json",
        **bearer(demo["service_key"]),
    ).json()
    assert applied["applied"] is True
    assert [p["amount"] for p in applied["proration"]] == [p["amount"] for p in body["proration"]]  # as previewed


def test_an_agent_key_cannot_use_the_write_route_even_to_preview(api, demo):
    response = api.post(
        "/api/v1/tenants/acme-demo/subscription/change",
        {"plan": "enterprise", "preview": True},
        format="json",
        **bearer(demo["agent_key"]),
    )
    assert response.status_code == 403  # an agent proposes a plan_change; the approver sees its preview
