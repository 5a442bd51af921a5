"""The MCP tool server (agents/): every tool is an agent key's call of the REST API, and
none can execute a financial action. Driven with the official SDK's client: in-process for
the rules, and once over stdio against `manage.py mcp_server` as an assistant runs it."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest
from django.urls import resolve
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from agents.gateway import Gateway
from agents.tools import API, TOOLS, build_server
from approvals.models import ApprovalRequest
from approvals.services import approval_approve
from billing_project.api_auth import method_is_write
from invoicing.models import CreditEntry, Invoice, Refund
from tests.livedb import ROOT, fresh_database, manage_py, subprocess_env

# tools run in the SDK's worker threads, on connections of their own: committed data only
pytestmark = [pytest.mark.django_db(transaction=True)]

SAMPLE = {"tenant": "acme-demo", "number": "INV-2026-000001", "code": "team", "proposal_id": "1"}


def test_every_tool_is_a_read_or_a_proposal_never_a_financial_action():
    """Each tool's route resolves to an API view; the call is a GET, a query POST (a read with
    a body), or the proposals POST: nothing that changes billing state by itself."""
    server = build_server(Gateway("bak_unused"))

    async def names() -> list[str]:
        async with Client(server) as client:
            return [t.name for t in (await client.list_tools()).tools]

    assert sorted(anyio.run(names)) == sorted(TOOLS)
    for name, route in TOOLS.items():
        path = API + route.path.format(**SAMPLE)
        view = resolve(path).func.view_class  # type: ignore[attr-defined]
        if route.method == "GET":
            continue
        assert not method_is_write(view, route.method) or route.method in view.agent_methods, name
        if method_is_write(view, route.method):
            assert route.path == "/proposals", f"{name} writes something other than a proposal"


def call(server: Any, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    async def run() -> tuple[bool, Any]:
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments)
            text = str(getattr(result.content[0], "text", "")) if result.content else ""
            if result.is_error:
                return False, json.loads(text.split(": ", 1)[1])
            return True, json.loads(text)

    return anyio.run(run)


def test_an_assistant_reads_explains_and_proposes_and_finance_decides(demo):
    from django.contrib.auth.models import Group, User

    server = build_server(Gateway(demo["agent_key"]))
    ok, summary = call(server, "billing_summary", {"tenant": "acme-demo"})
    assert ok, summary
    assert summary["subscription"]["plan"] == "team"
    number = summary["open_invoices"][0]["number"]
    ok, explained = call(server, "explain_invoice", {"number": number})
    assert ok
    tokens = next(line for line in explained["lines"] if line["metric"] == "ai_tokens")
    assert tokens["amount"] == "75.60"
    ok, estimate = call(server, "estimate_price", {"plan": "pro", "usage": {"ai_tokens": "12000000"}})
    assert ok, estimate
    ok, check = call(server, "check_entitlement", {"tenant": "acme-demo", "feature": "seats", "quantity": "1"})
    assert (ok, check["allowed"]) == (True, True)
    ok, proposal = call(
        server,
        "propose_action",
        {
            "kind": "credit",
            "tenant": "acme-demo",
            "payload": {"amount": "20.00", "currency": "USD"},
            "reason": "The token line doubled after the 20 November incident.",
            "idempotency_key": "assistant-1",
        },
    )
    assert ok, proposal
    assert proposal["status"] == "pending"
    assert not CreditEntry.objects.filter(tenant__external_id="acme-demo").exists()  # proposed, not done

    approver = User.objects.get(username="approver")
    approval_approve(request_id=proposal["id"], approver=approver, reason="confirmed in the incident log")
    entry = CreditEntry.objects.get(tenant__external_id="acme-demo", kind="grant")
    prefix = demo["agent_key"].split("_")[1]
    assert entry.actor == f"staff:approver approving agent:bak_{prefix}"
    ok, followed = call(server, "get_proposal", {"proposal_id": proposal["id"]})
    assert (ok, followed["status"]) == (True, "approved")
    assert Group.objects.get(name="finance-approver") in approver.groups.all()


def test_a_tool_refused_by_the_api_is_a_tool_error_with_its_code_and_nothing_happens(demo, make_key):
    server = build_server(Gateway(demo["agent_key"]))
    paid = Invoice.objects.get(tenant__external_id="acme-demo", status="paid")
    ok, error = call(
        server,
        "propose_action",
        {
            "kind": "refund",
            "tenant": "acme-demo",
            "payload": {"invoice": paid.number, "amount": "1000.00", "payout_reference": "SEPA-1"},
            "reason": "refund it all",
            "idempotency_key": "too-much",
        },
    )
    assert not ok
    assert (error["status"], error["error"]["code"]) == (400, "refund_exceeds_paid")
    ok, error = call(server, "billing_summary", {"tenant": "nobody"})
    assert (ok, error["status"]) == (False, 404)
    bound = make_key("agent", tenant="demo", name="demo's agent")
    ok, error = call(build_server(Gateway(bound.secret)), "billing_summary", {"tenant": "acme-demo"})
    assert (ok, error["status"]) == (False, 404)  # bound to another tenant: as over HTTP
    ok, error = call(build_server(Gateway("bak_not_a_key")), "list_plans", {})
    assert (ok, error["status"]) == (False, 401)
    assert not Refund.objects.exists()
    assert not ApprovalRequest.objects.exists()


def test_an_agent_key_through_the_tools_can_do_nothing_a_write_route_offers(demo, make_key):
    """Even a tool server handed a service key with every scope only reads and proposes:
    the tools call no other route (above); and the agent key's own HTTP writes are refused."""
    gateway = Gateway(demo["agent_key"])
    for method, path, body in (
        ("POST", "/api/v1/tenants/acme-demo/subscription/cancel", {"at_period_end": False}),
        ("POST", "/api/v1/usage/events", {"tenant": "acme-demo", "metric": "ai_tokens", "quantity": "1"}),
        ("POST", "/api/v1/entitlements/consume", {"tenant": "acme-demo", "feature": "ai_tokens", "quantity": "1"}),
        ("POST", "/api/v1/tenants/acme-demo/checkout", {"plan": "pro"}),
    ):
        answer = gateway.call(method, path, body=body)
        assert answer.status == 403, (path, answer)
        assert answer.body["error"]["code"] == "agent_write_forbidden"


@pytest.mark.slow  # a subprocess
def test_manage_py_mcp_server_over_stdio_as_an_assistant_runs_it(django_db_blocker, tmp_path):
    env = subprocess_env()
    env["DATABASE_URL"] = fresh_database(django_db_blocker, "mcp")
    credentials = tmp_path / "demo-credentials.json"
    loaded = manage_py("demo_setup", "--credentials", str(credentials), env={**env, "DEBUG": "1"})
    assert loaded.returncode == 0, loaded.stderr
    agent_key = json.loads(credentials.read_text())["agent_key"]
    # a key the API does not know: refused at start-up, not at every call
    refused = manage_py("mcp_server", env={**env, "BILLING_AGENT_KEY": "bak_00000000_not-a-real-key"})
    assert refused.returncode != 0
    assert "401 invalid_api_key" in refused.stderr, refused.stderr[-500:]
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(ROOT / "manage.py"), "mcp_server"],
        cwd=str(ROOT),
        env={**env, "BILLING_AGENT_KEY": agent_key},
    )

    async def session() -> tuple[list[str], Any, Any]:
        async with Client(params) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            summary = await client.call_tool("billing_summary", {"tenant": "acme-demo"})
            proposal = await client.call_tool(
                "propose_action",
                {
                    "kind": "credit",
                    "tenant": "acme-demo",
                    "payload": {"amount": "5.00", "currency": "USD"},
                    "reason": "a goodwill gesture",
                    "idempotency_key": "stdio-1",
                },
            )
            return tools, summary, proposal

    tools, summary, proposal = anyio.run(session)
    assert sorted(tools) == sorted(TOOLS)
    assert not summary.is_error, summary
    assert json.loads(getattr(summary.content[0], "text", ""))["tenant"] == "acme-demo"
    assert not proposal.is_error, proposal
    assert json.loads(getattr(proposal.content[0], "text", ""))["status"] == "pending"


@pytest.mark.slow  # a subprocess
def test_the_server_needs_a_key():
    env = subprocess_env()
    env.pop("BILLING_AGENT_KEY", None)
    done = manage_py("mcp_server", env=env, timeout=120)
    assert done.returncode != 0
    assert "BILLING_AGENT_KEY" in done.stderr


def test_ids_that_could_name_another_route_are_refused_before_any_call(demo):
    server = build_server(Gateway(demo["agent_key"]))
    for tenant in ("../plans", "acme-demo/../x", "a?b", "a#b", "a\nb", ""):
        ok, error = call(server, "billing_summary", {"tenant": tenant})
        assert not ok, tenant
        assert error["error"]["code"] == "validation_error", tenant
    ok, error = call(server, "billing_summary", {"tenant": "a:b"})
    assert (ok, error["status"]) == (False, 404)
    assert "'a:b'" in error["error"]["message"]  # as over HTTP: the id itself, not %3A


@pytest.mark.slow  # a subprocess
def test_the_server_will_not_run_with_a_service_key(make_key):
    service = make_key("service")
    env = subprocess_env()
    env["BILLING_AGENT_KEY"] = service.secret
    done = manage_py("mcp_server", env=env, timeout=120)
    assert done.returncode != 0
    assert "agent key" in done.stderr
