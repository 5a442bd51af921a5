"""/api/schema/ documents what each route really answers (billing_project.api_schema), and
the API takes only what the schema says: strings as strings, booleans as booleans; an
error is JSON even where the route also renders HTML. Found by schemathesis
(tests/fuzz/test_contract.py runs it against a live server)."""

from __future__ import annotations

import pytest
import yaml

from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def schema(client):
    return yaml.safe_load(client.get("/api/schema/").content)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_every_operation_documents_the_errors_it_can_answer(schema):
    found = list(operations(schema))
    assert len(found) >= 15
    for path, method, operation in found:
        statuses = set(operation["responses"])
        assert {"400", "401", "403", "404", "429", "503"} <= statuses, (method, path, statuses)
        if method != "get":
            assert {"413", "415"} <= statuses, (method, path)
        for status in statuses:
            if status.startswith(("4", "5")):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]


def test_writes_document_409_and_queries_do_not(schema):
    by_route = {(path, method): op for path, method, op in operations(schema)}
    assert "409" in by_route[("/api/v1/usage/events", "post")]["responses"]
    assert "409" in by_route[("/api/v1/tenants/{tenant}/subscription", "post")]["responses"]
    assert "409" not in by_route[("/api/v1/entitlements/check", "post")]["responses"]
    assert "409" not in by_route[("/api/v1/pricing/estimate", "post")]["responses"]
    assert "502" in by_route[("/api/v1/tenants/{tenant}/checkout", "post")]["responses"]


def test_a_single_duplicate_event_is_documented_as_a_200_too(schema):
    ok = schema["paths"]["/api/v1/usage/events"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/UsageBatchResultOrDuplicate"}
    shapes = schema["components"]["schemas"]["UsageBatchResultOrDuplicate"]["oneOf"]
    assert {s["$ref"].rsplit("/", 1)[-1] for s in shapes} == {"UsageBatchResult", "UsageDuplicate"}


@pytest.fixture
def subscribed(make_key, clock):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="pro", actor="test")
    return make_key("service")


@pytest.mark.parametrize(
    "body",
    [{"at_period_end": 0}, {"at_period_end": "false"}, {"at_period_end": 1}, {"reason": 0}, {"reason": False}],
)
def test_cancel_takes_only_a_boolean_and_a_string(api, subscribed, body):
    """`{"at_period_end": 0}` was read as false: it canceled the subscription at once."""
    response = api.post("/api/v1/tenants/acme/subscription/cancel", body, format="json", **subscribed.header)
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]["fields"]) == set(body)
    assert api.get("/api/v1/tenants/acme/billing", **subscribed.header).json()["subscription"]["status"] != "canceled"


@pytest.mark.parametrize("body", [{"name": 5, "currency": "USD"}, {"name": "Acme", "currency": True}])
def test_a_tenant_takes_only_strings(api, subscribed, body):
    response = api.put("/api/v1/tenants/acme", body, format="json", **subscribed.header)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"


def test_an_invoice_documents_error_is_json_even_when_html_was_asked_for(api):
    """`GET /api/v1/invoices/X?format=html` without a key answered "401 Unauthorized" as text/html."""
    for url, headers in [
        ("/api/v1/invoices/INV-1?format=html", {}),
        ("/api/v1/invoices/INV-1", {"HTTP_ACCEPT": "text/html"}),
    ]:
        response = api.get(url, **headers)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_authenticated"
