"""Every figure of the finance overview, against the hand-built ledger (tests/console/ledger.py,
where each record's amount and date is listed). Expected numbers are worked out by hand
here, line by line from that list; none is computed by the code under test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from console import selectors
from console.selectors import Tally
from tests.console.approvals import make_requests
from tests.console.ledger import T, at, eur, jpy, usd

pytestmark = [pytest.mark.django_db]


def test_the_month_is_the_utc_calendar_month_of_now():
    assert selectors.month_bounds(T) == (at(2027, 1, 1), at(2027, 2, 1))
    assert selectors.month_bounds(at(2026, 12, 31, 23, 59)) == (at(2026, 12, 1), at(2027, 1, 1))
    # an instant given in another zone is placed by its UTC date
    from zoneinfo import ZoneInfo

    tokyo = datetime(2027, 2, 1, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2027-01-31 23:00 UTC
    assert selectors.month_bounds(tokyo) == (at(2027, 1, 1), at(2027, 2, 1))
    assert selectors.day_bounds(date(2027, 1, 1), date(2027, 1, 31)) == (at(2027, 1, 1), at(2027, 2, 1))


def test_mrr_counts_paying_subscriptions_base_fees_per_month(ledger):
    # USD: acme 49.00 + core 49.00 (past due still counts) + bolt 1,000.00 / 12 = 83.333…
    #      = 181.333… → 181.33; dusk (suspended), tria (trial) and gone (canceled) are out
    assert selectors.mrr(now=T) == {
        "EUR": Tally(eur("20.00"), 1),
        "JPY": Tally(jpy("7500"), 1),
        "USD": Tally(usd("181.33"), 3),
    }


def test_arr_is_twelve_times_the_exact_mrr(ledger):
    # USD: (49 + 49) × 12 + 1,000 = 2,176.00 (not 181.33 × 12 = 2,175.96)
    assert selectors.arr(now=T) == {"EUR": eur("240.00"), "JPY": jpy("90000"), "USD": usd("2176.00")}


def test_mrr_leaves_out_subscriptions_started_after_now(ledger):
    assert selectors.mrr(now=at(2026, 11, 30)) == {}  # nothing had started yet


def test_invoiced_this_month(ledger):
    # USD: i10 40.00 (finalized 01-01 00:00, voided since: still issued) + i2 1,200.00
    #      + i3 290.00 (300.00 less 10.00 credit) = 1,530.00; i12 (12-31 23:59:59) is December's
    assert selectors.invoiced_this_month(now=T) == {
        "EUR": Tally(eur("20.00"), 1),
        "JPY": Tally(jpy("75000"), 1),
        "USD": Tally(usd("1530.00"), 3),
    }


def test_collected_this_month(ledger):
    # USD: i12 60.00 (paid 01-01 00:00) + i2 1,200.00; i1 was paid in December. EUR: e1.
    assert selectors.collected_this_month(now=T) == {
        "EUR": Tally(eur("20.00"), 1),
        "USD": Tally(usd("1260.00"), 2),
    }


def test_outstanding_is_what_is_open_now(ledger):
    # USD: i3 290 + i4 20 + i5 5 + i6 7 + i7 11 + i8 13 = 346.00 (i9 uncollectible, i10 void)
    assert selectors.outstanding(now=T) == {
        "EUR": Tally(eur("50.00"), 1),
        "JPY": Tally(jpy("75000"), 1),
        "USD": Tally(usd("346.00"), 6),
    }


def test_receivables_ageing_by_whole_days_past_due(ledger):
    ageing = selectors.receivables_ageing(now=T)
    assert ageing["USD"] == {
        "current": Tally(usd("290.00"), 1),  # i3, due 01-23
        "0-30": Tally(usd("25.00"), 2),  # i4 10 days, i5 30 days
        "31-60": Tally(usd("7.00"), 1),  # i6 31 days
        "61-90": Tally(usd("11.00"), 1),  # i7 75 days
        "90+": Tally(usd("13.00"), 1),  # i8 91 days
    }
    zero = Tally(eur("0.00"), 0)
    assert ageing["EUR"] == {"current": zero, "0-30": zero, "31-60": zero, "61-90": zero, "90+": Tally(eur("50.00"), 1)}
    assert ageing["JPY"]["current"] == Tally(jpy("75000"), 1)
    assert list(ageing) == ["EUR", "JPY", "USD"]
    for currency, buckets in ageing.items():  # the buckets add up to outstanding
        assert sum(t.total.amount for t in buckets.values()) == selectors.outstanding(now=T)[currency].total.amount


def test_ageing_moves_an_invoice_on_at_the_instant_its_day_ends(ledger):
    # a day later: i5 (due 2026-12-11 09:30) is 31 whole days past due, i4 11
    later = selectors.receivables_ageing(now=T + timedelta(days=1))["USD"]
    assert later["0-30"] == Tally(usd("20.00"), 1)  # i4 only
    assert later["31-60"] == Tally(usd("12.00"), 2)  # i5 and i6


def test_refunded_this_month_counts_succeeded_refunds_only(ledger):
    # 200.00 succeeded 01-07; 30.00 failed and 25.00 submitted return nothing; 10.00 was December's
    assert selectors.refunded_this_month(now=T) == {"USD": Tally(usd("200.00"), 1)}
    assert selectors.refunded(start=at(2026, 12, 1), end=at(2027, 1, 1)) == {"USD": Tally(usd("10.00"), 1)}


def test_credit_notes_this_month(ledger):
    # i2: 100.00 as credit (01-06) + 200.00 for the refund (01-07)
    assert selectors.credit_notes_this_month(now=T) == {"USD": Tally(usd("300.00"), 2)}


def test_credits_granted_this_month_are_the_ledger_grants(ledger):
    # USD: acme 100.00 (the credit note settled as credit) + bolt 10.00 (staff); gone's 25.00 is December's;
    # the refund's credit note grants nothing; bolt's −10.00 applied to i3 is not a grant
    assert selectors.credits_granted_this_month(now=T) == {
        "EUR": Tally(eur("15.00"), 1),
        "JPY": Tally(jpy("1000"), 1),
        "USD": Tally(usd("110.00"), 2),
    }


def test_past_due_and_suspended_subscriptions(ledger):
    past_due = selectors.subscriptions_past_due()
    assert past_due.count == 1
    assert [(s.tenant, s.since) for s in past_due.subscriptions] == [("core", at(2027, 1, 3))]
    suspended = selectors.subscriptions_suspended()
    assert suspended.count == 1
    assert [(s.tenant, s.since) for s in suspended.subscriptions] == [("dusk", at(2027, 1, 5))]


def test_task_failures_and_blocked_work(ledger):
    assert selectors.task_failures_open() == 2  # of 3, one resolved
    assert selectors.work_items_blocked() == {"invoicing.collect": 1, "webhooks.event": 1}  # not retrying, done


def test_revenue_per_month_for_twelve_months(ledger):
    months = selectors.revenue_by_month(now=T)
    assert [m.month for m in months] == [date(2026, n, 1) for n in range(2, 13)] + [date(2027, 1, 1)]
    usd_by_month = {m.month: m.totals["USD"].amount for m in months}
    assert usd_by_month == {
        date(2026, 2, 1): Decimal("1.00"),  # i14 at the window's first instant; i13 (01-31) is out
        date(2026, 3, 1): Decimal("0.00"),
        date(2026, 4, 1): Decimal("0.00"),
        date(2026, 5, 1): Decimal("0.00"),
        date(2026, 6, 1): Decimal("0.00"),
        date(2026, 7, 1): Decimal("0.00"),
        date(2026, 8, 1): Decimal("0.00"),
        date(2026, 9, 1): Decimal("30.00"),  # i9 17 + i8 13
        date(2026, 10, 1): Decimal("11.00"),  # i7
        date(2026, 11, 1): Decimal("12.00"),  # i6 7 + i5 5
        date(2026, 12, 1): Decimal("129.00"),  # i1 49 + i4 20 + i12 60
        date(2027, 1, 1): Decimal("1530.00"),  # this month so far: invoiced_this_month
    }
    assert {m.month: m.totals["EUR"].amount for m in months if m.totals["EUR"].amount} == {
        date(2026, 6, 1): Decimal("50.00"),
        date(2027, 1, 1): Decimal("20.00"),
    }
    assert months[-1].totals["JPY"] == jpy("75000")
    assert months[-1].totals["USD"] == selectors.invoiced_this_month(now=T)["USD"].total


def test_usage_per_metric_per_day_for_thirty_days(ledger):
    usage = {m.code: m for m in selectors.usage_by_day(now=T)}
    assert list(usage) == ["api_calls", "peak_gb", "seats", "tokens", "users"]
    days = [d for d, _ in usage["api_calls"].days]
    assert (len(days), days[0], days[-1]) == (30, date(2026, 12, 12), date(2027, 1, 10))

    def nonzero(code):
        return {d: v for d, v in usage[code].days if v}

    assert nonzero("api_calls") == {date(2026, 12, 12): 3, date(2027, 1, 10): 12}  # 12-11's 100 is out
    assert nonzero("tokens") == {date(2027, 1, 9): Decimal("3.75")}  # 1.5 + 2.25
    assert nonzero("peak_gb") == {date(2027, 1, 9): 9}  # the highest, not 4 + 9
    assert nonzero("seats") == {date(2027, 1, 9): 7}  # acme's last 5 (not 3) + bolt's 2
    assert nonzero("users") == {date(2027, 1, 9): 4}  # acme u1 u2 u3 (u2 twice) + bolt u1


def test_pending_approvals(ledger):
    make_requests(ledger)
    pending = selectors.approvals_pending(now=T)
    # pending and not expired: 600.00 USD, 80,000 JPY and a trial extension (no amount);
    # the one past its expiry, the approved and the rejected ones are out
    assert pending.count == 3
    assert pending.amounts == {"JPY": Tally(jpy("80000"), 1), "USD": Tally(usd("600.00"), 1)}


def test_an_empty_ledger_has_no_figures(db):
    now = datetime(2027, 1, 10, tzinfo=UTC)
    assert selectors.mrr(now=now) == selectors.invoiced_this_month(now=now) == selectors.outstanding(now=now) == {}
    assert selectors.receivables_ageing(now=now) == {}
    assert [m.totals for m in selectors.revenue_by_month(now=now)] == [{}] * 12
