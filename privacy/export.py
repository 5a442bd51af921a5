"""A tenant's data export (GDPR access): one JSON document, streamed section by section.

Each app says what it holds about the tenant (its own `privacy.py`); this module puts the
sections in one document and streams it, rows read in chunks, so a tenant with years of
invoices and audit entries never sits in memory whole. The schema is in the README
("Privacy and compliance"); `schema` names its version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, Q, QuerySet
from django.http import StreamingHttpResponse

from approvals import privacy as approvals_privacy
from approvals.models import ApprovalRequest
from billing_project import privacy as platform_privacy
from billing_project.models import ApiKey
from entitlements import privacy as entitlements_privacy
from entitlements.models import Grant
from invoicing import privacy as invoicing_privacy
from invoicing.models import CreditEntry, CreditNote, Invoice, Refund
from subscriptions import privacy as subscriptions_privacy
from subscriptions.models import Subscription, Tenant
from usage import privacy as usage_privacy

SCHEMA = "billing.privacy-export/1"


def audit_entries_of(tenant: Tenant) -> QuerySet[LogEntry]:
    """Audit entries that concern the tenant: of its own row and of every row that is its."""
    owned: list[tuple[type[Model], QuerySet[Any]]] = [
        (Tenant, Tenant.objects.filter(pk=tenant.pk)),
        (Subscription, Subscription.objects.filter(tenant=tenant)),
        (Invoice, Invoice.objects.filter(tenant=tenant)),
        (CreditEntry, CreditEntry.objects.filter(tenant=tenant)),
        (CreditNote, CreditNote.objects.filter(tenant=tenant)),
        (Refund, Refund.objects.filter(tenant=tenant)),
        (Grant, Grant.objects.filter(tenant=tenant)),
        (ApprovalRequest, ApprovalRequest.objects.filter(tenant=tenant)),
        (ApiKey, ApiKey.objects.filter(tenant=tenant.external_id)),
    ]
    concerns = Q()
    for model, rows in owned:
        concerns |= Q(content_type=ContentType.objects.get_for_model(model), object_id__in=rows.values("pk"))
    entries: QuerySet[LogEntry] = LogEntry.objects.filter(concerns)
    return entries


def _audit(tenant: Tenant) -> Iterator[dict[str, Any]]:
    entries = audit_entries_of(tenant).select_related("content_type", "actor").order_by("timestamp", "id")
    for entry in entries.iterator(chunk_size=1000):
        yield {
            "at": entry.timestamp,
            "record": f"{entry.content_type.app_label}.{entry.content_type.model}",
            "object": entry.object_repr,
            "action": entry.get_action_display(),
            "actor": entry.actor.get_username() if entry.actor else None,
            "on_behalf_of": (entry.additional_data or {}).get("actor"),
            "changes": entry.changes,
        }


def _invoices(tenant: Tenant) -> Iterator[dict[str, Any]]:
    """Invoices as the API gives them; an erased tenant's with the buyer withheld: the
    invoice keeps it by law until retention ends (privacy/retention.py), the export does
    not hand it out again."""
    for document in invoicing_privacy.invoices_export(tenant):
        if tenant.erased_at is not None and not (document.get("buyer") or {}).get("erased"):
            document["buyer"] = {"withheld": "kept on the invoice until its retention period ends"}
        yield document


SECTIONS: list[tuple[str, Callable[[Tenant], Iterable[dict[str, Any]]]]] = [
    ("subscriptions", subscriptions_privacy.subscriptions_export),
    ("invoices", _invoices),
    ("credit_notes", invoicing_privacy.credit_notes_export),
    ("payments", invoicing_privacy.payments_export),
    ("refunds", invoicing_privacy.refunds_export),
    ("credit_ledger", invoicing_privacy.credit_ledger_export),
    ("usage", usage_privacy.usage_summary),
    ("grants", entitlements_privacy.grants_export),
    ("approval_requests", approvals_privacy.approval_requests_export),
    ("api_keys", lambda tenant: platform_privacy.api_keys_export(tenant.external_id)),
    ("audit_entries", _audit),
]


def export_recorded(tenant: Tenant, *, channel: str) -> LogEntry:
    """Whoever takes a tenant's data leaves an `access` entry in its audit trail (the
    actor is the request's: the staff member, the key)."""
    entry: LogEntry = LogEntry.objects.log_create(
        tenant, force_log=True, action=LogEntry.Action.ACCESS, changes={"privacy export": [None, channel]}
    )
    return entry


def export_download(tenant: Tenant, *, channel: str, now: datetime) -> StreamingHttpResponse:
    """The export as a download, recorded first (the API's and the console's answer alike)."""
    export_recorded(tenant, channel=channel)
    response = StreamingHttpResponse(tenant_export(tenant, now=now), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="privacy-export-{tenant.pk}.json"'
    response["Cache-Control"] = "no-store"
    return response


def tenant_export(tenant: Tenant, *, now: datetime) -> Iterator[str]:
    """The document as text chunks: the header, then each section one row at a time."""
    encode = DjangoJSONEncoder(ensure_ascii=False).encode
    head = {"schema": SCHEMA, "generated_at": now, "tenant": subscriptions_privacy.tenant_personal_data(tenant)}
    yield encode(head)[:-1]  # the object stays open for the sections
    for name, rows in SECTIONS:
        yield f", {json.dumps(name)}: ["
        for i, row in enumerate(rows(tenant)):
            yield ("," if i else "") + encode(row)
        yield "]"
    yield "}\n"
