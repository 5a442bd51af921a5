"""Proration to the second, one rounding per line; additive at any split (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_project.money import exponent, round_line
from subscriptions.periods import period, utc
from subscriptions.proration import plan_change, prorate

D = Decimal
fees = st.decimals(min_value=0, max_value=10**6, places=2)
currencies = st.sampled_from(["USD", "JPY", "KWD"])
starts = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001  (hypothesis wants naive bounds)
    max_value=datetime(2080, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=0))


@given(fees, starts, st.sampled_from(["month", "year"]), st.floats(min_value=0, max_value=1), currencies)
def test_prorating_both_sides_of_any_split_sums_to_the_whole(fee, start, interval, fraction, currency):
    begin, end = period(start, interval, 0)
    total_seconds = int((end - begin).total_seconds())
    split = begin + timedelta(seconds=int(total_seconds * fraction))
    before = prorate(fee, start=begin, end=end, part_start=begin, part_end=split, currency=currency)
    after = prorate(fee, start=begin, end=end, part_start=split, part_end=end, currency=currency)
    minor = D(1).scaleb(-exponent(currency))
    # each of the two lines is off by at most half a minor unit
    assert abs(before + after - round_line(fee, currency)) <= minor
    assert before == round_line(before, currency)


@given(fees, starts, st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6))
def test_any_number_of_splits_stays_within_a_minor_unit_per_line(fee, start, fractions):
    begin, end = period(start, "month", 0)
    seconds = int((end - begin).total_seconds())
    cuts = sorted({begin, end, *(begin + timedelta(seconds=int(seconds * f)) for f in fractions)})
    parts = [
        prorate(fee, start=begin, end=end, part_start=a, part_end=b, currency="USD")
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    assert abs(sum(parts, D(0)) - round_line(fee, "USD")) <= D("0.01") * len(parts)


def test_half_a_thirty_day_month():
    # 49.00 over 30 days; 15 days left → 24.50
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)
    assert prorate(D("49.00"), start=start, end=end, part_start=utc(2026, 4, 16), part_end=end, currency="USD") == D(
        "24.50"
    )


def test_to_the_second():
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)  # 2,592,000 s
    one_second = prorate(
        D("2592000"), start=start, end=end, part_start=start, part_end=start + timedelta(seconds=1), currency="USD"
    )
    assert one_second == D("1.00")


def test_an_upgrade_credits_the_old_fee_and_charges_the_new():
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)
    lines = plan_change(
        old_name="Pro",
        old_fee=D("49.00"),
        new_name="Team",
        new_fee=D("199.00"),
        start=start,
        end=end,
        at=utc(2026, 4, 16),
        currency="USD",
        same_interval=True,
    )
    assert [(x.kind, x.amount) for x in lines] == [("credit", D("-24.50")), ("charge", D("99.50"))]
    assert all((x.period_start, x.period_end) == (utc(2026, 4, 16), end) for x in lines)


def test_a_change_of_interval_charges_a_whole_new_period():
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)
    lines = plan_change(
        old_name="Pro",
        old_fee=D("49.00"),
        new_name="Pro yearly",
        new_fee=D("490.00"),
        start=start,
        end=end,
        at=utc(2026, 4, 16),
        currency="USD",
        same_interval=False,
        new_period_end=utc(2027, 4, 16),
    )
    assert [(x.kind, x.amount) for x in lines] == [("credit", D("-24.50")), ("charge", D("490.00"))]
    assert lines[1].period_end == utc(2027, 4, 16)


def test_a_part_outside_the_period_is_refused():
    with pytest.raises(ValueError, match="inside"):
        prorate(
            D(1),
            start=utc(2026, 4, 1),
            end=utc(2026, 5, 1),
            part_start=utc(2026, 3, 1),
            part_end=utc(2026, 4, 2),
            currency="USD",
        )
