"""Staff suspend, resume and cancel from the admin, with a reason, through the same services."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from subscriptions.models import Subscription
from subscriptions.services import subscription_create
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]


def staff(group: str) -> Client:
    user = get_user_model().objects.create_user(group, f"{group}@example.com", "pw-long-enough-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    verified_login(client, user)
    return client


@pytest.fixture
def sub(tenant, clock) -> Subscription:
    # created and acted on at the suite's frozen clock
    return subscription_create(tenant=tenant, plan_code="enterprise", actor="test")


def act(client: Client, sub: Subscription, action: str, reason: str | None):
    data = {"action": action, "_selected_action": [sub.pk]}
    if reason is not None:
        data.update(apply="1", reason=reason)
    return client.post("/admin/subscriptions/subscription/", data)


def test_suspend_asks_for_a_reason_then_applies_it(sub):
    finance = staff("finance")
    page = act(finance, sub, "suspend", None)
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()
    assert Subscription.objects.get(pk=sub.pk).status == "active"
    act(finance, sub, "suspend", "")  # an empty reason is not enough
    assert Subscription.objects.get(pk=sub.pk).status == "active"
    act(finance, sub, "suspend", "chargeback under review")
    sub.refresh_from_db()
    assert sub.status == "suspended"
    event = sub.events.latest("id")
    assert (event.action, event.actor, event.reason) == ("suspend", "staff:finance", "chargeback under review")
    act(finance, sub, "resume", "chargeback won")
    assert Subscription.objects.get(pk=sub.pk).status == "active"
    act(finance, sub, "cancel_now", "customer asked by phone")
    assert Subscription.objects.get(pk=sub.pk).status == "canceled"


def test_support_can_read_but_not_act(sub):
    support = staff("support")
    assert support.get(f"/admin/subscriptions/subscription/{sub.pk}/change/").status_code == 200
    act(support, sub, "suspend", "curious")
    assert Subscription.objects.get(pk=sub.pk).status == "active"


def test_an_illegal_action_is_reported_not_applied(sub):
    finance = staff("finance")
    response = act(finance, sub, "resume", "resume an active one")
    assert response.status_code == 302
    assert Subscription.objects.get(pk=sub.pk).status == "active"
