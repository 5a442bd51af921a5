"""Proration: pure functions (no ORM), to the second, each line rounded once.

Changing plan at instant `at` inside the period [start, end):
* a credit for the unused time of the old base fee:  −old_fee × (end − at) / (end − start)
* a charge for the remaining time of the new one:    +new_fee × (end − at) / (end − start)
  when both bill on the same interval; a change to another interval restarts the
  period at `at`, so the new fee is charged for a whole new period instead.
Durations are whole seconds; each line is rounded to the currency's minor unit,
half away from zero (billing_project.money).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from billing_project.money import CONTEXT, round_line


def seconds(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds())


def prorate(
    amount: Decimal, *, start: datetime, end: datetime, part_start: datetime, part_end: datetime, currency: str
) -> Decimal:
    """`amount` × the share of [start, end) that [part_start, part_end) covers, rounded once."""
    if not start <= part_start <= part_end <= end or start >= end:
        raise ValueError("the part must lie inside a non-empty period")
    with localcontext(CONTEXT):
        share = Decimal(seconds(part_start, part_end)) / Decimal(seconds(start, end))
        return round_line(amount * share, currency)


@dataclass(frozen=True)
class ProrationLine:
    kind: str  # "credit" | "charge"
    description: str
    amount: Decimal  # negative for a credit
    period_start: datetime
    period_end: datetime


def plan_change(
    *,
    old_name: str,
    old_fee: Decimal,
    new_name: str,
    new_fee: Decimal,
    start: datetime,
    end: datetime,
    at: datetime,
    currency: str,
    same_interval: bool,
    new_period_end: datetime | None = None,
) -> list[ProrationLine]:
    """The lines a plan change at `at` bills: the old fee's unused time back, the new one's due."""
    credit = -prorate(old_fee, start=start, end=end, part_start=at, part_end=end, currency=currency)
    if same_interval:
        charge = prorate(new_fee, start=start, end=end, part_start=at, part_end=end, currency=currency)
        charge_end = end
    else:
        if new_period_end is None:
            raise ValueError("a change of interval needs the new period's end")
        charge, charge_end = round_line(new_fee, currency), new_period_end
    lines = []
    if credit:
        lines.append(ProrationLine("credit", f"Unused time on {old_name}", credit, at, end))
    if charge:
        lines.append(ProrationLine("charge", f"Remaining time on {new_name}", charge, at, charge_end))
    return lines
