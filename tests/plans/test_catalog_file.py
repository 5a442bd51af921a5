"""The catalog file format (CATALOG.md): parsing, exact numbers, every problem with its path. Pure."""

from __future__ import annotations

from decimal import Decimal

import pytest

from plans.catalog import CatalogError, load_document, parse_catalog
from tests.plans.factories import demo, small


def problems_of(doc) -> list[str]:
    return [str(p) for p in parse_catalog(doc)[1]]


def test_the_demo_catalog_is_valid():
    spec, problems = parse_catalog(demo())
    assert problems == []
    assert [p.code for p in spec.plans] == ["free", "pro", "team", "enterprise"]
    assert {m.code for m in spec.metrics} == {"ai_tokens", "api_calls", "active_users", "storage_gb"}
    assert {c.model for p in spec.plans for c in p.charges} == {"per_unit", "package", "graduated", "volume"}


def test_yaml_numbers_are_exact_decimals():
    doc = load_document("plans:\n  - {code: p, name: P, base_fee: 0.1, charges: []}\nx: 0.00002\n", name="c.yaml")
    assert doc["plans"][0]["base_fee"] == Decimal("0.1")
    assert isinstance(doc["x"], Decimal)
    assert doc["x"] == Decimal("0.00002")


def test_json_numbers_are_exact_decimals():
    doc = load_document('{"x": 0.1, "n": 3}', name="c.json")
    assert doc == {"x": Decimal("0.1"), "n": 3}


def test_unparseable_file_is_one_problem():
    with pytest.raises(CatalogError) as err:
        load_document("plans: [\n", name="c.yaml")
    assert err.value.problems[0].path == "(file)"


def test_every_problem_is_reported_with_its_path():
    doc = small()
    doc["currency"] = "USX"
    doc["metrics"][0]["aggregation"] = "summ"
    doc["metrics"].append({"code": "users", "name": "Users", "aggregation": "unique_count"})
    doc["features"][0]["on_unavaliable"] = "allow"
    doc["features"][1]["metric"] = "nope"
    plan = doc["plans"][0]
    plan["base_fee"] = "49.001"
    plan["charges"][1]["tiers"] = [{"up_to": "100", "unit_price": "0"}, {"up_to": "50", "unit_price": "0.1"}]
    plan["charges"].append({"metric": "ghost", "model": "per_unit"})
    plan["charges"].append({"metric": "tokens", "model": "per_unit", "unit_price": "1", "tiers": []})
    plan["entitlements"].append({"feature": "chat", "limit": "10"})
    plan["entitlements"].append({"feature": "missing"})
    doc["plans"].append({"code": "pro", "name": "Again"})
    found = problems_of(doc)
    expected = [
        "currency: 'USX' is not an ISO 4217 currency code",
        "metrics[0].aggregation: must be one of: count, sum, max, unique_count, latest",
        "metrics[2].unique_property: is required for unique_count",
        "features[0].on_unavaliable: unknown key (expected one of: code, name, metric, on_unavailable, description)",
        "features[1].metric: unknown metric 'nope'",
        "plans[0].charges[1].tiers: the last tier must be open (up_to: null)",
        "plans[0].charges[1].tiers: up_to must increase from tier to tier",
        "plans[0].charges[2].metric: unknown metric 'ghost'",
        "plans[0].charges[2].unit_price: is required",
        "plans[0].charges[3].tiers: does not apply to the per_unit model",
        "plans[0].charges[3].metric: duplicate metric 'tokens'",
        "plans[0].entitlements[3].limit: only metered features have limits",
        "plans[0].entitlements[4].feature: unknown feature 'missing'",
        "plans[0].entitlements[3].feature: duplicate feature 'chat'",
        "plans[0].base_fee: has more decimals than USD has minor units",
        "plans[1].code: duplicate code 'pro'",
    ]
    for problem in expected:
        assert problem in found, f"missing: {problem}\nfound:\n" + "\n".join(found)
    assert len(found) == len(expected), "\n".join(found)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda d: d["plans"][0]["charges"][0].update(package_size="0"),
            "plans[0].charges[0].package_size: must be positive",
        ),
        (
            lambda d: d["plans"][0]["charges"][0].update(package_price="-1"),
            "plans[0].charges[0].package_price: must not be negative",
        ),
        (
            lambda d: d["plans"][0]["charges"][1].update(tiers=[]),
            "plans[0].charges[1].tiers: at least one tier is required",
        ),
        (
            lambda d: d["plans"][0]["charges"][1]["tiers"][0].update(unit_price="abc"),
            'plans[0].charges[1].tiers[0].unit_price: must be a decimal number, e.g. "0.00002"',
        ),
        (
            lambda d: d["plans"][0]["charges"][1]["tiers"].insert(1, {"up_to": None, "unit_price": "1"}),
            "plans[0].charges[1].tiers: only the last tier may be open (up_to: null)",
        ),
        (lambda d: d["plans"][0].update(interval="week"), "plans[0].interval: must be one of: month, year"),
        (lambda d: d["plans"][0].update(trial_days=-1), "plans[0].trial_days: must be a whole number ≥ 0"),
        (
            lambda d: d["plans"][0]["charges"].pop(0),
            "plans[0].entitlements[1].overage: 'bill' needs a charge on metric 'api_calls' in this plan",
        ),
        (
            lambda d: d["plans"][0].update(code="Pro Plan"),
            "plans[0].code: must be lower-case letters, digits, '_' or '-' (at most 100)",
        ),
        (
            lambda d: d["metrics"][1].update(properties=["model", "model"]),
            "metrics[1].properties: lists a key twice",
        ),
        (
            lambda d: d.update(extra=1),
            ".extra: unknown key (expected one of: currency, features, metrics, plans)",
        ),
    ],
)
def test_single_problems(mutate, problem):
    doc = small()
    mutate(doc)
    assert problem in problems_of(doc)


def test_a_plan_may_use_another_currency_with_its_minor_unit():
    doc = small()
    doc["plans"][0].update(currency="JPY", base_fee="4900")
    assert problems_of(doc) == []
    doc["plans"][0].update(base_fee="4900.5")
    assert "plans[0].base_fee: has more decimals than JPY has minor units" in problems_of(doc)


def test_string_shorthand_for_an_enabled_feature():
    doc = small()
    doc["plans"][0]["entitlements"][0] = "chat"
    spec, problems = parse_catalog(doc)
    assert problems == []
    assert spec.plans[0].entitlements[0].enabled is True


def test_content_hash_ignores_names_and_order_of_entitlements_but_not_prices():
    base = parse_catalog(small())[0].plans[0]
    renamed = small()
    renamed["plans"][0]["name"] = "Professional"
    renamed["plans"][0]["entitlements"].reverse()
    assert parse_catalog(renamed)[0].plans[0].content_hash() == base.content_hash()
    repriced = small()
    repriced["plans"][0]["base_fee"] = "59.00"
    assert parse_catalog(repriced)[0].plans[0].content_hash() != base.content_hash()
    same_number = small()
    same_number["plans"][0]["base_fee"] = "49"
    assert parse_catalog(same_number)[0].plans[0].content_hash() == base.content_hash()


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda d: d["plans"][0]["charges"][1]["tiers"][1].update(unit_price="0.000000000015"),
            "plans[0].charges[1].tiers[1].unit_price: has more than 10 decimals",
        ),
        (
            lambda d: d["plans"][0]["charges"][1]["tiers"][0].update(up_to="100000.0000001"),
            "plans[0].charges[1].tiers[0].up_to: has more than 6 decimals",
        ),
        (
            lambda d: d["plans"][0]["entitlements"][1].update(limit="1" + "0" * 24),
            "plans[0].entitlements[1].limit: is too large (at most 24 digits before the point)",
        ),
        (
            lambda d: d["plans"][0].update(base_fee="1" + "0" * 14),
            "plans[0].base_fee: is too large (at most 14 digits before the point)",
        ),
    ],
)
def test_numbers_that_the_database_would_round_are_refused(mutate, problem):
    # PostgreSQL would silently round them: the stored price would differ from the file.
    doc = small()
    mutate(doc)
    assert problem in problems_of(doc)


def test_numbers_at_the_column_limits_are_fine():
    doc = small()
    doc["plans"][0]["charges"][1]["tiers"][1]["unit_price"] = "0.0000000001"
    doc["plans"][0]["entitlements"][1]["limit"] = "9" * 24 + ".999999"
    assert problems_of(doc) == []
