"""Billing periods: pure functions, UTC, half-open [start, end).

Periods are counted from an anchor, never from the previous period's end, so a
subscription anchored on 31 January renews on 28 (or 29) February and again on
31 March — not on the 28th for ever after. A yearly one anchored on 29 February
renews on 28 February in common years and on 29 February in leap years.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Literal

Interval = Literal["month", "year"]


def _require_utc(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() != timedelta(0):
        raise ValueError("billing times are aware and in UTC")


def shift(anchor: datetime, interval: Interval, count: int) -> datetime:
    """The anchor moved by `count` intervals, clamped to the target month's last day."""
    _require_utc(anchor)
    months = count * (12 if interval == "year" else 1)
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period(anchor: datetime, interval: Interval, index: int) -> tuple[datetime, datetime]:
    """Period number `index` (0 = the first) of a subscription anchored at `anchor`."""
    return shift(anchor, interval, index), shift(anchor, interval, index + 1)


def index_at(anchor: datetime, interval: Interval, at: datetime) -> int:
    """The index of the period containing `at` (at ≥ anchor)."""
    _require_utc(at)
    if at < anchor:
        raise ValueError("before the first period")
    step = 12 if interval == "year" else 1
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    index = max(0, months // step - 1)
    while shift(anchor, interval, index + 1) <= at:
        index += 1
    return index


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
