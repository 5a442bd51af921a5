"""Stand-in endpoints, mounted only by tests, that exercise the central API rules
the way real endpoints will (a write, a query POST, a proposal, a tenant route)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView
from billing_project.errors import Conflict


class ProbeWriteView(BillingAPIView):
    required_scopes = {"POST": ("usage:write",)}

    def post(self, request: Request) -> Response:
        return Response({"echo": request.data}, status=201)


class ProbeQueryView(BillingAPIView):
    required_scopes = {"*": ("entitlements:read",)}
    query_methods = frozenset({"POST"})

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


class ProbeProposalView(BillingAPIView):
    required_scopes = {"POST": ("proposals:write",)}
    agent_methods = frozenset({"POST"})

    def post(self, request: Request) -> Response:
        return Response({"status": "pending"}, status=201)


class ProbeTenantView(BillingAPIView):
    required_scopes = {"GET": ("billing:read",), "PUT": ("tenants:write",), "DELETE": ("tenants:write",)}

    def get(self, request: Request, tenant: str) -> Response:
        return Response({"tenant": tenant})

    def put(self, request: Request, tenant: str) -> Response:
        return Response({"tenant": tenant})

    def delete(self, request: Request, tenant: str) -> Response:
        return Response(status=204)


class ProbeErrorView(BillingAPIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("boom: an unexpected bug")

    def post(self, request: Request) -> Response:
        raise Conflict("Already there.", code="probe_conflict", details={"id": 7})


def echo_types(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: echo_types(v) for k, v in data.items()}
    return type(data).__name__


class ProbeEchoTypesView(BillingAPIView):
    query_methods = frozenset({"POST"})

    def post(self, request: Request) -> Response:
        return Response(echo_types(request.data))
