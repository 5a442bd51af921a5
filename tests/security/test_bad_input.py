"""Bad input answers 4xx in the API's error shape, never 500, on every route (walked, so a
route added later is covered): JSON nested ~950 levels (was RecursionError everywhere),
a NUL in a path parameter, a query parameter or a body field (was DataError from
PostgreSQL), and lone surrogates (was UnicodeEncodeError in the check's Redis prefetch,
the tenant lookup, error bodies that echo input, and signed Stripe webhooks)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo
from tests.security.test_route_walk import ROUTES as ALL_ROUTES
from tests.security.test_route_walk import Route, _id
from tests.webhooks.conftest import SECRET, URL, make_event, sign
from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]
ROUTES = [r for r in ALL_ROUTES if "_probe" not in r.route]  # the real API, not the suite's probes
METRICS = ["ai_tokens", "api_calls", "active_users", "storage_gb"]
# Every field name any API body takes, so that each route meets the bad text in a field it reads.
FIELDS = [
    "tenant",
    "feature",
    "metric",
    "plan",
    "name",
    "email",
    "currency",
    "country",
    "idempotency_key",
    "when",
    "reason",
    "kind",
    "success_url",
    "cancel_url",
]


@pytest.fixture
def client(db, make_key, clock):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="pro", actor="test")
    key = make_key("service", metrics=METRICS)
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.secret}")
    return api


def send(api: APIClient, method: str, url: str, text: str):
    return api.generic(method, url, text, content_type="application/json")


def refused(response, *statuses: int) -> str:
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    response.content.decode("utf-8")  # what it echoes is text
    return str(body["error"]["code"])


def body_with(value_json: str) -> str:
    """An object naming every field with `value_json`, and a usage event inside `events`."""
    fields = ", ".join(f'"{name}": {value_json}' for name in FIELDS)
    event = f'{{"tenant": {value_json}, "metric": {value_json}, "idempotency_key": {value_json}, "quantity": "1"}}'
    return f'{{{fields}, "quantity": "1", "usage": {{"api_calls": "1"}}, "events": [{event}]}}'


def methods(route: Route) -> list[str]:
    return [m for m in route.methods if m not in ("OPTIONS", "HEAD")]


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_json_nested_950_levels_is_malformed_json(client, route):
    deep = '{"tenant": "acme", "x": ' + "[" * 950 + "]" * 950 + "}"
    for method in methods(route):
        if method == "GET":
            continue
        assert refused(send(client, method, route.url(tenant="acme"), deep), 400, 413) == "malformed_json"


@pytest.mark.parametrize("route", ROUTES, ids=_id)
@pytest.mark.parametrize("bad", ["\\u0000", "acme\\u0000", "\\ud800", "acme\\udfff"])
def test_a_nul_or_a_lone_surrogate_in_a_body_field_is_400(client, route, bad):
    for method in methods(route):
        if method == "GET":
            continue
        code = refused(send(client, method, route.url(tenant="acme"), body_with(f'"{bad}"')), 400)
        assert code == ("validation_error" if "u0000" in bad else "malformed_json"), (method, route.route)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.params], ids=_id)
def test_a_nul_in_a_path_parameter_names_nothing_404(client, route):
    for method in methods(route):
        url = route.url(**dict.fromkeys(route.params, "ac%00me"))
        assert refused(send(client, method, url, "{}"), 404) == "not_found", (method, url)


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_a_nul_in_a_query_parameter_is_400(client, route):
    for method in methods(route):
        url = route.url(tenant="acme") + "?tenant=ac%00me&status=%00"
        assert refused(send(client, method, url, "{}"), 400) == "validation_error", (method, url)


def test_a_batch_is_decided_whole_when_one_event_holds_a_nul(client):
    """The parser refuses the body (its field path says where), so nothing is half-written."""
    events = [{"tenant": "acme", "metric": "ai_tokens", "quantity": "1", "idempotency_key": f"k{i}"} for i in range(3)]
    text = json.dumps({"events": events}).replace('"k1"', '"k\\u0000"')
    response = send(client, "POST", "/api/v1/usage/events", text)
    assert refused(response, 400) == "validation_error"
    assert response.json()["error"]["details"]["fields"] == {
        "events.1.idempotency_key": "NUL characters are not accepted."
    }
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud83d"])
def test_a_signed_webhook_with_unstorable_text_is_400_and_stored_nowhere(db, settings, bad):
    from django.test import Client

    from webhooks.models import StripeEvent

    settings.STRIPE_WEBHOOK_SECRET = SECRET
    body = json.dumps(make_event(description="PLACEHOLDER")).replace("PLACEHOLDER", bad).encode()
    response = Client(raise_request_exception=False).post(
        URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body)
    )
    assert refused(response, 400) == ("invalid_event" if bad == "\\u0000" else "malformed_json")
    assert not StripeEvent.objects.exists()


def test_fine_unicode_still_passes(client):
    """Not a blanket refusal of escapes: paired surrogates (an emoji) and other text are kept."""
    response = send(client, "PUT", "/api/v1/tenants/acme", '{"name": "Acme \\ud83d\\ude80 Ünïcode", "currency": "USD"}')
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Acme \U0001f680 Ünïcode"


@pytest.mark.parametrize("route", ROUTES, ids=_id)
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_a_body_in_another_encoding_than_utf8_is_malformed_json(client, route, encoding):
    """json.loads(bytes) reads UTF-16 and UTF-32 too, where the screens for a NUL or a
    surrogate did not look: a NUL reached PostgreSQL (500) through entitlements/check."""
    text = body_with('"acme\\u0000"')
    for method in methods(route):
        if method == "GET":
            continue
        response = client.generic(
            method, route.url(tenant="acme"), text.encode(encoding), content_type="application/json"
        )
        assert refused(response, 400) == "malformed_json", (method, route.route)
