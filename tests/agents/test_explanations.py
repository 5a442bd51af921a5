"""Answers an assistant can quote (API.md): an invoice's explanation, line by line, and a
tenant's billing summary. Read with `billing:read`; a key bound to another tenant gets 404."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import Invoice
from tests.agents.demo import bearer

pytestmark = [pytest.mark.django_db]


def test_an_invoice_explains_each_line_what_was_measured_the_price_and_the_events(api, demo):
    invoice = Invoice.objects.get(tenant__external_id="acme-demo", status="open")
    response = api.get(f"/api/v1/invoices/{invoice.number}/explanation", **bearer(demo["agent_key"]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["number"], body["tenant"], body["currency"], body["total"]) == (
        invoice.number,
        "acme-demo",
        "USD",
        "308.20",
    )
    lines = {line["metric"] or line["kind"]: line for line in body["lines"]}
    tokens = lines["ai_tokens"]
    assert tokens["measured"] == {"metric": "ai_tokens", "aggregation": "sum"}
    assert tokens["quantity"] == "4200000"
    assert tokens["amount"] == "75.60"
    assert tokens["price"]["plan"] == "team"
    tiers = tokens["price"]["tiers"]
    assert tiers  # which tier priced what
    assert sum(Decimal(t["amount"]) for t in tiers) == Decimal(tokens["unrounded_amount"])
    assert tokens["events"]["count"] == 4  # the four reports behind it
    assert tokens["worked"]  # the arithmetic, row by row
    assert any("75.60" in row for row in tokens["worked"])
    fee = lines["base_fee"]
    assert (fee["amount"], fee["measured"], fee["price"]) == ("199.00", None, None)
    assert sum(Decimal(line["amount"]) for line in body["lines"]) == Decimal(body["subtotal"])


def test_the_billing_summary_says_where_the_tenant_stands(api, demo):
    response = api.get("/api/v1/tenants/acme-demo/billing/summary", **bearer(demo["agent_key"]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["tenant"], body["name"], body["currency"]) == ("acme-demo", "Acme Demo GmbH", "USD")
    assert body["subscription"]["plan"] == "team"
    assert body["subscription"]["status"] == "active"
    assert {"start", "end"} <= set(body["subscription"]["current_period"])
    seats = next(limit for limit in body["limits"] if limit["feature"] == "seats")
    assert (seats["allowed"], seats["used"], seats["limit"]) == (True, "2", "200")
    assert body["cost_to_date"]["base_fee"] == "199.00"
    assert body["credit_balance"] == "0.00"
    assert [i["total"] for i in body["open_invoices"]] == ["308.20"]
    assert body["amount_due"] == {"USD": "308.20"}
    assert body["at_period_end"]["what"] == "renews"
    assert body["at_period_end"]["at"] == body["subscription"]["current_period"]["end"]


def test_explanations_follow_the_api_rules(api, demo, make_key):
    invoice = Invoice.objects.get(tenant__external_id="acme-demo", status="open")
    other = make_key("agent", tenant="demo", name="demo's own agent")
    assert api.get(f"/api/v1/invoices/{invoice.number}/explanation", **other.header).status_code == 404
    assert api.get("/api/v1/tenants/acme-demo/billing/summary", **other.header).status_code == 404
    no_scope = make_key("agent", scopes=["entitlements:read"], name="checks only")
    assert api.get("/api/v1/tenants/acme-demo/billing/summary", **no_scope.header).status_code == 403
    assert api.get("/api/v1/invoices/INV-1999-000001/explanation", **bearer(demo["agent_key"])).status_code == 404
    assert api.get(f"/api/v1/invoices/{invoice.number}/explanation").status_code == 401
