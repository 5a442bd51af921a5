from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription, Tenant
from subscriptions.services import subscription_create, tenant_upsert
from tests.clock import NOW
from tests.conftest import Key

SUBSCRIBED_AT = NOW - timedelta(days=9)

CATALOG = {
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count", "properties": ["endpoint"]},
        {"code": "tokens", "name": "Tokens", "aggregation": "sum", "properties": ["model"]},
        {
            "code": "seats",
            "name": "Seats",
            "aggregation": "unique_count",
            "unique_property": "user_ref",
            "properties": ["user_ref"],
        },
        {"code": "storage", "name": "Storage", "aggregation": "max", "properties": []},
    ],
    "features": [
        {"code": "chat", "name": "Chat", "on_unavailable": "allow"},
        {"code": "sso", "name": "SSO"},
        {"code": "export", "name": "Export"},
        {"code": "api", "name": "API", "metric": "api_calls"},
        {"code": "tokens", "name": "Tokens", "metric": "tokens"},
        {"code": "seats", "name": "Seats", "metric": "seats"},
        {"code": "storage", "name": "Storage", "metric": "storage", "on_unavailable": "allow"},
    ],
    "plans": [
        {
            "code": "basic",
            "name": "Basic",
            "base_fee": "10.00",
            "charges": [{"metric": "tokens", "model": "per_unit", "unit_price": "0.001"}],
            "entitlements": [
                "chat",
                {"feature": "sso", "enabled": False},
                {"feature": "api", "limit": "5", "overage": "block"},
                {"feature": "tokens", "limit": "100", "overage": "bill"},
                {"feature": "seats", "limit": "2", "overage": "block"},
                {"feature": "storage"},
            ],
        }
    ],
}


@pytest.fixture
def world(db: None) -> Tenant:
    catalog_import(spec=catalog_validate(CATALOG))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


@pytest.fixture
def subscribed(world: Tenant, clock: time_machine.Traveller) -> Subscription:
    """On basic (monthly, no trial) since nine days before the suite's clock, which stays
    frozen at tests/clock.NOW: the test runs inside the period [SUBSCRIBED_AT, a month on)."""
    return subscription_create(tenant=world, plan_code="basic", actor="test", at=SUBSCRIBED_AT)


@pytest.fixture
def reader(make_key) -> Key:
    key: Key = make_key(
        "service", scopes=["entitlements:read", "usage:write"], metrics=["api_calls", "tokens", "seats", "storage"]
    )
    return key
