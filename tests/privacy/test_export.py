"""A tenant's data export (GDPR access): GET /api/v1/tenants/{tenant}/privacy/export, scope
privacy:admin, service keys only. One JSON document holding everything we hold about the
tenant, streamed; what it says adds up to the books."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from billing_project.scopes import BILLING_READ, PRIVACY_ADMIN
from invoicing.models import CreditEntry, Invoice
from privacy.export import SCHEMA, SECTIONS, audit_entries_of
from subscriptions.models import Tenant
from tests.agents.demo import load_demo
from usage.models import UsageEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/{}/privacy/export"


@pytest.fixture
def demo(tmp_path: Any, clock: Any) -> Tenant:
    load_demo(tmp_path)
    return Tenant.objects.get(external_id="acme-demo")


def export(client: Any, key: Any, tenant: str = "acme-demo") -> dict[str, Any]:
    response = client.get(URL.format(tenant), **key.header)
    assert response.status_code == 200, response.content
    assert response.streaming  # never built whole in memory
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return dict(json.loads(b"".join(response.streaming_content)))


def test_the_export_holds_what_we_hold_and_adds_up_to_the_books(api, make_key, demo):
    doc = export(api, make_key("service", scopes=[PRIVACY_ADMIN]))
    assert doc["schema"] == SCHEMA
    assert list(doc) == ["schema", "generated_at", "tenant", *[name for name, _ in SECTIONS]]
    assert doc["tenant"]["external_id"] == "acme-demo"
    assert doc["tenant"]["name"] == demo.name
    assert doc["tenant"]["billing_email"] == demo.billing_email
    finalized = Invoice.objects.filter(tenant=demo).exclude(status="draft")
    assert sorted(i["number"] for i in doc["invoices"]) == sorted(
        str(n) for n in finalized.values_list("number", flat=True)
    )
    assert {i["buyer"]["name"] for i in doc["invoices"]} == {demo.name}  # as printed
    assert [p["invoice"] for p in doc["payments"]] == list(
        finalized.filter(paid_at__isnull=False).order_by("paid_at").values_list("number", flat=True)
    )
    assert len(doc["credit_ledger"]) == CreditEntry.objects.filter(tenant=demo).count()
    # usage: per metric and period, summing to the raw events exactly
    raw = UsageEvent.objects.filter(tenant=demo)
    assert sum(u["events"] for u in doc["usage"]) == raw.count()
    assert sum(Decimal(u["quantity"]) for u in doc["usage"]) == raw.aggregate(q=Sum("quantity"))["q"]
    assert all(u["period"] is None or set(u["period"]) == {"start", "end"} for u in doc["usage"])
    sub = doc["subscriptions"][0]
    assert sub["events"][0]["action"]
    assert sub["periods"]
    assert len(doc["audit_entries"]) == audit_entries_of(demo).count() > 0
    assert {"subscriptions.tenant", "invoicing.invoice"} <= {e["record"] for e in doc["audit_entries"]}
    # the audit log, kept for ever, holds no personal data: the buyer as printed is masked there
    audit_text = json.dumps(doc["audit_entries"])
    assert demo.billing_email not in audit_text
    assert demo.name not in audit_text


def test_only_a_service_key_with_the_privacy_scope_exports(api, make_key, demo):
    for key in (make_key("service", scopes=[BILLING_READ]), make_key("agent")):
        assert api.get(URL.format("acme-demo"), **key.header).status_code == 403
    assert api.get(URL.format("acme-demo")).status_code == 401
    bound_elsewhere = make_key("service", scopes=[PRIVACY_ADMIN], tenant="demo")
    assert api.get(URL.format("acme-demo"), **bound_elsewhere.header).status_code == 404
    assert api.get(URL.format("nobody"), **make_key("service", scopes=[PRIVACY_ADMIN]).header).status_code == 404


def test_another_tenants_data_is_not_in_the_export(api, make_key, demo):
    other = Tenant.objects.get(external_id="demo")
    text = json.dumps(export(api, make_key("service", scopes=[PRIVACY_ADMIN])))
    assert other.name not in text or other.name in demo.name
    assert '"demo"' not in text.replace('"acme-demo"', "")


def test_each_download_is_in_the_tenants_audit_trail(api, make_key, demo):
    from auditlog.models import LogEntry

    key = make_key("service", scopes=[PRIVACY_ADMIN])
    export(api, key)
    entry = audit_entries_of(demo).filter(action=LogEntry.Action.ACCESS).get()
    assert entry.changes == {"privacy export": [None, f"api service:{key.key.prefix}"]}
    assert entry.object_repr == "acme-demo"  # named by its id, never by its name


@pytest.mark.parametrize(
    ("group", "may"), [("finance", True), ("finance-approver", True), ("auditor", True), ("support", False)]
)
def test_the_console_downloads_the_same_document_for_those_who_may(group, may, demo):
    from django.urls import reverse

    from tests.console.test_dashboard import staff_client

    client = staff_client(group)
    page = client.get(reverse("console-tenant:page", args=[demo.pk])).content.decode()
    url = reverse("console-tenant:privacy-export", args=[demo.pk])
    assert (url in page) is may
    response = client.get(url)
    if not may:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="privacy-export-{demo.pk}.json"'
    doc = json.loads(b"".join(response.streaming_content))  # type: ignore[attr-defined]
    assert doc["schema"] == SCHEMA
    assert doc["tenant"]["name"] == demo.name
    assert client.get(reverse("console-tenant:privacy-export", args=[987654])).status_code == 404
