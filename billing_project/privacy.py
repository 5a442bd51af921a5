"""What the platform holds about a tenant: the API keys bound to it (their prefix, never a
secret: only its hash is kept), and the audit entries that concern it. For its data export
(privacy/export.py) and its erasure (privacy/services.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from auditlog.models import LogEntry
from django.db import connection
from django.db.models import QuerySet

from .api_keys import api_key_revoke
from .models import ApiKey

# What an erased value becomes wherever a record kept for ever held it.
ERASED = "(erased)"


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


def api_keys_revoke(external_id: str, *, reason: str) -> int:
    """Erasure: every live key bound to the tenant is revoked; how many."""
    live = ApiKey.objects.filter(tenant=external_id, revoked_at__isnull=True).order_by("id")
    return len([api_key_revoke(key=key, reason=reason) for key in live])


def scrub(value: Any, personal: list[str]) -> tuple[Any, bool]:
    """`value` (JSON) with every string holding one of the `personal` values (a name, an
    email, compared case-blind) replaced by ERASED; and whether anything was."""
    if isinstance(value, str):
        folded = value.casefold()
        # a value of one or two characters would match nearly anything: only itself
        if any(p.casefold() in folded if len(p) > 2 else p.casefold() == folded for p in personal):
            return ERASED, True
        return value, False
    if isinstance(value, list):
        pairs = [scrub(v, personal) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    if isinstance(value, dict):
        items = {k: scrub(v, personal) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(c for _, c in items.values())
    return value, False


def audit_entries_pseudonymise(entries: QuerySet[LogEntry], personal: list[str]) -> int:
    """Erasure: audit entries written before their record's personal fields were masked (the
    log never holds them since) may hold the tenant's name or email in what they recorded:
    those values become ERASED, nothing else about the entry changes. The audit log is
    append-only: its guard (migration 0008) allows exactly this, in a transaction that
    says so. The chain links the changed entry anew (`audit verify` holds). How many."""
    personal = [p for p in personal if p]
    if not personal:
        return 0
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.audit_erasure = 'on'")
    for entry in entries.order_by("id").iterator(chunk_size=500):
        fields: dict[str, Any] = {}
        # object_repr names the record (a tenant by its id, an invoice by its number): kept
        for name in ("changes", "serialized_data", "additional_data", "changes_text"):
            value, hit = scrub(getattr(entry, name), personal)
            if hit:
                fields[name] = value
        if fields:
            LogEntry.objects.filter(pk=entry.pk).update(**fields)
            changed += 1
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.audit_erasure = 'off'")
    return changed
