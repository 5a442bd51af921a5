"""The money module: exponents from CLDR, one rounding half away from zero, no currency mixing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_project.errors import InvalidRequest
from billing_project.money import (
    CurrencyMismatch,
    Money,
    exponent,
    format_decimal,
    from_minor_units,
    normalize_currency,
    parse_decimal,
    round_line,
    to_minor_units,
    total,
)

D = Decimal


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("UGX", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_minor_unit_exponents(currency, digits):
    assert exponent(currency) == digits


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half away from zero, not half-even (0.00)
        ("0.015", "USD", "0.02"),
        ("0.025", "USD", "0.03"),  # half-even would give 0.02
        ("-0.005", "USD", "-0.01"),  # away from zero on the negative side too
        ("-0.025", "USD", "-0.03"),
        ("0.0049999", "USD", "0.00"),
        ("2.5", "JPY", "3"),
        ("-2.5", "JPY", "-3"),
        ("1.0005", "KWD", "1.001"),
        ("49", "USD", "49.00"),
    ],
)
def test_round_line_is_half_away_from_zero(amount, currency, expected):
    rounded = round_line(D(amount), currency)
    assert rounded == D(expected)
    assert str(rounded) == expected  # exactly the minor unit's places


def test_minor_units_round_trip():
    assert to_minor_units(D("12.34"), "USD") == 1234
    assert to_minor_units(D("1500"), "JPY") == 1500
    assert to_minor_units(D("1.234"), "KWD") == 1234
    assert from_minor_units(1234, "USD") == D("12.34")
    with pytest.raises(ValueError, match="minor units"):
        to_minor_units(D("12.345"), "USD")


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["USD", "JPY", "KWD", "CLF"]))
def test_minor_units_are_lossless(units, currency):
    assert to_minor_units(from_minor_units(units, currency), currency) == units


def test_unknown_currency_is_refused():
    with pytest.raises(InvalidRequest) as err:
        normalize_currency("USX")
    assert err.value.code == "unknown_currency"
    assert normalize_currency("usd") == "USD"


def test_money_refuses_floats_and_mixing():
    with pytest.raises(TypeError):
        Money(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(CurrencyMismatch):
        Money(D(1), "USD") + Money(D(1), "EUR")
    with pytest.raises(CurrencyMismatch):
        total([Money(D(1), "USD"), Money(D(1), "EUR")], "USD")
    assert total([Money(D("1.10"), "USD"), Money(D("2.20"), "USD")], "USD") == Money(D("3.30"), "USD")


@pytest.mark.parametrize("value", [0.1, True, "abc", "NaN", "Infinity", None, [1]])
def test_parse_decimal_refuses_what_is_not_an_exact_number(value):
    with pytest.raises(ValueError, match="exact number|not a decimal number"):
        parse_decimal(value)


def test_parse_decimal_takes_strings_ints_and_decimals():
    assert parse_decimal("12.50") == D("12.50")
    assert parse_decimal(3) == D(3)
    assert parse_decimal(D("0.00002")) == D("0.00002")


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        ("49", 2, "49.00"),
        ("0.00002", 2, "0.00002"),
        ("1E+3", 0, "1000"),
        ("12.5000", 0, "12.5"),
        ("0", 2, "0.00"),
    ],
)
def test_format_decimal(value, places, text):
    assert format_decimal(D(value), places) == text


@given(st.lists(st.decimals(min_value=-(10**9), max_value=10**9, places=6), max_size=30))
def test_a_total_of_rounded_lines_is_their_exact_sum(amounts):
    lines = [Money(round_line(a, "USD"), "USD") for a in amounts]
    # counted independently, in integer cents
    assert to_minor_units(total(lines, "USD").amount, "USD") == sum(to_minor_units(x.amount, "USD") for x in lines)
    assert round_line(total(lines, "USD").amount, "USD") == total(lines, "USD").amount
