from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.conftest import Key
from tests.plans.factories import demo

# Long before any instant these tests report usage at: a subscription whose open period
# runs on (never rolled here), so every event lies in a billing period. Usage outside every
# period is refused (`no_billing_period`, tests/usage/test_ingestion_api.py).
SUBSCRIBED_AT = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def usage_world(db: None) -> None:
    catalog_import(spec=catalog_validate(demo()))
    for name in ("acme", "globex"):
        tenant = tenant_upsert(external_id=name, name=name.title(), currency="USD")[0]
        subscription_create(tenant=tenant, plan_code="team", actor="test", at=SUBSCRIBED_AT)


@pytest.fixture
def reporter(usage_world: None, make_key) -> Key:
    key: Key = make_key(
        "service", scopes=["usage:write"], metrics=["ai_tokens", "api_calls", "active_users", "storage_gb"]
    )
    return key
