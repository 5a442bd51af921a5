"""`validation_error` has one shape on every route (README, Errors):

    {"error": {"code": "validation_error", "message": "…",
               "details": {"fields": {"<field>": "<message>", …}}}}

one message per wrong field (nested ones by dotted path), `non_field_errors` for a
problem that is not one field's. Walked over the routes with their own checks, DRF
serializers, the usage batch's per-event errors and the domain errors."""

from __future__ import annotations

from typing import Any

import pytest

from billing_project.errors import InvalidRequest
from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def key(make_key):
    catalog_import(spec=catalog_validate(demo()))
    tenant_upsert(external_id="acme", name="Acme", currency="USD")
    return make_key("service", metrics=["ai_tokens", "api_calls", "active_users", "storage_gb"])


def fields_of(error: dict[str, Any]) -> dict[str, str]:
    assert error["code"] == "validation_error", error
    details = error["details"]
    assert not {"field", "errors"} & set(details), details
    fields = details["fields"]
    assert isinstance(fields, dict), details
    assert fields, details
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items()), fields
    return fields


EVENT = {"tenant": "acme", "metric": "ai_tokens", "quantity": "5", "idempotency_key": "k"}

ROUTES = [
    # (method, path, body, the fields named)
    ("post", "/api/v1/usage/events", {**EVENT, "idempotency_key": None}, {"idempotency_key"}),
    ("post", "/api/v1/usage/events", {**EVENT, "occurred_at": "yesterday"}, {"occurred_at"}),
    ("post", "/api/v1/usage/events", {**EVENT, "properties": ["model"]}, {"properties"}),
    ("post", "/api/v1/usage/events", {**EVENT, "tenant": 7}, {"tenant"}),
    ("post", "/api/v1/usage/events", [EVENT], {"non_field_errors"}),  # not an object
    ("post", "/api/v1/usage/events", {"events": []}, {"events"}),
    ("post", "/api/v1/entitlements/check", {"tenant": "acme"}, {"feature"}),
    ("post", "/api/v1/entitlements/check", {"feature": "api_access", "tenant": ""}, {"tenant"}),
    ("post", "/api/v1/entitlements/consume", {"tenant": "acme", "feature": "api_access"}, {"idempotency_key"}),
    ("post", "/api/v1/entitlements/consume", ["x"], {"non_field_errors"}),
    ("post", "/api/v1/pricing/estimate", {"usage": {}}, {"plan"}),
    ("put", "/api/v1/tenants/acme", {"currency": "USD", "email": "not an email"}, {"name", "email"}),
    ("post", "/api/v1/tenants/acme/subscription/change", {"plan": "pro", "when": "someday"}, {"when"}),
]


@pytest.mark.parametrize(("method", "path", "body", "named"), ROUTES)
def test_every_route_names_the_wrong_fields_alike(api, key, method, path, body, named):
    response = getattr(api, method)(path, body, format="json", **key.header)
    assert response.status_code == 400, response.content
    assert set(fields_of(response.json()["error"])) == named


def test_a_batchs_refused_event_has_the_same_shape(api, key):
    batch = {"events": [EVENT, {**EVENT, "idempotency_key": "k2", "occurred_at": "2026-02-30T00:00:00Z"}]}
    results = api.post("/api/v1/usage/events", batch, format="json", **key.header).json()["results"]
    assert results[1]["status"] == "rejected"
    assert set(fields_of(results[1]["error"])) == {"occurred_at"}


def test_a_validation_error_raised_without_fields_still_has_them():
    # what a service raises with the code alone is not one field's problem
    error = InvalidRequest("Say why.", code="validation_error")
    assert error.details == {"fields": {"non_field_errors": "Say why."}}
    named = InvalidRequest("Say why.", code="validation_error", details={"fields": {"reason": "Say why."}})
    assert named.details == {"fields": {"reason": "Say why."}}
