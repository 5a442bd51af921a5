"""What the platform holds about a tenant, for its data export (privacy/export.py): the
API keys bound to it (their prefix, never a secret: only its hash is kept)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .models import ApiKey


def api_keys_export(external_id: str) -> Iterator[dict[str, Any]]:
    for key in ApiKey.objects.filter(tenant=external_id).order_by("id"):
        yield {
            "name": key.name,
            "kind": key.kind,
            "prefix": key.prefix,
            "scopes": key.scopes,
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
        }
