"""Billing periods: anchored, month-end safe, leap-day safe, tiling time without gaps."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.periods import index_at, period, shift, utc


@pytest.mark.parametrize(
    ("anchor", "interval", "expected"),
    [
        # started on 31 January: the last day of each shorter month, then back to the 31st
        (
            utc(2026, 1, 31, 9),
            "month",
            [utc(2026, 2, 28, 9), utc(2026, 3, 31, 9), utc(2026, 4, 30, 9), utc(2026, 5, 31, 9)],
        ),
        # in a leap year, 29 February
        (utc(2028, 1, 31), "month", [utc(2028, 2, 29), utc(2028, 3, 31)]),
        # the 30th: February clamps, March is the 30th again
        (utc(2026, 1, 30), "month", [utc(2026, 2, 28), utc(2026, 3, 30)]),
        # across the year end
        (utc(2026, 11, 30, 23, 59, 59), "month", [utc(2026, 12, 30, 23, 59, 59), utc(2027, 1, 30, 23, 59, 59)]),
        # yearly from a leap day: 28 February in common years, 29 February in leap years
        (
            utc(2028, 2, 29, 12),
            "year",
            [utc(2029, 2, 28, 12), utc(2030, 2, 28, 12), utc(2031, 2, 28, 12), utc(2032, 2, 29, 12)],
        ),
    ],
)
def test_renewal_instants(anchor, interval, expected):
    assert [shift(anchor, interval, n) for n in range(1, len(expected) + 1)] == expected


def test_periods_are_half_open_and_contiguous():
    anchor = utc(2026, 1, 31)
    first, second = period(anchor, "month", 0), period(anchor, "month", 1)
    assert first == (utc(2026, 1, 31), utc(2026, 2, 28))
    assert second[0] == first[1]
    assert index_at(anchor, "month", utc(2026, 2, 27, 23, 59, 59)) == 0
    assert index_at(anchor, "month", utc(2026, 2, 28)) == 1  # the end belongs to the next period


def test_naive_or_non_utc_times_are_refused():
    with pytest.raises(ValueError, match="UTC"):
        shift(datetime(2026, 1, 1), "month", 1)  # noqa: DTZ001
    paris = datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
    with pytest.raises(ValueError, match="UTC"):
        shift(paris, "month", 1)


anchors = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001  (hypothesis wants naive bounds)
    max_value=datetime(2090, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=0))


@given(anchors, st.sampled_from(["month", "year"]), st.integers(min_value=0, max_value=40))
def test_periods_tile_time(anchor, interval, n):
    start, end = period(anchor, interval, n)
    assert start < end
    assert period(anchor, interval, n + 1)[0] == end  # no gap, no overlap
    days = (end - start).days
    assert (28 <= days <= 31) if interval == "month" else (365 <= days <= 366)


@given(anchors, st.sampled_from(["month", "year"]), st.integers(min_value=0, max_value=10**9))
def test_every_instant_falls_in_exactly_one_period(anchor, interval, offset_seconds):
    at = anchor + timedelta(seconds=offset_seconds)
    index = index_at(anchor, interval, at)
    start, end = period(anchor, interval, index)
    assert start <= at < end


@given(anchors, st.integers(min_value=0, max_value=30))
def test_the_anchor_day_comes_back_whenever_the_month_has_it(anchor, n):
    renewed = shift(anchor, "month", n)
    assert renewed.day == min(anchor.day, calendar.monthrange(renewed.year, renewed.month)[1])
    assert (renewed.hour, renewed.minute, renewed.second) == (anchor.hour, anchor.minute, anchor.second)
