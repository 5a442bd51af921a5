from __future__ import annotations

import pytest

from plans.services import catalog_import, catalog_validate
from subscriptions.models import Tenant
from subscriptions.services import tenant_upsert
from tests.plans.factories import demo


@pytest.fixture
def catalog(db: None) -> None:
    catalog_import(spec=catalog_validate(demo()))


@pytest.fixture
def tenant(catalog: None) -> Tenant:
    return tenant_upsert(
        external_id="acme", name="Acme", billing_email="billing@acme.example", country="DE", currency="USD"
    )[0]
