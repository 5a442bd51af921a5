"""An invoice line's explanation adds up: each tier as quantity × unit price + flat fee =
amount, their sum, the rounding, and what late usage had billed already. Found: the admin
printed `100000000 × 0.000008 = 1300`, without the tier's flat fee of 500."""

from __future__ import annotations

from decimal import Decimal as D

from invoicing.documents import explanation_rows

GRADUATED = {
    "model": "graduated",
    "quantity": "600000000",
    "tiers": [
        {"from": "0", "to": "500000000", "quantity": "500000000", "unit_price": "0", "flat_fee": "0", "amount": "0"},
        {
            "from": "500000000",
            "to": None,
            "quantity": "100000000",
            "unit_price": "0.000008",
            "flat_fee": "500",
            "amount": "1300",
        },
    ],
    "unrounded_amount": "1300",
}


def test_each_tier_shows_its_flat_fee_and_the_tiers_add_up():
    rows = explanation_rows(GRADUATED, D("1300.0000"), "USD")
    assert rows == [
        "0 – 500,000,000: 500,000,000 × 0.00 = 0.00",
        "500,000,000 – ∞: 100,000,000 × 0.000008 + 500.00 = 1,300.00",
        "sum of the tiers: 0.00 + 1,300.00 = 1,300.00",
    ]


def test_per_unit_and_rounding():
    per_unit = {"model": "per_unit", "quantity": "3", "unit_price": "6.005", "unrounded_amount": "18.015"}
    assert explanation_rows(per_unit, D("18.02"), "USD") == ["3 × 6.005 = 18.015", "rounded to 18.02 USD"]


def test_packages_show_their_terms():
    package = {
        "model": "package",
        "quantity": "25500",
        "packages": "16",
        "package_size": "1000",
        "package_price": "0.50",
        "free_units": "10000",
        "unrounded_amount": "8.00",
    }
    assert explanation_rows(package, D("8.00"), "USD") == [
        "25,500 − 10,000 free, in packages of 1,000: 16 packages × 0.50 = 8.00"
    ]


def test_late_usage_subtracts_what_was_billed():
    late = {
        **GRADUATED,
        "already_billed": {"quantity": "550000000", "amount": "900.00", "invoices": ["INV-2026-000004"]},
    }
    rows = explanation_rows(late, D("400.00"), "USD")
    assert rows[-1] == "less 900.00 USD already billed on INV-2026-000004 = 400.00 USD"


def test_nothing_to_explain_for_a_fee():
    assert explanation_rows({"plan": "pro", "in_advance": True}, D("49.00"), "USD") == []
    assert explanation_rows(None, D("49.00"), "USD") == []


def test_a_volume_tier_in_yen():
    volume = {
        "model": "volume",
        "tiers": [
            {"from": "1000", "to": None, "quantity": "1500", "unit_price": "2", "flat_fee": "1000", "amount": "4000"}
        ],
        "unrounded_amount": "4000",
    }
    assert explanation_rows(volume, D("4000"), "JPY") == ["1,000 – ∞: 1,500 × 2 + 1,000 = 4,000"]
