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


def erase_fields(value: Any, fields: frozenset[str] | set[str]) -> tuple[Any, bool]:
    """`value` (JSON) with the value of every key in `fields`, wherever it is, replaced by
    ERASED (null, empty and already masked ones left as they are); and whether any was.
    By key, never by matching text: a tenant called "Paid" leaves every status alone."""
    if isinstance(value, list):
        pairs = [erase_fields(v, fields) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    if not isinstance(value, dict):
        return value, False
    out, changed = {}, False
    for key, item in value.items():
        if key in fields and item not in (None, "", [], {}, ERASED) and not _masked(item):
            out[key], changed = _erased_like(item), True
        else:
            out[key], hit = erase_fields(item, fields)
            changed = changed or hit
    return out, changed


def _masked(item: Any) -> bool:
    # auditlog's masked values, and [old, new] pairs of them
    if isinstance(item, str):
        return item == ERASED or item.startswith("(personal data")
    return isinstance(item, list) and all(x in (None, "") or _masked(x) for x in item)


def _erased_like(item: Any) -> Any:
    """An audit entry's [old, new] pair keeps its shape (each side erased); anything else
    becomes ERASED."""
    if isinstance(item, list) and len(item) == 2:
        return [x if x in (None, "", "{}", "[]") or _masked(x) else ERASED for x in item]
    return ERASED


def audit_entries_pseudonymise(entries: QuerySet[LogEntry], fields_by_model: dict[int, frozenset[str]]) -> int:
    """Erasure: audit entries written before their record's personal fields were masked (the
    log never holds them since) may hold personal values in what they recorded: those of
    the fields named per content type (the tenant's name, email, address, tax ID; an
    invoice's buyer) become ERASED, nothing else about the entry changes. The audit log is
    append-only: its guard (migration 0008) allows exactly this, in a transaction that says
    so. The chain links the changed entry anew (`audit verify` holds). How many changed."""
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.audit_erasure = 'on'")
    for entry in entries.filter(content_type_id__in=list(fields_by_model)).order_by("id").iterator(chunk_size=500):
        value, hit = erase_fields(entry.changes, fields_by_model[entry.content_type_id])
        if hit:
            LogEntry.objects.filter(pk=entry.pk).update(changes=value, changes_text="")
            changed += 1
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.audit_erasure = 'off'")
    return changed


def admin_log_pseudonymise(name: str, pseudonym: str) -> int:
    """Django's admin log names each object it logs as str(object) did then: entries written
    while a tenant's str() held its name (before it became the external id) are renamed.
    By the name's text, as that is all the log holds; a name too short to be told apart
    from other text is left (README, Privacy and compliance)."""
    from django.contrib.admin.models import LogEntry as AdminLogEntry

    if len(name.strip()) < 4:
        return 0
    entries = AdminLogEntry.objects.filter(object_repr__contains=name)
    changed = 0
    for entry in entries.only("id", "object_repr"):
        AdminLogEntry.objects.filter(pk=entry.pk).update(object_repr=entry.object_repr.replace(name, pseudonym))
        changed += 1
    return changed
