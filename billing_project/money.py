"""Money: Decimal amounts with their currency, rounded once per line to the minor unit.

Rules (ARCHITECTURE.md, Money and time):
* amounts are `Decimal`, never float; a money value never exists without its currency;
* every line is rounded once to the currency's ISO 4217 minor unit, half away from
  zero (`ROUND_HALF_UP`, set explicitly: Python's default is half-even);
* a total is the exact sum of rounded lines; mixing currencies is an error.

Minor-unit exponents come from CLDR through babel (USD 2, JPY 0, KWD 3, CLF 4),
never from a hand-kept list.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

from .errors import InvalidRequest

# Enough digits that no realistic quantity × price loses precision before the
# one rounding that counts (28, Python's default, is close to the edge for
# 1e12 units at 1e-10 prices).
CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
MAX_MAGNITUDE = 40  # decimal exponents a parsed number may have (1e40; 1e-40)


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies met in one sum."""


# ISO 4217 codes that are not money a customer pays in: precious metals, funds and units of
# account, testing and "no currency" (XAF, XOF, XCD, XPF are real currencies and stay)
NOT_MONEY = frozenset({"XAU", "XAG", "XPT", "XPD", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD", "XTS", "XXX"})


@functools.cache
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - NOT_MONEY


def normalize_currency(code: str) -> str:
    """An upper-case ISO 4217 code, or InvalidRequest(`unknown_currency`)."""
    upper = code.strip().upper() if isinstance(code, str) else ""
    if len(upper) != 3 or upper not in known_currencies():
        raise InvalidRequest(f"{code!r} is not an ISO 4217 currency code.", code="unknown_currency")
    return upper


@functools.cache
def exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit."""
    return int(get_currency_precision(normalize_currency(currency)))


def round_line(amount: Decimal, currency: str) -> Decimal:
    """The one rounding of an invoice line: to the minor unit, half away from zero."""
    quantum = Decimal(1).scaleb(-exponent(currency))
    return amount.quantize(quantum, rounding=ROUND_HALF_UP, context=CONTEXT)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Integer minor units for a payment provider; refuses amounts finer than the minor unit."""
    rounded = round_line(amount, currency)
    if rounded != amount:
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(rounded.scaleb(exponent(currency)))


def from_minor_units(units: int, currency: str) -> Decimal:
    return round_line(Decimal(units).scaleb(-exponent(currency)), currency)


def parse_decimal(value: object) -> Decimal:
    """A finite Decimal from a string or number as it travels in JSON, else ValueError."""
    if isinstance(value, (bool, float)):
        # floats have already lost digits; JSON numbers arrive as Decimal here
        raise ValueError("use a string or an exact number")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, (str, int, Decimal)) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValueError(f"{value!r} is not a decimal number")
    if number.is_zero():
        return Decimal(0)  # 0E-1000000 is zero; its exponent must not reach arithmetic
    # Beyond this every later step (normalize, comparisons in a context, quantize) would
    # raise decimal.Overflow or lose digits: such a number is out of range, not a crash.
    if not -MAX_MAGNITUDE <= number.adjusted() <= MAX_MAGNITUDE or len(number.as_tuple().digits) > CONTEXT.prec:
        raise ValueError(f"{str(value)[:40]!r} is out of range")
    return number


def format_decimal(value: Decimal, min_places: int = 0) -> str:
    """Plain notation, trailing zeros dropped but at least `min_places` decimals ("49.00", "0.00002")."""
    text = f"{value.normalize(CONTEXT):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < min_places:
        frac = frac.ljust(min_places, "0")
    return f"{whole}.{frac}" if frac else whole


def group_thousands(text: str) -> str:
    """Thousands separators in the whole part of a plain decimal ("-24000.5" → "-24,000.5")."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{frac}"


def money_display(amount: Decimal | None, currency: str, *, code: bool = True) -> str:
    """An amount as staff read it: rounded to the currency's minor unit, thousands
    separated, with its code ("24,000.00 USD", "75,000 JPY", "1,234.567 KWD"; without it
    for a column headed by the currency); "—" for none. Never the column's scale
    ("24000.0000") nor E notation ("0E-10")."""
    if amount is None:
        return "—"
    rounded = round_line(amount, currency)
    if rounded.is_zero():
        rounded = abs(rounded)  # "0.00", never "-0.00"
    text = group_thousands(format_decimal(rounded, exponent(currency)))
    return f"{text} {currency}" if code else text


def price_display(amount: Decimal | None, currency: str, *, code: bool = True) -> str:
    """A unit price, which may be finer than the minor unit: every significant digit, at least
    the currency's decimals, no trailing zeros beyond them ("0.00002 USD", "6.00 USD")."""
    if amount is None:
        return "—"
    text = group_thousands(format_decimal(amount, exponent(currency)))
    return f"{text} {currency}" if code else text


def quantity_display(value: Decimal | None) -> str:
    """A quantity: thousands separated, decimals only where it has them ("100,000,000", "1.5")."""
    if value is None:
        return "—"
    return group_thousands(format_decimal(value))


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money amounts are Decimal")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return self + (-other)

    def rounded(self) -> Money:
        return Money(round_line(self.amount, self.currency), self.currency)

    def __str__(self) -> str:
        return f"{format_decimal(self.amount, exponent(self.currency))} {self.currency}"


def total(lines: Iterable[Money], currency: str) -> Money:
    """The exact sum of (already rounded) lines, all in `currency`."""
    result = Money(Decimal(0), currency)
    for line in lines:
        result = result + line
    return result
