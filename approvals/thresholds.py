"""APPROVAL_THRESHOLDS, read: "USD:500,EUR:500,JPY:75000" → {currency: amount}. Pure; the
start-up check (approvals/checks.py) refuses a value this cannot read."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

from billing_project.money import known_currencies, parse_decimal, round_line

SETTING = "APPROVAL_THRESHOLDS"


class BadThresholds(ValueError):
    """The setting cannot be read; the message says which entry and why."""


@functools.cache
def parse_thresholds(raw: str) -> Mapping[str, Decimal]:
    """Each entry `CUR:amount`, comma-separated: an ISO 4217 code (upper-case) at most once,
    and an amount of 0 or more in whole minor units of that currency. Empty: no thresholds
    (so every credit, refund and credit note needs approval)."""
    found: dict[str, Decimal] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            if raw.strip():
                raise BadThresholds(f"{SETTING}={raw!r} has an empty entry (two commas, or one at an end).")
            continue
        currency, colon, amount_text = (x.strip() for x in entry.partition(":"))
        if not colon or not currency or not amount_text:
            raise BadThresholds(f"{SETTING} entry {entry!r} is not CURRENCY:AMOUNT (e.g. USD:500).")
        if currency != currency.upper() or currency not in known_currencies():
            raise BadThresholds(f"{SETTING} entry {entry!r}: {currency!r} is not an ISO 4217 currency code.")
        if currency in found:
            raise BadThresholds(f"{SETTING} names {currency} twice.")
        try:
            amount = parse_decimal(amount_text)
        except ValueError:
            raise BadThresholds(f"{SETTING} entry {entry!r}: {amount_text!r} is not an amount.") from None
        if amount < 0 or round_line(amount, currency) != amount:
            raise BadThresholds(
                f"{SETTING} entry {entry!r}: the amount must be 0 or more, in whole minor units of {currency}."
            )
        found[currency] = amount
    return MappingProxyType(found)  # cached: read-only
