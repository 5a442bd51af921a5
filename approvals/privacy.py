"""What approvals hold about a tenant: for its data export (privacy/export.py) and its erasure."""

from __future__ import annotations

import re
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


def approval_reasons_pseudonymise(tenant: Tenant, personal: list[str]) -> int:
    """Erasure: the tenant's name, email or tax ID, where staff or an agent wrote them into a
    request's reason or decision, become "(erased)" (whole words, case-blind; the rest of
    the sentence stays). How many requests changed."""
    patterns = [re.compile(rf"(?<!\w){re.escape(v)}(?!\w)", re.IGNORECASE) for v in personal if v and len(v) >= 3]
    if not patterns:
        return 0
    changed = 0
    for request in ApprovalRequest.objects.filter(tenant=tenant).order_by("id"):
        fields = {}
        for name in ("reason", "decision_reason", "failure"):
            text = getattr(request, name)
            for pattern in patterns:
                text = pattern.sub("(erased)", text)
            if text != getattr(request, name):
                fields[name] = text
        if fields:
            ApprovalRequest.objects.filter(pk=request.pk).update(**fields)
            changed += 1
    return changed
