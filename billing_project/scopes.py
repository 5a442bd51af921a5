"""API key scopes: what a key may do. The list is the contract of API.md.

An agent (AI) key may hold only AGENT_SCOPES: reads, plus `proposals:write`,
which creates a proposal that a human must approve and changes nothing else.
The model validates this and a database check constraint enforces it.
"""

from __future__ import annotations

from typing import Final

USAGE_WRITE: Final = "usage:write"
ENTITLEMENTS_READ: Final = "entitlements:read"
BILLING_READ: Final = "billing:read"
TENANTS_WRITE: Final = "tenants:write"
SUBSCRIPTIONS_WRITE: Final = "subscriptions:write"
PORTAL: Final = "portal"
PROPOSALS_WRITE: Final = "proposals:write"
PRIVACY_ADMIN: Final = "privacy:admin"

ALL_SCOPES: Final[dict[str, str]] = {
    USAGE_WRITE: "report usage events for the metrics the key lists",
    ENTITLEMENTS_READ: "check and list entitlements",
    BILLING_READ: "read a tenant's billing state and invoices",
    TENANTS_WRITE: "create and update tenants",
    SUBSCRIPTIONS_WRITE: "create, change and cancel subscriptions",
    PORTAL: "start checkout and change plans on a tenant user's behalf",
    PROPOSALS_WRITE: "propose a credit, refund or plan change for staff to approve",
    PRIVACY_ADMIN: "export or erase a tenant's data (GDPR access and erasure); service keys only",
}

AGENT_SCOPES: Final[frozenset[str]] = frozenset({ENTITLEMENTS_READ, BILLING_READ, PROPOSALS_WRITE})
WRITE_SCOPES: Final[frozenset[str]] = frozenset(ALL_SCOPES) - AGENT_SCOPES
