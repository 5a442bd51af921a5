"""Tenants and subscriptions over HTTP, as API.md writes them."""

from __future__ import annotations

import pytest
import time_machine

from subscriptions.models import Subscription, Tenant
from subscriptions.periods import utc

pytestmark = [pytest.mark.django_db]


def put_tenant(api, key, tenant="acme", **body):
    body = {"name": "Acme", "email": "billing@acme.example", "currency": "USD", "country": "DE", **body}
    return api.put(f"/api/v1/tenants/{tenant}", body, format="json", **key.header)


def post(api, key, path, body):
    return api.post(f"/api/v1/tenants/acme/{path}", body, format="json", **key.header)


def error(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


class TestTenants:
    def test_put_creates_then_updates(self, api, service_key):
        created = put_tenant(api, service_key)
        assert created.status_code == 201
        assert created.json()["tenant"] == "acme"
        updated = put_tenant(api, service_key, name="Acme GmbH")
        assert updated.status_code == 200
        assert Tenant.objects.get(external_id="acme").name == "Acme GmbH"

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"currency": "USX"}, "unknown_currency"),
            ({"country": "XX"}, "invalid_country"),
            ({"email": "not-an-email"}, "validation_error"),
            ({"name": ""}, "validation_error"),
        ],
    )
    def test_bad_details_are_refused(self, api, service_key, body, code):
        assert error(put_tenant(api, service_key, **body), 400) == code
        assert not Tenant.objects.exists()

    def test_an_update_without_currency_keeps_it(self, api, service_key):
        put_tenant(api, service_key, currency="EUR")
        response = api.put("/api/v1/tenants/acme", {"name": "Acme AG"}, format="json", **service_key.header)
        assert response.status_code == 200
        assert Tenant.objects.get(external_id="acme").currency == "EUR"

    def test_over_long_ids_and_emails_are_400(self, api, service_key):
        assert error(put_tenant(api, service_key, tenant="x" * 201), 400) == "validation_error"
        assert error(put_tenant(api, service_key, email="a" * 250 + "@b.co"), 400) == "validation_error"
        assert not Tenant.objects.exists()

    def test_needs_the_tenants_scope(self, api, make_key):
        key = make_key("service", scopes=["billing:read"])
        assert error(put_tenant(api, key), 403) == "missing_scope"


@pytest.fixture
def acme(api, service_key, catalog, clock):
    # subscriptions below start on the suite's frozen clock unless a test travels elsewhere
    put_tenant(api, service_key)


class TestSubscriptions:
    def test_create_starts_the_plans_trial(self, api, service_key, acme):
        with time_machine.travel(utc(2026, 5, 1, 12), tick=False):
            response = post(api, service_key, "subscription", {"plan": "pro"})
        assert response.status_code == 201
        body = response.json()
        assert (body["plan"], body["plan_version"], body["status"]) == ("pro", 1, "trialing")
        assert body["trial_end"] == "2026-05-15T12:00:00Z"
        assert body["current_period"] == {"start": "2026-05-01T12:00:00Z", "end": "2026-05-15T12:00:00Z"}

    def test_a_second_live_subscription_is_409(self, api, service_key, acme):
        post(api, service_key, "subscription", {"plan": "pro"})
        assert error(post(api, service_key, "subscription", {"plan": "team"}), 409) == "subscription_exists"
        assert Subscription.objects.count() == 1

    @pytest.mark.parametrize(("body", "code"), [({"plan": "platinum"}, "unknown_plan"), ({}, "validation_error")])
    def test_create_errors(self, api, service_key, acme, body, code):
        assert error(post(api, service_key, "subscription", body), 400) == code

    def test_a_plan_in_another_currency_is_refused(self, api, service_key, acme):
        put_tenant(api, service_key, tenant="acme", currency="EUR")
        assert error(post(api, service_key, "subscription", {"plan": "pro"}), 400) == "currency_mismatch"

    def test_currency_is_locked_while_subscribed(self, api, service_key, acme):
        post(api, service_key, "subscription", {"plan": "pro"})
        assert error(put_tenant(api, service_key, currency="EUR"), 409) == "currency_locked"

    def test_unknown_tenant_in_the_path_is_404(self, api, service_key, catalog):
        response = api.post("/api/v1/tenants/nobody/subscription", {"plan": "pro"}, format="json", **service_key.header)
        assert error(response, 404) == "not_found"

    def test_change_now_returns_the_proration_applied(self, api, service_key, acme):
        with time_machine.travel(utc(2026, 4, 1), tick=False):
            post(api, service_key, "subscription", {"plan": "enterprise"})
        with time_machine.travel(utc(2026, 4, 2), tick=False):
            # enterprise is dearer per month than team: a downgrade, asked for now
            response = post(api, service_key, "subscription/change", {"plan": "team", "when": "now"})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["applied"] is True
        assert body["subscription"]["plan"] == "team"
        kinds = [(line["kind"], line["amount"]) for line in body["proration"]]
        assert kinds[0][0] == "credit"
        assert kinds[0][1].startswith("-")
        assert body["subscription"]["interval"] == "month"

    def test_change_to_the_same_plan_is_409(self, api, service_key, acme):
        post(api, service_key, "subscription", {"plan": "pro"})
        assert error(post(api, service_key, "subscription/change", {"plan": "pro"}), 409) == "already_on_plan"

    def test_change_without_a_subscription_is_404(self, api, service_key, acme):
        assert error(post(api, service_key, "subscription/change", {"plan": "pro"}), 404) == "no_subscription"

    def test_cancel_at_period_end_then_the_billing_view_shows_it(self, api, service_key, acme):
        post(api, service_key, "subscription", {"plan": "pro"})
        response = post(api, service_key, "subscription/cancel", {"at_period_end": True})
        assert response.status_code == 200
        assert response.json()["cancel_at_period_end"] is True
        billing = api.get("/api/v1/tenants/acme/billing", **service_key.header).json()
        assert billing["tenant"] == "acme"
        assert billing["subscription"]["pending_change"]["cancel"] is True
        assert billing["subscription"]["status"] == "trialing"

    def test_billing_view_without_a_subscription(self, api, service_key, acme):
        body = api.get("/api/v1/tenants/acme/billing", **service_key.header).json()
        assert body["subscription"] is None
        assert body["invoices"] == []

    def test_agents_may_read_billing_but_not_subscribe(self, api, agent_key, acme):
        assert api.get("/api/v1/tenants/acme/billing", **agent_key.header).status_code == 200
        assert error(post(api, agent_key, "subscription", {"plan": "pro"}), 403) == "agent_write_forbidden"
