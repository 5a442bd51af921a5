"""A tenant id is 1-200 characters of A-Z a-z 0-9 . _ : -, starting with a letter or a digit
(README, "Tenants and subscriptions"): the API, the service and PostgreSQL refuse the rest."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.db import IntegrityError, transaction

from billing_project.errors import InvalidRequest
from subscriptions.models import Tenant
from subscriptions.services import tenant_upsert

pytestmark = [pytest.mark.django_db]

BAD_IDS = [
    "acme corp",  # a space: what a new user sent, and what was accepted
    " acme",
    "acme\n",
    "-acme",  # must start with a letter or a digit
    ".acme",
    "_acme",
    "acme/eu",
    "acme%eu",
    "café",
    "acme@eu",
    "x" * 201,
]
GOOD_IDS = ["acme", "7", "Acme-Corp_1.eu:prod", "tenant-b", "x" * 200]


def put(api, key, tenant):
    body = {"name": "Acme", "currency": "USD"}
    return api.put(f"/api/v1/tenants/{quote(tenant, safe='')}", body, format="json", **key.header)


@pytest.mark.parametrize("tenant", BAD_IDS)
def test_the_api_refuses_an_id_outside_the_format(api, service_key, tenant):
    response = put(api, service_key, tenant)
    if "/" in tenant:  # a slash never reaches the view: another path
        assert response.status_code == 404
    else:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert set(error["details"]["fields"]) == {"tenant"}
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("tenant", GOOD_IDS)
def test_the_api_accepts_ids_in_the_format(api, service_key, tenant):
    response = put(api, service_key, tenant)
    assert response.status_code == 201, response.content
    assert response.json()["tenant"] == tenant
    assert Tenant.objects.get().external_id == tenant


@pytest.mark.parametrize("tenant", BAD_IDS)
def test_the_service_refuses_an_id_outside_the_format(tenant):
    with pytest.raises(InvalidRequest) as refused:
        tenant_upsert(external_id=tenant, name="Acme", currency="USD")
    assert refused.value.code == "validation_error"
    assert set(refused.value.details["fields"]) == {"tenant"}
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("tenant", ["acme corp", "-acme", "café", "acme\n"])
def test_postgresql_refuses_an_id_outside_the_format_whatever_writes_it(tenant):
    with pytest.raises(IntegrityError, match="tenant_external_id_format"), transaction.atomic():
        Tenant.objects.create(external_id=tenant, name="Acme")
    Tenant.objects.create(external_id="acme", name="Acme")
    with pytest.raises(IntegrityError, match="tenant_external_id_format"), transaction.atomic():
        Tenant.objects.filter(external_id="acme").update(external_id=tenant)
