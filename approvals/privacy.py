"""What approvals hold about a tenant, for its data export (privacy/export.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from subscriptions.models import Tenant

from .models import ApprovalRequest


def approval_requests_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    requests = ApprovalRequest.objects.filter(tenant=tenant).order_by("id")
    for request in requests.iterator(chunk_size=500):
        yield {
            "id": request.pk,
            "kind": request.kind,
            "status": request.status,
            "description": request.description,
            "reason": request.reason,
            "created_at": request.created_at,
            "decided_at": request.decided_at,
            "decision_reason": request.decision_reason,
        }
