"""Walk every URL pattern, so that endpoints added later are covered without anyone
remembering to: agent keys can never change state, and a key bound to one tenant
cannot reach another (API.md, Conventions; ARCHITECTURE.md, Principals)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from billing_project.api import BillingAPIView
from billing_project.api_auth import ApiKeyPermission
from billing_project.scopes import AGENT_SCOPES, ALL_SCOPES

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Routes outside the API key regime, each for a stated reason.
NON_API_PREFIXES = (
    "admin/",  # staff: session login, Django permissions
    "healthz",
    "readyz",
    "metrics",  # operations: no data, no state change
    "webhooks/",  # Stripe: signature, not keys
    "static/",
)
PUBLIC_API_ROUTES = ("api/schema/", "api/docs/")  # the published contract itself


@dataclass
class Route:
    route: str
    view_class: type[APIView]
    methods: list[str]

    def url(self, **params: str) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(2)
            return params.get(name, "1" if match.group(1) == "int" else "x1")

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.route)

    @property
    def params(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def api_routes() -> list[Route]:
    routes = []
    for route, callback in _walk(get_resolver("tests.probe_urls").url_patterns):
        if route.startswith(NON_API_PREFIXES) or route.startswith(PUBLIC_API_ROUTES):
            continue
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        why = f"/{route} is neither a DRF view nor a listed non-API route: the key rules would not apply"
        assert view_class is not None, why
        assert issubclass(view_class, APIView), why
        actions = getattr(callback, "actions", None)
        if actions:
            methods = [m.upper() for m in actions]
        else:
            methods = [m.upper() for m in view_class.http_method_names if hasattr(view_class, m)]
        routes.append(Route(route, view_class, methods))
    return routes


ROUTES = api_routes()


def _id(route: Route) -> str:
    return route.route


def test_the_walk_finds_the_api():
    found = {r.route for r in ROUTES}
    assert "api/v1/_probe/write" in found
    assert "api/v1/_probe/tenants/<str:tenant>/thing" in found


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_every_api_view_runs_the_central_rules(route):
    assert ApiKeyPermission in route.view_class.permission_classes, (
        f"/{route.route} replaced the default permission classes"
    )


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_agent_keys_cannot_write_anywhere(api, make_key, route):
    agent = make_key("agent", scopes=AGENT_SCOPES)
    for method in route.methods:
        if method in SAFE_METHODS:
            continue
        declared_read = method in getattr(route.view_class, "query_methods", ())
        declared_proposal = method in getattr(route.view_class, "agent_methods", ())
        response = api.generic(method, route.url(), "{}", content_type="application/json", **agent.header)
        if declared_read or declared_proposal:
            assert not (response.status_code == 403 and response.json()["error"]["code"] == "agent_write_forbidden")
        else:
            assert response.status_code == 403, (method, route.route, response.content)
            assert response.json()["error"]["code"] == "agent_write_forbidden"


# Every POST that declares itself a read, by name: a write view cannot quietly opt in.
QUERY_POSTS = {
    "api/v1/pricing/estimate",
    "api/v1/entitlements/check",
    "api/v1/_probe/query",
    "api/v1/_probe/echo-types",
}
# Path parameters that name no tenant's data, each with its reason. Any other parameter
# (an invoice number, a subscription id) must resolve to its tenant for the binding rule.
TENANT_NEUTRAL_PARAMS = {
    ("api/v1/plans/<str:code>", "code"),  # the public price list
}


def test_only_listed_endpoints_declare_a_post_a_read():
    declared = {r.route for r in ROUTES if getattr(r.view_class, "query_methods", None)}
    assert declared <= QUERY_POSTS, declared - QUERY_POSTS


def test_every_path_parameter_is_a_tenant_or_listed_as_neutral():
    for route in ROUTES:
        resolver = getattr(route.view_class, "tenant_of_path", BillingAPIView.tenant_of_path)
        resolves = resolver is not BillingAPIView.tenant_of_path
        for param in route.params:
            assert param == "tenant" or resolves or (route.route, param) in TENANT_NEUTRAL_PARAMS, (
                f"/{route.route}: parameter <{param}> must name the tenant or be listed as tenant-neutral"
            )


def test_a_tenant_in_the_query_string_is_bound_too(api, make_key):
    bound = make_key("service", tenant="tenant-a")
    assert api.get("/api/v1/plans?tenant=tenant-b", **bound.header).status_code == 404
    assert api.get("/api/v1/plans?tenant=tenant-a", **bound.header).status_code == 200


def test_only_proposals_are_agent_writes():
    declared = [r.route for r in ROUTES if getattr(r.view_class, "agent_methods", None)]
    assert all("proposals" in route for route in declared), declared


@pytest.mark.parametrize("route", [r for r in ROUTES if "tenant" in r.params], ids=_id)
def test_bound_keys_see_no_other_tenant(api, make_key, route):
    bound = make_key("service", scopes=ALL_SCOPES, tenant="tenant-a")
    for method in route.methods:
        if method in ("HEAD", "OPTIONS"):
            continue
        response = api.generic(
            method, route.url(tenant="tenant-b"), "{}", content_type="application/json", **bound.header
        )
        assert response.status_code == 404, (method, route.route, response.content)
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("route", [r for r in ROUTES if any(m in UNSAFE for m in r.methods)], ids=_id)
def test_bound_keys_cannot_name_another_tenant_in_a_body(api, make_key, route):
    bound = make_key("service", scopes=ALL_SCOPES, tenant="tenant-a")
    for method in route.methods:
        if method not in UNSAFE:
            continue
        for body in ('{"tenant": "tenant-b"}', '{"events": [{"tenant": "tenant-b"}]}'):
            response = api.generic(
                method, route.url(tenant="tenant-a"), body, content_type="application/json", **bound.header
            )
            assert response.status_code == 404, (method, route.route, body, response.content)


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_no_key_no_entry(api, route):
    for method in route.methods:
        if method in ("HEAD", "OPTIONS"):
            continue
        response = api.generic(method, route.url(), "{}", content_type="application/json")
        assert response.status_code == 401, (method, route.route)
