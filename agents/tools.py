"""The MCP tool server for AI assistants: read, explain, estimate, check and propose.

Every tool is one call of the REST API, through agents.gateway with the agent's own key:
TOOLS says which route each tool calls, and nothing else reaches billing. None of those
routes changes billing state: each is a read (GET, or a query POST such as the entitlement
check and the price estimate), or `POST /api/v1/proposals`, which only asks a human
(tests/agents prove it tool by tool). A refused call is a tool error carrying the API's
error code and message, for the model to read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .gateway import Gateway

API = "/api/v1"
INSTRUCTIONS = (
    "Billing's tools for an AI assistant. You may read a tenant's billing, explain invoices and prices, "
    "check entitlements and estimate prices. You can never pay, refund, credit or change a plan, price or "
    "entitlement: propose it instead (propose_action), and a finance approver decides. Amounts are decimal "
    "strings with their currency; times are ISO 8601 UTC."
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {placeholders}, under /api/v1


TOOLS: dict[str, Route] = {
    "list_plans": Route("GET", "/plans"),
    "get_plan": Route("GET", "/plans/{code}"),
    "billing_summary": Route("GET", "/tenants/{tenant}/billing/summary"),
    "list_invoices": Route("GET", "/tenants/{tenant}/invoices"),
    "get_invoice": Route("GET", "/invoices/{number}"),
    "upcoming_invoice": Route("GET", "/tenants/{tenant}/invoices/upcoming"),
    "explain_invoice": Route("GET", "/invoices/{number}/explanation"),
    "list_entitlements": Route("GET", "/tenants/{tenant}/entitlements"),
    "check_entitlement": Route("POST", "/entitlements/check"),
    "estimate_price": Route("POST", "/pricing/estimate"),
    "propose_action": Route("POST", "/proposals"),
    "list_proposals": Route("GET", "/proposals"),
    "get_proposal": Route("GET", "/proposals/{proposal_id}"),
}


def _segment(value: str) -> str:
    """A path parameter as WSGI's PATH_INFO carries it: decoded text (UTF-8 bytes read as
    latin-1). One segment only: a '/', '?', '#' or control character could name another
    route, so it is refused before anything is called."""
    if not value or any(c in value for c in "/?#\\") or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ToolError(
            json.dumps(
                {
                    "status": 400,
                    "error": {"code": "validation_error", "message": f"Not a valid id: {value[:80]!r}.", "details": {}},
                }
            )
        )
    return value.encode("utf-8").decode("latin-1")


def _path(tool: str, **parts: str) -> str:
    return API + TOOLS[tool].path.format(**{k: _segment(str(v)) for k, v in parts.items()})


def _answer(gateway: Gateway, tool: str, *, query: dict[str, Any] | None = None, body: Any = None, **parts: str) -> Any:
    route = TOOLS[tool]
    answer = gateway.call(route.method, _path(tool, **parts), query=query, body=body)
    if not answer.ok:
        error = (answer.body or {}).get("error") if isinstance(answer.body, dict) else None
        error = error or {"code": "http_error", "message": f"HTTP {answer.status}", "details": {}}
        raise ToolError(json.dumps({"status": answer.status, "error": error}))
    return answer.body


def build_server(gateway: Gateway) -> MCPServer:
    server: MCPServer = MCPServer("billing", instructions=INSTRUCTIONS)

    @server.tool(description="The catalog: every published plan with its prices, limits and features.")
    def list_plans() -> dict[str, Any]:
        return dict(_answer(gateway, "list_plans"))

    @server.tool(description="One plan by its code, with its live version's prices, limits and features.")
    def get_plan(code: str) -> dict[str, Any]:
        return dict(_answer(gateway, "get_plan", code=code))

    @server.tool(
        description="Where a tenant stands: plan and period, usage against its limits, cost to date, credit "
        "balance, open invoices and what the period's end brings."
    )
    def billing_summary(tenant: str) -> dict[str, Any]:
        return dict(_answer(gateway, "billing_summary", tenant=tenant))

    @server.tool(description="A tenant's issued invoices, newest first.")
    def list_invoices(tenant: str) -> dict[str, Any]:
        return dict(_answer(gateway, "list_invoices", tenant=tenant))

    @server.tool(description="One invoice by its number (INV-2026-000123): parties, amounts and lines.")
    def get_invoice(number: str) -> dict[str, Any]:
        return dict(_answer(gateway, "get_invoice", number=number))

    @server.tool(
        description="The tenant's next invoice as it stands now (the period closed at its end, by the same code "
        "as the real close): lines, credit applied, total. Nothing is issued."
    )
    def upcoming_invoice(tenant: str) -> dict[str, Any]:
        return dict(_answer(gateway, "upcoming_invoice", tenant=tenant))

    @server.tool(
        description="How each line of an invoice was reached: what was measured, which price and tier, which "
        "events, and the arithmetic that adds up to the amount. Quote it to explain a charge."
    )
    def explain_invoice(number: str) -> dict[str, Any]:
        return dict(_answer(gateway, "explain_invoice", number=number))

    @server.tool(description="What a tenant may use now: each feature, allowed or not, with its limit and usage.")
    def list_entitlements(tenant: str) -> dict[str, Any]:
        return dict(_answer(gateway, "list_entitlements", tenant=tenant))

    @server.tool(description="Whether a tenant may use a feature now (for a quantity of a metered one). Reads only.")
    def check_entitlement(tenant: str, feature: str, quantity: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"tenant": tenant, "feature": feature}
        if quantity is not None:
            body["quantity"] = quantity
        return dict(_answer(gateway, "check_entitlement", body=body))

    @server.tool(
        description="What a plan would cost for the given usage (metric code to quantity, as decimal strings), "
        "with the breakdown. Nothing is billed."
    )
    def estimate_price(plan: str, usage: dict[str, str | int | float]) -> dict[str, Any]:
        return dict(_answer(gateway, "estimate_price", body={"plan": plan, "usage": usage}))

    @server.tool(
        description="Propose a financial action for a finance approver to decide; it does nothing by itself. "
        "kind: credit {amount, currency, expires_at?}, refund {invoice, amount, payout_reference? (only for an "
        "invoice paid outside Stripe)}, credit_note {invoice, amount?}, "
        "plan_change {plan, when: now|period_end}, grant {feature, kind: extra_limit|enable, amount?, "
        "expires_at}, trial_extension {days}. Checked now by the rules approval will apply: a proposal that "
        "could never be approved is refused with the reason. The same idempotency_key again returns the first."
    )
    def propose_action(kind: str, tenant: str, payload: dict[str, Any], reason: str, idempotency_key: str) -> Any:
        body = {
            "kind": kind,
            "tenant": tenant,
            "payload": payload,
            "reason": reason,
            "idempotency_key": idempotency_key,
        }
        return dict(_answer(gateway, "propose_action", body={**body, "idempotency_key": idempotency_key}))

    @server.tool(description="This key's proposals, newest first; filter by tenant and status (pending, approved…).")
    def list_proposals(tenant: str | None = None, status: str | None = None) -> dict[str, Any]:
        return dict(_answer(gateway, "list_proposals", query={"tenant": tenant, "status": status}))

    @server.tool(description="One of this key's proposals: its status, and once decided, who decided and why.")
    def get_proposal(proposal_id: int) -> dict[str, Any]:
        return dict(_answer(gateway, "get_proposal", proposal_id=str(proposal_id)))

    return server
