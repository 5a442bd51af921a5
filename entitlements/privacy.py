"""What entitlements hold about a tenant, for its data export (privacy/export.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from subscriptions.models import Tenant

from .models import Grant


def grants_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    for grant in Grant.objects.filter(tenant=tenant).select_related("feature").order_by("id").iterator(chunk_size=500):
        yield {
            "feature": grant.feature.code,
            "kind": grant.kind,
            "amount": None if grant.amount is None else str(grant.amount),
            "reason": grant.reason,
            "expires_at": grant.expires_at,
            "created_at": grant.created_at,
            "revoked_at": grant.revoked_at,
        }
