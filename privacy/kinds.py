"""The erasure as a kind of approval request (four eyes in the console): registered with
approvals from this app's ready(), so approvals runs it without importing privacy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from approvals.kinds import Actor, ApprovalKind, Outcome, Plan, _fields
from billing_project.errors import Conflict
from subscriptions.models import Tenant

from .services import check_erasure_request, tenant_erase


class ErasureKind(ApprovalKind):
    """payload {}: the tenant is the request's. Asked for by staff (never an agent),
    approved by a finance-approver who did not ask; its dry run is the erasure itself,
    rolled back, so a tenant that owes money is refused at once (tenant_has_open_balance)."""

    code = "erasure"
    proposable = False

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        _fields(payload, set())
        return {}

    def check_new(self, tenant: Tenant, reason: str) -> None:
        check_erasure_request(tenant, reason)

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        approver, approving, requester = actor.label.partition(" approving ")  # "staff:bob approving staff:ann"
        erasure, made = tenant_erase(
            tenant=tenant,
            reason=actor.reason,
            requested_by=requester if approving else actor.label,
            approved_by=approver if approving else "",
            approval_request_id=actor.request_id,
        )
        if not made:  # erased meanwhile by another request (the API): not this approval's doing
            raise Conflict(f"{tenant.external_id} is already erased.", code="tenant_erased")
        done = erasure.done
        until = f"{erasure.retention_until:%Y-%m-%d}" if erasure.retention_until else "—"
        text = (
            f"Erase {tenant.external_id}'s personal data for good: end {done['subscriptions_ended']} live "
            f"subscription(s) ({done['final_invoices']} final invoice(s), nothing owed), revoke "
            f"{done['api_keys_revoked']} key(s), pseudonymise it here and at Stripe. Its "
            f"{done['invoices_retained']} invoice(s) keep the buyer until {until} (retention), then lose it."
        )
        return Outcome(Plan(text, details=dict(done)), {"erasure": erasure.pk})
