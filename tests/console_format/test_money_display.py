"""Money as staff read it: the currency's precision, thousands separators, the code; unit
prices with every significant digit and no more; never a column's scale or E notation."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from billing_project.money import money_display, price_display, quantity_display


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("24000.0000", "USD", "24,000.00 USD"),  # the column's scale, as PostgreSQL returns it
        ("49.0000000000", "USD", "49.00 USD"),
        ("0E-10", "USD", "0.00 USD"),
        ("-112.7700000000", "USD", "-112.77 USD"),
        ("-0.001", "USD", "0.00 USD"),  # never "-0.00"
        ("1234567.005", "USD", "1,234,567.01 USD"),  # half away from zero, as lines round
        ("75000", "JPY", "75,000 JPY"),
        ("75000.4", "JPY", "75,000 JPY"),
        ("1234.5678", "KWD", "1,234.568 KWD"),
        ("999.9", "EUR", "999.90 EUR"),
    ],
)
def test_amounts_print_at_the_currencys_precision_with_separators(amount, currency, text):
    assert money_display(D(amount), currency) == text


def test_an_amount_under_a_currency_heading_has_no_code():
    assert money_display(D("25318.0000"), "USD", code=False) == "25,318.00"
    assert money_display(None, "USD") == "—"


@pytest.mark.parametrize(
    ("price", "currency", "text"),
    [
        ("0.0000200000", "USD", "0.00002 USD"),
        ("0.000008", "USD", "0.000008 USD"),
        ("6.0000000000", "USD", "6.00 USD"),
        ("0E-10", "USD", "0.00 USD"),
        ("1E-10", "USD", "0.0000000001 USD"),
        ("1500.5", "USD", "1,500.50 USD"),
        ("0.5", "JPY", "0.5 JPY"),
    ],
)
def test_unit_prices_keep_their_digits_and_never_use_e_notation(price, currency, text):
    assert price_display(D(price), currency) == text


@pytest.mark.parametrize(
    ("quantity", "text"),
    [("600000000.000000", "600,000,000"), ("0E-6", "0"), ("1.500000", "1.5"), ("1E+3", "1,000")],
)
def test_quantities_are_separated_and_plain(quantity, text):
    assert quantity_display(D(quantity)) == text
