"""The invoice API and documents: list, one invoice as JSON and as HTML (a receipt once
paid), the billing view's credit balance and last invoices, and the tenant binding of
`/invoices/{number}`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing_project.money import Money
from billing_project.scopes import BILLING_READ
from invoicing.ledger import credit_grant
from invoicing.services import invoice_mark_paid, invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def invoiced(db):
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    tenant_upsert(external_id="globex", name="Globex", currency="USD")
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    return acme


def test_a_tenant_lists_its_invoices_and_reads_one(api, make_key, invoiced):
    key = make_key("service", scopes=[BILLING_READ])
    listed = api.get("/api/v1/tenants/acme/invoices", **key.header).json()["invoices"]
    assert [i["number"] for i in listed] == ["INV-2026-000002", "INV-2026-000001"]
    body = api.get("/api/v1/invoices/INV-2026-000001", **key.header).json()
    assert (body["tenant"], body["status"], body["total"], body["currency"]) == ("acme", "open", "49.00", "USD")
    assert body["lines"][0]["kind"] == "base_fee"
    assert body["tax_status"] == "not_calculated"
    assert body["seller"]["name"]
    usage = next(
        x
        for x in api.get("/api/v1/invoices/INV-2026-000002", **key.header).json()["lines"]
        if x["metric"] == "ai_tokens"
    )
    assert usage["explanation"]["aggregation"] == "sum"
    assert "list_url" in usage["explanation"]["events"]


def test_the_document_is_html_and_a_receipt_once_paid(api, make_key, invoiced):
    key = make_key("service", scopes=[BILLING_READ])
    page = api.get("/api/v1/invoices/INV-2026-000001?format=html", **key.header)
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert "Invoice INV-2026-000001" in html
    assert "Pro base fee" in html
    assert "49.00" in html
    assert "No tax has been calculated" in html
    from invoicing.models import Invoice

    invoice_mark_paid(invoice_id=Invoice.objects.get(number="INV-2026-000001").pk)
    html = api.get("/api/v1/invoices/INV-2026-000001", HTTP_ACCEPT="text/html", **key.header).content.decode()
    assert "Receipt INV-2026-000001" in html


def test_an_unknown_number_is_404(api, make_key, invoiced):
    key = make_key("service", scopes=[BILLING_READ])
    response = api.get("/api/v1/invoices/INV-2026-999999", **key.header)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_bound_key_cannot_read_another_tenants_invoice(api, make_key, invoiced):
    other = make_key("service", scopes=[BILLING_READ], tenant="globex")
    response = api.get("/api/v1/invoices/INV-2026-000001", **other.header)
    assert response.status_code == 404  # exactly as if it did not exist
    own = make_key("service", scopes=[BILLING_READ], tenant="acme")
    assert api.get("/api/v1/invoices/INV-2026-000001", **own.header).status_code == 200


def test_the_billing_view_shows_credit_and_last_invoices(api, make_key, invoiced):
    credit_grant(tenant=invoiced, amount=Money(Decimal("7.50"), "USD"), reason="goodwill", actor="staff:ann")
    key = make_key("service", scopes=[BILLING_READ])
    body = api.get("/api/v1/tenants/acme/billing", **key.header).json()
    assert body["credit_balance"] == "7.50"
    assert [i["number"] for i in body["invoices"]] == ["INV-2026-000002", "INV-2026-000001"]


def test_staff_read_the_document_in_the_admin(admin_client, invoiced):
    from invoicing.models import Invoice

    invoice = Invoice.objects.get(number="INV-2026-000001")
    page = admin_client.get(f"/admin/invoicing/invoice/{invoice.pk}/document/")
    assert page.status_code == 200
    assert "Invoice INV-2026-000001" in page.content.decode()
    change = admin_client.get(f"/admin/invoicing/invoice/{invoice.pk}/change/").content.decode()
    assert f"/admin/invoicing/invoice/{invoice.pk}/document/" in change  # the document, from the invoice
    assert "49.00 USD" in change  # amounts at the currency's minor unit, not the column's 4 places
    usage = Invoice.objects.get(number="INV-2026-000002")
    change = admin_client.get(f"/admin/invoicing/invoice/{usage.pk}/change/").content.decode()
    assert "the 0 events behind it" in change  # each usage line links to the events behind it
