"""Proration is in the currency of the period it splits, never guessed from the tenant.

A tenant's currency cannot change while it has a live subscription (`currency_locked`),
so today the two agree; the plan change must not rely on that. Here the tenant's row is
changed below the services (as a data fix or a bug elsewhere might), and the change is
refused instead of billing a USD period's proration in euros."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing_project.errors import InvalidRequest
from plans.services import catalog_import, catalog_validate
from subscriptions.models import ProrationItem, Tenant
from subscriptions.services import subscription_change_plan, subscription_create, tenant_upsert
from tests.clock import NOW
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def catalog(db, clock):
    spec = demo()
    spec["plans"].append(
        {"code": "pro-eur", "name": "Pro (EUR)", "interval": "month", "currency": "EUR", "base_fee": "45.00"}
    )
    catalog_import(spec=catalog_validate(spec))


def test_a_change_into_another_currency_than_the_periods_is_refused(catalog):
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="t", at=NOW - timedelta(days=30))
    Tenant.objects.filter(pk=tenant.pk).update(currency="EUR")  # below the services' guard
    tenant.refresh_from_db()
    with pytest.raises(InvalidRequest) as refused:
        subscription_change_plan(tenant=tenant, plan_code="pro-eur", when="now", actor="t", at=NOW)
    assert refused.value.code == "currency_mismatch"
    assert not ProrationItem.objects.filter(subscription=sub).exists()


def test_proration_items_carry_the_periods_currency(catalog):
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="team", actor="t", at=NOW - timedelta(days=40))
    change = subscription_change_plan(tenant=tenant, plan_code="enterprise", when="now", actor="t", at=NOW)
    items = list(ProrationItem.objects.filter(subscription=change.subscription))
    assert items
    assert {i.currency for i in items} == {"USD"}
    assert sum((i.amount for i in items), Decimal(0)) != 0


def test_the_billing_view_shows_credit_in_the_subscriptions_currency_and_every_balance(catalog, api, make_key):
    """The view's credit balance took the tenant's currency, not the one the subscription bills in."""
    from billing_project.money import Money
    from invoicing.ledger import credit_grant

    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="enterprise", actor="t", at=NOW - timedelta(days=3))
    credit_grant(tenant=tenant, amount=Money(Decimal("25.00"), "USD"), reason="goodwill", actor="t")
    credit_grant(tenant=tenant, amount=Money(Decimal("7.50"), "EUR"), reason="old balance", actor="t")
    Tenant.objects.filter(pk=tenant.pk).update(currency="EUR")  # below the services' guard
    key = make_key("service", scopes=["billing:read"])
    view = api.get("/api/v1/tenants/acme/billing", **key.header).json()
    assert view["credit_balance"] == "25.00"
    assert view["credit_balances"] == {"EUR": "7.50", "USD": "25.00"}
