"""Invoices and credit notes as PDF (issue 16, part 5): rendered once when issued, stored
with their SHA-256, served as those bytes for ever (a later change of templates, settings
or the tenant changes nothing); the one allowed change is the re-rendering without an
erased tenant's buyer once its retention has ended."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from billing_project.scopes import BILLING_READ
from invoicing.models import Invoice, IssuedDocument
from invoicing.pdf import credit_note_pdf, invoice_pdf
from invoicing.services import credit_note_issue, invoice_mark_paid, invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def invoice(db) -> Invoice:
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Łódź Ærø Café", country="PL", tax_id="PL1234567890")[0]
    tenant_upsert(external_id="globex", name="Globex", currency="USD")
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    found = Invoice.objects.filter(tenant=acme).exclude(status="draft").order_by("id").first()
    assert found is not None
    return found


def test_an_invoice_is_issued_as_a_pdf_once_and_served_as_those_bytes(api, make_key, invoice, settings):
    stored = IssuedDocument.objects.get(invoice=invoice)
    content = bytes(stored.content)
    assert content.startswith(b"%PDF-")
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert f"/Title (Invoice {invoice.number})".encode() in content
    key = make_key("service", scopes=[BILLING_READ])
    response = api.get(f"/api/v1/invoices/{invoice.number}/pdf", **key.header)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content == content
    assert response["X-Checksum-SHA256"] == stored.sha256
    assert response["ETag"] == f'"{stored.sha256}"'
    # the same invoice renders to the same bytes (no clock, no random id in it) ...
    assert invoice_pdf(invoice) == content
    # ... from what was frozen on it: the seller and the tenant changing later change nothing
    settings.INVOICE_SELLER = {**settings.INVOICE_SELLER, "name": "Renamed Seller Ltd"}
    tenant_upsert(external_id="acme", name="Acme Renamed")
    assert invoice_pdf(Invoice.objects.get(pk=invoice.pk)) == content
    assert api.get(f"/api/v1/invoices/{invoice.number}/pdf", **key.header).content == content


def test_a_credit_note_is_issued_as_a_pdf_naming_the_invoice_it_corrects(api, make_key, invoice):
    invoice_mark_paid(invoice_id=invoice.pk, actor="staff:ann")
    note = credit_note_issue(invoice_id=invoice.pk, reason="outage", actor="staff:ann")
    stored = IssuedDocument.objects.get(credit_note=note)
    assert f"/Title (Credit note {note.number})".encode() in bytes(stored.content)
    assert credit_note_pdf(note) == bytes(stored.content)
    key = make_key("service", scopes=[BILLING_READ])
    response = api.get(f"/api/v1/credit-notes/{note.number}/pdf", **key.header)
    assert response.status_code == 200
    assert response.content == bytes(stored.content)
    assert api.get("/api/v1/credit-notes/CN-2099-000001/pdf", **key.header).status_code == 404
    other = make_key("service", scopes=[BILLING_READ], tenant="globex")
    assert api.get(f"/api/v1/credit-notes/{note.number}/pdf", **other.header).status_code == 404
    assert api.get(f"/api/v1/invoices/{invoice.number}/pdf", **other.header).status_code == 404


def test_an_invoice_issued_before_documents_were_kept_is_rendered_at_its_first_fetch(api, make_key, invoice):
    with connection.cursor() as cursor:  # as if issued before this feature: no stored document
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM invoicing_issueddocument WHERE invoice_id = %s", [invoice.pk])
        cursor.execute("SET LOCAL session_replication_role = origin")
    key = make_key("service", scopes=[BILLING_READ])
    first = api.get(f"/api/v1/invoices/{invoice.number}/pdf", **key.header).content
    assert first.startswith(b"%PDF-")
    assert IssuedDocument.objects.filter(invoice=invoice).count() == 1
    assert api.get(f"/api/v1/invoices/{invoice.number}/pdf", **key.header).content == first


def test_an_issued_document_cannot_be_changed_or_deleted(invoice):
    stored = IssuedDocument.objects.get(invoice=invoice)
    for sql in (
        "UPDATE invoicing_issueddocument SET content = '\\x00'::bytea WHERE id = %s",
        "UPDATE invoicing_issueddocument SET sha256 = 'x' WHERE id = %s",
        "DELETE FROM invoicing_issueddocument WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [stored.pk])
    with transaction.atomic(), connection.cursor() as cursor:  # nor moved to another record in an erasure
        cursor.execute("SET LOCAL billing.buyer_erasure = 'on'")
        with pytest.raises(DatabaseError), transaction.atomic():
            cursor.execute("UPDATE invoicing_issueddocument SET invoice_id = NULL WHERE id = %s", [stored.pk])
