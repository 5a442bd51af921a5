"""An AI agent's world: the approvals fixtures (a tenant, staff, a paid invoice) and keys."""

from tests.approvals.conftest import acme, ann, auditor, bob, cat, invoice, support  # noqa: F401
