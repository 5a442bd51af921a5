"""The data migration that turns boundary events' period documents into BillingPeriod rows
(subscriptions 0007), run on legacy events written as the old code wrote them."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps
from django.db import connection

from subscriptions.models import BillingPeriod, Subscription, SubscriptionEvent

pytestmark = [pytest.mark.django_db]
migration = importlib.import_module("subscriptions.migrations.0007_billing_periods")

JAN, FEB, MAR, MID_MAR = (datetime(2026, m, d, tzinfo=UTC) for m, d in ((1, 1), (2, 1), (3, 1), (3, 10)))


def doc(start, end, version, paid=True):
    return {"start": start.isoformat(), "end": end.isoformat(), "plan_version": version, "paid": paid}


def test_legacy_boundaries_become_periods(tenant):
    from plans.selectors import live_version

    pro = live_version("pro")
    assert pro is not None
    sub = Subscription.objects.create(
        tenant=tenant,
        plan_version=pro,
        status="canceled",
        started_at=JAN,
        period_anchor=JAN,
        current_period_start=MAR,
        current_period_end=datetime(2026, 4, 1, tzinfo=UTC),
        ended_at=MID_MAR,
    )

    def event(action, at, data):
        return SubscriptionEvent.objects.create(
            subscription=sub, action=action, to_status="active", actor="t", at=at, data=data
        )

    event("create", JAN, {"bill": True, "opened": doc(JAN, FEB, pro.pk)})
    event("renew", FEB, {"bill": True, "closed": doc(JAN, FEB, pro.pk), "opened": doc(FEB, MAR, pro.pk)})
    event("renew", MAR, {"bill": True, "closed": doc(FEB, MAR, pro.pk), "opened": doc(MAR, MID_MAR, pro.pk)})
    cancel = event("cancel", MID_MAR, {"bill": True, "closed": doc(MAR, MID_MAR, pro.pk)})

    migration.periods_from_events(apps, None)

    periods = list(BillingPeriod.objects.filter(subscription=sub).order_by("start"))
    assert [(p.start, p.end, p.kind, p.fee_in_advance, p.closed) for p in periods] == [
        (JAN, FEB, "paid", True, True),
        (FEB, MAR, "paid", True, True),
        (MAR, MID_MAR, "paid", True, True),
    ]
    assert periods[-1].closed_by == cancel
    assert {p.currency for p in periods} == {"USD"}


def test_a_live_subscription_gets_its_open_period(tenant):
    from subscriptions.services import subscription_create

    sub = subscription_create(tenant=tenant, plan_code="pro", actor="t", at=JAN)  # in its trial
    with connection.cursor() as cursor:  # as before billing periods existed (the guard refuses deletes)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE subscriptions_billingperiod DISABLE TRIGGER subscriptions_billingperiod_guard")
        BillingPeriod.objects.filter(subscription=sub).delete()
        cursor.execute("ALTER TABLE subscriptions_billingperiod ENABLE TRIGGER subscriptions_billingperiod_guard")
    migration.periods_from_events(apps, None)
    period = BillingPeriod.objects.get(subscription=sub)
    assert (period.kind, period.start, period.end, period.closed) == ("trial", JAN, sub.trial_end, False)
