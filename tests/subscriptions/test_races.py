"""Concurrent writes on one subscription, raced on real PostgreSQL: they cannot both apply."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.db import connection

from billing_project.errors import BillingError
from plans.services import catalog_import, catalog_validate
from subscriptions.models import ProrationItem, Subscription, SubscriptionEvent
from subscriptions.periods import utc
from subscriptions.services import subscription_change_plan, subscription_create, subscriptions_roll_due, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db(transaction=True)]

RACERS = 6


def race(target: Callable[[], Any], n: int = RACERS) -> tuple[list[Any], list[BaseException]]:
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(10)
            results.append(target())
        except BaseException as exc:  # collected for the assertions
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


@pytest.fixture
def subscribed():
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    with time_machine.travel(utc(2026, 4, 1), tick=False):
        subscription_create(tenant=tenant, plan_code="pro", actor="test")
    with time_machine.travel(utc(2026, 4, 15), tick=False):
        subscriptions_roll_due()
    return tenant


def test_concurrent_upgrades_apply_once(subscribed):
    with time_machine.travel(utc(2026, 4, 30), tick=False):
        results, errors = race(
            lambda: subscription_change_plan(tenant=subscribed, plan_code="team", when="now", actor="racer")
        )
    assert len(results) == 1
    assert len(errors) == RACERS - 1
    assert all(isinstance(e, BillingError) and e.code == "already_on_plan" for e in errors), errors
    assert ProrationItem.objects.count() == 2  # one credit, one charge: never twice
    assert SubscriptionEvent.objects.filter(action="change_plan").count() == 1


def test_concurrent_creates_leave_one_live_subscription(db):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="globex", name="Globex", currency="USD")[0]
    results, errors = race(lambda: subscription_create(tenant=tenant, plan_code="pro", actor="racer"))
    assert len(results) == 1
    assert all(isinstance(e, BillingError) and e.code == "subscription_exists" for e in errors), errors
    assert Subscription.objects.filter(tenant=tenant).count() == 1


def test_concurrent_rolls_cross_each_boundary_once(subscribed):
    with time_machine.travel(utc(2026, 7, 20), tick=False):
        results, errors = race(subscriptions_roll_due)
    assert errors == []
    assert sum(results) == 3  # May 15, Jun 15, Jul 15: once each, whoever got there first
    assert SubscriptionEvent.objects.filter(action="renew").count() == 3
