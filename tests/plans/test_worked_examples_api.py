"""Other billing products' published worked examples, reproduced end to end through
POST /api/v1/pricing/estimate (catalog file → import → estimate)."""

from __future__ import annotations

import pytest

from plans.services import catalog_import, catalog_validate

pytestmark = [pytest.mark.django_db]


def tiers(*rows: tuple[str | None, str, str]) -> list[dict[str, str | None]]:
    return [{"up_to": up, "unit_price": price, "flat_fee": fee} for up, price, fee in rows]


EXAMPLES = [
    # (source, charge, quantity, expected line amount)
    (
        "getlago.com/docs/guide/plans/charges/charge-models/volume",
        {
            "model": "volume",
            "tiers": tiers(
                ("10000", "0.0010", "10"), ("50000", "0.0008", "10"), ("100000", "0.0006", "10"), (None, "0.0004", "10")
            ),
        },
        "65000",
        "49.00",
    ),
    (
        "getlago.com/docs/guide/plans/charges/charge-models/package",
        {"model": "package", "package_size": "100", "package_price": "5", "free_units": "100"},
        "201",
        "10.00",
    ),
    (
        "docs.useautumn.com/documentation/modelling-pricing/graduated-pricing",
        {"model": "graduated", "tiers": tiers(("1000", "0.01", "0"), ("10000", "0.008", "0"), (None, "0.005", "0"))},
        "15000",
        "107.00",
    ),
    (
        "zuplo.com/docs/articles/monetization/pricing-models (graduated)",
        {"model": "graduated", "tiers": tiers(("1000", "0.10", "0"), ("10000", "0.05", "0"), (None, "0.01", "0"))},
        "15000",
        "600.00",
    ),
    (
        "zuplo.com/docs/articles/monetization/pricing-models (volume)",
        {"model": "volume", "tiers": tiers(("1000", "0.10", "0"), ("10000", "0.05", "0"), (None, "0.01", "0"))},
        "15000",
        "150.00",
    ),
    (
        "zuplo.com/docs/articles/monetization/pricing-models (per unit)",
        {"model": "per_unit", "unit_price": "0.001"},
        "100000",
        "100.00",
    ),
]


@pytest.mark.parametrize(("source", "charge", "quantity", "amount"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_published_example_through_the_api(api, service_key, source, charge, quantity, amount):
    catalog_import(
        spec=catalog_validate(
            {
                "metrics": [{"code": "units", "name": "Units", "aggregation": "sum"}],
                "plans": [
                    {"code": "example", "name": "Example", "base_fee": "0", "charges": [{"metric": "units", **charge}]}
                ],
            }
        )
    )
    response = api.post(
        "/api/v1/pricing/estimate",
        {"plan": "example", "usage": {"units": quantity}},
        format="json",
        **service_key.header,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    line = body["lines"][1]
    assert line["amount"] == amount, source
    assert body["total"] == amount
