"""A trial extended by staff (or on an approved proposal): the trial, the period and the open
trial billing period end later together; only a trial that is still running is extended."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_project.errors import Conflict, InvalidRequest
from subscriptions.models import BillingPeriod, SubscriptionEvent
from subscriptions.services import subscription_create, subscription_extend_trial, subscriptions_roll_due
from tests.clock import NOW

pytestmark = [pytest.mark.django_db]


def test_a_running_trial_ends_later_with_its_period(tenant, clock):
    sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")  # 14-day trial
    extended = subscription_extend_trial(tenant=tenant, days=7, actor="staff:ann", reason="onboarding slipped")
    end = NOW + timedelta(days=21)
    assert (extended.status, extended.trial_end, extended.current_period_end) == ("trialing", end, end)
    period = BillingPeriod.objects.get(subscription=sub, closed=False)
    assert (period.kind, period.end, period.planned_end) == ("trial", end, NOW + timedelta(days=14))
    event = SubscriptionEvent.objects.filter(subscription=sub).latest("id")
    assert (event.action, event.actor, event.reason, event.data["days"]) == (
        "extend_trial",
        "staff:ann",
        "onboarding slipped",
        7,
    )
    # the roll that would have activated it on day 14 leaves it in its trial, and activates it on day 21
    clock.move_to(NOW + timedelta(days=15))
    subscriptions_roll_due()
    sub.refresh_from_db()
    assert sub.status == "trialing"
    clock.move_to(end + timedelta(seconds=1))
    subscriptions_roll_due()
    sub.refresh_from_db()
    assert (sub.status, sub.current_period_start) == ("active", end)


def test_only_a_running_trial_is_extended(tenant, clock):
    subscription_create(tenant=tenant, plan_code="pro", actor="test")
    for days in (0, -1, 91, True, "7"):
        with pytest.raises(InvalidRequest):
            subscription_extend_trial(tenant=tenant, days=days, actor="a", reason="r")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        subscription_extend_trial(tenant=tenant, days=3, actor="a", reason=" ")
    clock.move_to(NOW + timedelta(days=15))  # the trial has ended: it is rolled into a paid period first
    with pytest.raises(Conflict) as err:
        subscription_extend_trial(tenant=tenant, days=3, actor="a", reason="too late")
    assert err.value.code == "subscription_not_trialing"
    assert not SubscriptionEvent.objects.filter(action="extend_trial").exists()


def test_a_plan_without_a_trial_is_not_extended(tenant, clock):
    subscription_create(tenant=tenant, plan_code="enterprise", actor="test")
    with pytest.raises(Conflict, match="not in its trial"):
        subscription_extend_trial(tenant=tenant, days=3, actor="a", reason="r")
