"""GET /api/v1/plans, /plans/{code} and POST /api/v1/pricing/estimate, as API.md writes them."""

from __future__ import annotations

import pytest

from plans.services import catalog_import, catalog_validate
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def demo_catalog() -> None:
    catalog_import(spec=catalog_validate(demo()))


def estimate(api, key, body):
    return api.post("/api/v1/pricing/estimate", body, format="json", **key.header)


def test_plans_list_shows_each_published_plan_with_its_terms(api, agent_key):
    response = api.get("/api/v1/plans", **agent_key.header)
    assert response.status_code == 200
    plans = {p["code"]: p for p in response.json()["plans"]}
    assert list(plans) == ["enterprise", "free", "pro", "team"]
    pro = plans["pro"]
    assert (pro["version"], pro["interval"], pro["currency"], pro["base_fee"], pro["trial_days"]) == (
        1,
        "month",
        "USD",
        "49.00",
        14,
    )
    tokens = next(c for c in pro["charges"] if c["metric"] == "ai_tokens")
    assert tokens["model"] == "graduated"
    assert tokens["tiers"] == [
        {"up_to": "2000000", "unit_price": "0.00", "flat_fee": "0.00"},
        {"up_to": "10000000", "unit_price": "0.00002", "flat_fee": "0.00"},
        {"up_to": None, "unit_price": "0.000015", "flat_fee": "0.00"},
    ]
    ents = {e["feature"]: e for e in pro["entitlements"]}
    assert ents["ai_tokens"]["limit"] == "20000000"
    assert ents["ai_tokens"]["overage"] == "bill"
    assert ents["ai_chat"] == {
        "feature": "ai_chat",
        "name": "AI chat",
        "kind": "boolean",
        "metric": None,
        "enabled": True,
        "limit": None,
        "overage": None,
        "on_unavailable": "allow",
    }
    assert ents["sso"]["enabled"] is False


def test_plans_list_takes_a_bounded_number_of_queries(api, service_key, django_assert_max_num_queries):
    api.get("/api/v1/plans", **service_key.header)  # warm the key cache
    with django_assert_max_num_queries(8):
        api.get("/api/v1/plans", **service_key.header)


def test_one_plan(api, service_key):
    response = api.get("/api/v1/plans/team", **service_key.header)
    assert response.status_code == 200
    assert response.json()["code"] == "team"


def test_unknown_plan_is_404(api, service_key):
    response = api.get("/api/v1/plans/platinum", **service_key.header)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_estimate_lines_for_every_pricing_model(api, agent_key):
    # pro: ai_tokens graduated, api_calls package, active_users and storage per_unit
    response = estimate(
        api,
        agent_key,
        {
            "plan": "pro",
            "usage": {"ai_tokens": "12000000", "api_calls": 25001, "active_users": "3", "storage_gb": "12.345"},
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["plan"], body["version"], body["currency"]) == ("pro", 1, "USD")
    lines = {line["metric"]: line for line in body["lines"]}
    assert lines[None]["description"] == "Pro base fee (monthly)"
    assert lines[None]["amount"] == "49.00"
    # graduated: 2M free, 8M × 0.00002 = 160, 2M × 0.000015 = 30
    tokens = lines["ai_tokens"]
    assert tokens["amount"] == "190.00"
    assert [(t["from"], t["to"], t["quantity"], t["amount"]) for t in tokens["tiers"]] == [
        ("0", "2000000", "2000000", "0"),
        ("2000000", "10000000", "8000000", "160"),
        ("10000000", None, "2000000", "30"),
    ]
    # package: ceil((25001 − 10000) / 1000) = 16 packages × 0.50
    assert (lines["api_calls"]["packages"], lines["api_calls"]["amount"]) == ("16", "8.00")
    assert lines["active_users"]["amount"] == "24.00"
    # per unit: 12.345 × 0.10 = 1.2345 → 1.23 (rounded once, half up)
    assert lines["storage_gb"]["amount"] == "1.23"
    assert body["total"] == "272.23"
    assert body["unpriced_metrics"] == []


def test_estimate_of_a_volume_plan(api, service_key):
    response = estimate(api, service_key, {"plan": "team", "usage": {"ai_tokens": "20000000"}})
    line = next(x for x in response.json()["lines"] if x["metric"] == "ai_tokens")
    assert line["amount"] == "280.00"  # all 20M at the second tier's 0.000014
    assert len(line["tiers"]) == 1
    assert line["tiers"][0]["unit_price"] == "0.000014"


def test_estimate_with_a_flat_fee_tier(api, service_key):
    response = estimate(api, service_key, {"plan": "enterprise", "usage": {"ai_tokens": "500000001"}})
    line = next(x for x in response.json()["lines"] if x["metric"] == "ai_tokens")
    assert line["amount"] == "500.00"  # the second tier is reached: its 500.00 flat fee plus 1 × 0.000008
    assert response.json()["total"] == "24500.00"


def test_estimate_without_usage_is_the_base_fee(api, service_key):
    body = estimate(api, service_key, {"plan": "pro"}).json()
    assert body["total"] == "49.00"
    assert all(line["amount"] == "0.00" for line in body["lines"][1:])


def test_usage_of_a_metric_the_plan_does_not_charge_is_reported(api, service_key):
    body = estimate(api, service_key, {"plan": "free", "usage": {"ai_tokens": "5"}}).json()
    assert body["unpriced_metrics"] == ["ai_tokens"]
    assert body["total"] == "0.00"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"plan": "platinum"}, "unknown_plan"),
        ({"plan": "pro", "usage": {"bananas": "1"}}, "unknown_metric"),
        ({"plan": "pro", "usage": {"api_calls": "-1"}}, "invalid_quantity"),
        ({"plan": "pro", "usage": {"api_calls": "lots"}}, "invalid_quantity"),
        ({"plan": "pro", "usage": {"api_calls": True}}, "invalid_quantity"),
        ({"plan": "pro", "usage": {"api_calls": "1e70"}}, "invalid_quantity"),
        ({"plan": "pro", "usage": {"api_calls": "1E+999999"}}, "invalid_quantity"),
        ({"usage": {}}, "validation_error"),
        ({"plan": "pro", "usage": ["api_calls"]}, "validation_error"),
    ],
)
def test_estimate_errors(api, service_key, body, code):
    response = estimate(api, service_key, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_numbers_are_accepted_and_exact(api, service_key):
    body = estimate(api, service_key, {"plan": "pro", "usage": {"storage_gb": 0.1}}).json()
    storage = next(x for x in body["lines"] if x["metric"] == "storage_gb")
    assert storage["quantity"] == "0.1"
    assert storage["amount"] == "0.01"


def test_catalog_needs_a_key(api):
    assert api.get("/api/v1/plans").status_code == 401
    assert api.post("/api/v1/pricing/estimate", {"plan": "pro"}, format="json").status_code == 401
