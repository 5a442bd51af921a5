"""Every reason of API.md, each produced by building its situation; grants and expiry
change the answer at once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone

from entitlements.services import grant_create, grant_revoke
from plans.models import Feature
from subscriptions.periods import shift
from subscriptions.services import subscription_apply
from tests.clock import NOW
from tests.entitlements.conftest import SUBSCRIBED_AT

# the suite's clock, frozen at NOW, inside the `subscribed` tenant's period
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]


def check(api, key, feature, quantity="1", tenant="acme"):
    response = api.post(
        "/api/v1/entitlements/check",
        {"tenant": tenant, "feature": feature, "quantity": quantity},
        format="json",
        **key.header,
    )
    assert response.status_code == 200, response.content
    return response.json()


def report(api, key, metric, n, **extra):
    events = [
        {
            "tenant": "acme",
            "metric": metric,
            "quantity": "1",
            "idempotency_key": f"{metric}-{i}-{n}",
            "occurred_at": (NOW - timedelta(days=5)).isoformat(),  # in the current period
            **extra,
        }
        for i in range(n)
    ]
    assert api.post("/api/v1/usage/events", {"events": events}, format="json", **reader_header(key)).status_code == 200


def zulu(at):
    return at.isoformat().replace("+00:00", "Z")


def reader_header(key):
    return key.header


def test_ok_for_a_boolean_feature(api, reader, subscribed):
    body = check(api, reader, "chat")
    assert (body["allowed"], body["reason"], body["used"], body["limit"]) == (True, "ok", None, None)
    assert body["on_unavailable"] == "allow"
    assert body["period_start"] == zulu(SUBSCRIBED_AT)
    assert body["period_end"] == zulu(shift(SUBSCRIBED_AT, "month", 1))  # monthly, from the subscription


def test_ok_under_the_limit_then_limit_exceeded(api, reader, subscribed):
    report(api, reader, "api_calls", 4)
    body = check(api, reader, "api")
    assert (body["allowed"], body["reason"], body["limit"], body["used"], body["remaining"]) == (
        True,
        "ok",
        "5",
        "4",
        "1",
    )
    body = check(api, reader, "api", quantity="2")
    assert (body["allowed"], body["reason"]) == (False, "limit_exceeded")
    assert body["on_unavailable"] == "deny"


def test_overage_billed_past_a_billed_limit(api, reader, subscribed):
    body = check(api, reader, "tokens", quantity="150")
    assert (body["allowed"], body["reason"], body["remaining"]) == (True, "overage_billed", "100")


def test_not_in_plan(api, reader, subscribed):
    assert check(api, reader, "export")["reason"] == "not_in_plan"
    assert check(api, reader, "sso")["reason"] == "not_in_plan"  # in the plan, switched off
    assert check(api, reader, "sso")["allowed"] is False


def test_no_subscription(api, reader, world):
    body = check(api, reader, "chat")
    assert (body["allowed"], body["reason"], body["period_start"]) == (False, "no_subscription", None)


def test_suspended(api, reader, subscribed):
    subscription_apply(subscription=subscribed, action="suspend", actor="t", reason="fraud check")
    assert check(api, reader, "chat")["reason"] == "subscription_suspended"


def test_canceled_and_ended(api, reader, subscribed):
    subscription_apply(subscription=subscribed, action="cancel", actor="t", reason="left")
    body = check(api, reader, "chat")
    assert (body["allowed"], body["reason"]) == (False, "subscription_canceled")


def test_past_due_keeps_the_plan_during_the_grace_then_suspends(api, reader, subscribed, settings):
    settings.DUNNING_GRACE_DAYS = 3
    subscription_apply(subscription=subscribed, action="mark_past_due", actor="t")
    assert check(api, reader, "chat")["reason"] == "ok"
    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        assert check(api, reader, "chat")["reason"] == "subscription_suspended"


def test_unknown_feature_and_tenant(api, reader, subscribed):
    r = api.post(
        "/api/v1/entitlements/check", {"tenant": "acme", "feature": "teleport"}, format="json", **reader.header
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unknown_feature")
    r = api.post("/api/v1/entitlements/check", {"tenant": "nobody", "feature": "chat"}, format="json", **reader.header)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unknown_tenant")


def test_quantity_defaults_to_one(api, reader, subscribed):
    report(api, reader, "api_calls", 5)
    r = api.post("/api/v1/entitlements/check", {"tenant": "acme", "feature": "api"}, format="json", **reader.header)
    assert r.json()["reason"] == "limit_exceeded"


class TestGrants:
    @pytest.fixture
    def staff(self, db):
        return get_user_model().objects.create_user("fin", "fin@example.com", "pw-long-enough-1", is_staff=True)

    def test_extra_limit_applies_at_once_and_stops_at_expiry(
        self, api, reader, subscribed, staff, django_capture_on_commit_callbacks
    ):
        report(api, reader, "api_calls", 5)
        assert check(api, reader, "api")["reason"] == "limit_exceeded"  # also warms the cache
        with django_capture_on_commit_callbacks(execute=True):  # the invalidation runs on commit
            grant_create(
                tenant=subscribed.tenant,
                feature=Feature.objects.get(code="api"),
                kind="extra_limit",
                amount=Decimal(10),
                reason="launch week",
                expires_at=NOW + timedelta(days=1),
                created_by=staff,
            )
        body = check(api, reader, "api")
        assert (body["reason"], body["limit"], body["remaining"]) == ("ok", "15", "10")
        with time_machine.travel(NOW + timedelta(days=1), tick=False):
            assert check(api, reader, "api")["reason"] == "limit_exceeded"

    def test_enable_grant_switches_a_feature_on_until_revoked(
        self, api, reader, subscribed, staff, django_capture_on_commit_callbacks
    ):
        assert check(api, reader, "export")["reason"] == "not_in_plan"
        with django_capture_on_commit_callbacks(execute=True):
            grant = grant_create(
                tenant=subscribed.tenant,
                feature=Feature.objects.get(code="export"),
                kind="enable",
                amount=None,
                reason="pilot",
                expires_at=timezone.now() + timedelta(days=30),
                created_by=staff,
            )
        assert check(api, reader, "export")["reason"] == "ok"
        with django_capture_on_commit_callbacks(execute=True):
            grant_revoke(grant=grant)
        assert check(api, reader, "export")["reason"] == "not_in_plan"

    def test_a_subscription_change_is_seen_at_once(self, api, reader, subscribed, django_capture_on_commit_callbacks):
        assert check(api, reader, "chat")["allowed"] is True  # cached now
        with django_capture_on_commit_callbacks(execute=True):
            subscription_apply(subscription=subscribed, action="suspend", actor="t", reason="x")
        assert check(api, reader, "chat")["allowed"] is False


def test_tenant_list_has_one_answer_per_feature(api, reader, subscribed):
    r = api.get("/api/v1/tenants/acme/entitlements", **reader.header)
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == "acme"
    assert {e["feature"] for e in body["entitlements"]} == {
        "chat",
        "sso",
        "export",
        "api",
        "tokens",
        "seats",
        "storage",
    }
    assert api.get("/api/v1/tenants/nobody/entitlements", **reader.header).status_code == 404
