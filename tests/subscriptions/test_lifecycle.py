"""The state machine: every allowed transition works, every other one is refused and changes nothing."""

from __future__ import annotations

import itertools

import pytest

from billing_project.errors import Conflict
from subscriptions.lifecycle import ACTIONS, TRANSITIONS
from subscriptions.models import Subscription, SubscriptionEvent
from subscriptions.services import subscription_apply, subscription_create

pytestmark = [pytest.mark.django_db]

STATUSES = [s.value for s in Subscription.Status]


@pytest.fixture
def subscription(tenant, clock) -> Subscription:
    # created at the suite's frozen clock, where the transitions under test happen too
    return subscription_create(tenant=tenant, plan_code="enterprise", actor="test")


def put_in(sub: Subscription, status: str) -> Subscription:
    # Arrange the starting state directly (the transitions under test come after).
    Subscription.objects.filter(pk=sub.pk).update(status=status, trial_end=sub.started_at)
    return Subscription.objects.get(pk=sub.pk)


@pytest.mark.parametrize(("status", "action"), sorted(TRANSITIONS))
def test_every_allowed_transition(subscription, status, action):
    sub = put_in(subscription, status)
    result = subscription_apply(subscription=sub, action=action, actor="staff:ana", reason="because")
    assert result.status == TRANSITIONS[(status, action)]
    event = SubscriptionEvent.objects.filter(subscription=sub).latest("id")
    assert (event.action, event.from_status, event.to_status, event.actor, event.reason) == (
        action,
        status,
        result.status,
        "staff:ana",
        "because",
    )
    if result.status in ("canceled", "ended"):
        assert result.ended_at is not None


REFUSED = [(s, a) for s, a in itertools.product(STATUSES, sorted(ACTIONS)) if (s, a) not in TRANSITIONS]


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_every_other_transition_is_refused_and_changes_nothing(subscription, status, action):
    sub = put_in(subscription, status)
    events = SubscriptionEvent.objects.count()
    with pytest.raises(Conflict) as err:
        subscription_apply(subscription=sub, action=action, actor="staff:ana", reason="try")
    assert err.value.code == "invalid_transition"
    assert err.value.details["status"] == status
    assert Subscription.objects.get(pk=sub.pk).status == status
    assert SubscriptionEvent.objects.count() == events


def test_final_states_have_no_way_out():
    assert not [a for (s, a) in TRANSITIONS if s in ("canceled", "ended")]


def test_events_are_append_only(subscription):
    from django.db import DatabaseError, transaction

    event = SubscriptionEvent.objects.filter(subscription=subscription).get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        SubscriptionEvent.objects.filter(pk=event.pk).update(reason="rewritten")


def test_one_live_subscription_per_tenant_even_past_the_service(subscription):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            tenant=subscription.tenant,
            plan_version=subscription.plan_version,
            status="active",
            started_at=subscription.started_at,
            period_anchor=subscription.period_anchor,
            current_period_start=subscription.current_period_start,
            current_period_end=subscription.current_period_end,
        )
