"""The lifecycle through time (time-machine moves the clock): trials end, periods renew at
month ends and leap days, scheduled changes and cancellations take effect at the boundary."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine

from subscriptions.models import ProrationItem, Subscription
from subscriptions.periods import utc
from subscriptions.services import (
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    subscriptions_roll_due,
)

pytestmark = [pytest.mark.django_db]


def refreshed(sub: Subscription) -> Subscription:
    return Subscription.objects.select_related("plan_version__plan").get(pk=sub.pk)


def test_trial_then_monthly_renewals_from_the_31st(tenant):
    with time_machine.travel(utc(2026, 1, 17, 8, 30), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")  # 14-day trial
    assert (sub.status, sub.trial_end) == ("trialing", utc(2026, 1, 31, 8, 30))
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 1, 17, 8, 30), utc(2026, 1, 31, 8, 30))
    with time_machine.travel(utc(2026, 1, 31, 8, 29, 59), tick=False):
        assert subscriptions_roll_due() == 0  # one second early: nothing
    with time_machine.travel(utc(2026, 1, 31, 8, 30), tick=False):
        assert subscriptions_roll_due() == 1
    sub = refreshed(sub)
    assert sub.status == "active"
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 1, 31, 8, 30), utc(2026, 2, 28, 8, 30))
    with time_machine.travel(utc(2026, 2, 28, 8, 30), tick=False):
        subscriptions_roll_due()
    assert refreshed(sub).current_period_end == utc(2026, 3, 31, 8, 30)  # back to the 31st


def test_a_late_roll_catches_up_period_by_period(tenant):
    with time_machine.travel(utc(2026, 1, 31), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="team", actor="test")
        sub = refreshed(sub)
    Subscription.objects.filter(pk=sub.pk).update(
        status="active", trial_end=None, current_period_end=utc(2026, 2, 28), period_anchor=utc(2026, 1, 31)
    )
    with time_machine.travel(utc(2026, 5, 1), tick=False):  # the worker was down for months
        assert subscriptions_roll_due() == 3  # Feb 28, Mar 31, Apr 30
    sub = refreshed(sub)
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 4, 30), utc(2026, 5, 31))
    assert list(sub.events.filter(action="renew").values_list("at", flat=True)) == [
        utc(2026, 2, 28),
        utc(2026, 3, 31),
        utc(2026, 4, 30),
    ]


def test_yearly_from_a_leap_day(tenant):
    with time_machine.travel(utc(2028, 2, 29, 12), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="test")
    assert sub.current_period_end == utc(2029, 2, 28, 12)
    for year, end in [(2029, utc(2030, 2, 28, 12)), (2030, utc(2031, 2, 28, 12)), (2031, utc(2032, 2, 29, 12))]:
        with time_machine.travel(utc(year, 2, 28, 12), tick=False):
            subscriptions_roll_due()
        assert refreshed(sub).current_period_end == end


def test_cancel_at_period_end_ends_at_the_boundary(tenant):
    with time_machine.travel(utc(2026, 3, 10), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="test")
        subscription_cancel(tenant=tenant, at_period_end=True, actor="test")
        again = subscription_cancel(tenant=tenant, at_period_end=True, actor="test")  # idempotent
    assert again.cancel_at_period_end
    assert sub.events.filter(action="schedule_cancel").count() == 1
    with time_machine.travel(utc(2027, 3, 10), tick=False):
        subscriptions_roll_due()
    sub = refreshed(sub)
    assert (sub.status, sub.ended_at) == ("ended", utc(2027, 3, 10))


def test_cancel_now_stops_at_once(tenant):
    with time_machine.travel(utc(2026, 3, 10, 9), tick=False):
        subscription_create(tenant=tenant, plan_code="pro", actor="test")
        sub = subscription_cancel(tenant=tenant, at_period_end=False, actor="test", reason="closing the account")
    assert (sub.status, sub.ended_at) == ("canceled", utc(2026, 3, 10, 9))


def test_upgrade_now_prorates_and_stores_the_items_for_invoicing(tenant):
    with time_machine.travel(utc(2026, 4, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")
    with time_machine.travel(utc(2026, 4, 15), tick=False):
        subscriptions_roll_due()  # trial over: first paid period [Apr 15, May 15)
    with time_machine.travel(utc(2026, 4, 30), tick=False):  # 15 of 30 days left
        change = subscription_change_plan(tenant=tenant, plan_code="team", when=None, actor="test")
    assert change.applied
    assert [(x.kind, x.amount) for x in change.proration] == [
        ("credit", Decimal("-24.50")),
        ("charge", Decimal("99.50")),
    ]
    items = ProrationItem.objects.filter(subscription=sub).order_by("id")
    assert [(i.kind, i.amount, i.currency, i.invoiced_at) for i in items] == [
        ("credit", Decimal("-24.50"), "USD", None),
        ("charge", Decimal("99.50"), "USD", None),
    ]
    assert refreshed(sub).plan_version.plan.code == "team"


def test_downgrade_waits_for_the_period_end(tenant):
    with time_machine.travel(utc(2026, 4, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="team", actor="test")
    with time_machine.travel(utc(2026, 4, 15), tick=False):
        subscriptions_roll_due()
        change = subscription_change_plan(tenant=tenant, plan_code="pro", when=None, actor="test")
    assert not change.applied
    assert change.effective_at == utc(2026, 5, 15)
    assert refreshed(sub).plan_version.plan.code == "team"
    assert not ProrationItem.objects.exists()
    with time_machine.travel(utc(2026, 5, 15), tick=False):
        subscriptions_roll_due()
    sub = refreshed(sub)
    assert sub.plan_version.plan.code == "pro"
    assert sub.scheduled_plan_version is None
    assert sub.current_period_end == utc(2026, 6, 15)


def test_changing_plan_during_a_trial_prorates_nothing(tenant):
    with time_machine.travel(utc(2026, 4, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")
        change = subscription_change_plan(tenant=tenant, plan_code="team", when="now", actor="test")
    assert change.proration == []
    assert refreshed(sub).trial_end == utc(2026, 4, 15)


def test_an_operation_on_an_overdue_period_rolls_it_first(tenant):
    with time_machine.travel(utc(2026, 4, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="team", actor="test")  # trial to Apr 15
    # the roll job is far behind: a change now must not prorate against a finished period
    with time_machine.travel(utc(2026, 6, 20), tick=False):
        change = subscription_change_plan(tenant=tenant, plan_code="enterprise", when="now", actor="test")
    sub = refreshed(sub)
    assert sub.plan_version.plan.code == "enterprise"
    assert sub.events.filter(action="activate").count() == 1
    assert sub.events.filter(action="renew").count() == 2  # May 15, Jun 15
    assert all(line.period_start == utc(2026, 6, 20) for line in change.proration)


def test_suspend_and_resume_during_a_trial_keeps_the_trial(tenant):
    from subscriptions.services import subscription_apply

    with time_machine.travel(utc(2026, 1, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")  # trial to Jan 15
    with time_machine.travel(utc(2026, 1, 5), tick=False):
        subscription_apply(subscription=sub, action="suspend", actor="staff:x", reason="check")
    with time_machine.travel(utc(2026, 1, 7), tick=False):
        sub = subscription_apply(subscription=sub, action="resume", actor="staff:x", reason="ok")
    assert (sub.status, sub.current_period_end) == ("trialing", utc(2026, 1, 15))
    with time_machine.travel(utc(2026, 1, 15), tick=False):
        subscriptions_roll_due()
    sub = refreshed(sub)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "active",
        utc(2026, 1, 15),
        utc(2026, 2, 15),
    )


def test_a_resume_after_the_period_ended_starts_a_new_paid_period(tenant):
    from subscriptions.services import subscription_apply

    with time_machine.travel(utc(2026, 1, 1), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")
    with time_machine.travel(utc(2026, 1, 5), tick=False):
        subscription_apply(subscription=sub, action="suspend", actor="staff:x", reason="check")
    with time_machine.travel(utc(2026, 3, 10), tick=False):
        sub = subscription_apply(subscription=sub, action="resume", actor="staff:x", reason="ok")
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "active",
        utc(2026, 3, 10),
        utc(2026, 4, 10),
    )
    assert not sub.events.filter(action="renew").exists()  # suspended months are not billed


def test_no_plan_change_can_be_scheduled_behind_a_scheduled_cancel(tenant):
    from billing_project.errors import Conflict

    with time_machine.travel(utc(2026, 3, 1), tick=False):
        subscription_create(tenant=tenant, plan_code="enterprise", actor="test")
        subscription_cancel(tenant=tenant, at_period_end=True, actor="test")
        with pytest.raises(Conflict) as err:
            subscription_change_plan(tenant=tenant, plan_code="team", when="period_end", actor="test")
    assert err.value.code == "cancel_scheduled"


def test_a_scheduled_change_to_another_interval_restarts_the_period_at_the_boundary(tenant):
    with time_machine.travel(utc(2026, 1, 31), tick=False):
        sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="test")  # yearly, no trial
        change = subscription_change_plan(tenant=tenant, plan_code="team", when="period_end", actor="test")
    assert (change.applied, change.effective_at) == (False, utc(2027, 1, 31))
    with time_machine.travel(utc(2027, 1, 31), tick=False):
        assert subscriptions_roll_due() == 1
    sub = refreshed(sub)
    assert sub.plan_version.plan.code == "team"
    assert (sub.current_period_start, sub.current_period_end) == (utc(2027, 1, 31), utc(2027, 2, 28))
    with time_machine.travel(utc(2027, 2, 28), tick=False):
        subscriptions_roll_due()
    assert refreshed(sub).current_period_end == utc(2027, 3, 31)  # monthly now, anchored on the 31st
