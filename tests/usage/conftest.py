from __future__ import annotations

import pytest

from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert
from tests.conftest import Key
from tests.plans.factories import demo


@pytest.fixture
def usage_world(db: None) -> None:
    catalog_import(spec=catalog_validate(demo()))
    for name in ("acme", "globex"):
        tenant_upsert(external_id=name, name=name.title(), currency="USD")


@pytest.fixture
def reporter(usage_world: None, make_key) -> Key:
    key: Key = make_key(
        "service", scopes=["usage:write"], metrics=["ai_tokens", "api_calls", "active_users", "storage_gb"]
    )
    return key
