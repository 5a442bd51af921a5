"""Personal data encrypted at rest (issue 16, part 6): a tenant's name, email, address and tax
ID, an invoice's buyer as printed and the issued PDFs are Fernet tokens in the database under
PERSONAL_DATA_KEY; older keys still read while `personal_data rekey` moves the values to the
new one (the guards of frozen invoices and documents let exactly that through); a value no
key reads is an error naming the field, never ciphertext shown as a name; lookups on
encrypted fields are refused rather than matching nothing."""

from __future__ import annotations

import hashlib
import importlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from billing_project.chain import chain_seal_all, chain_verify
from billing_project.checks import check_personal_data_keys
from billing_project.personal_data import PersonalDataUnreadable
from billing_project.scopes import BILLING_READ
from invoicing.models import Invoice, IssuedDocument
from invoicing.services import invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Tenant
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]

NAME, EMAIL, ADDRESS, TAX_ID = "Łódź Ærø Café", "ap@lodz.example", "ul. Piotrkowska 1\n90-001 Łódź", "PL1234567890"


@pytest.fixture
def invoice(db: None) -> Invoice:
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(
        external_id="acme", name=NAME, billing_email=EMAIL, country="PL", address=ADDRESS, tax_id=TAX_ID
    )[0]
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    found = Invoice.objects.filter(tenant=acme).exclude(status="draft").order_by("id").first()
    assert found is not None
    return found


def raw(sql: str, params: list[Any]) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def fernet_reads(token: str | bytes, key: str) -> bytes:
    return Fernet(key).decrypt(token if isinstance(token, bytes) else token.encode())


def test_personal_fields_are_tokens_in_the_database_and_plain_through_the_orm_and_api(
    api: Any, make_key: Any, invoice: Invoice, settings: Any
) -> None:
    key = settings.PERSONAL_DATA_KEY
    stored = raw(
        "SELECT name, billing_email, address, tax_id, external_id, country FROM subscriptions_tenant WHERE id = %s",
        [invoice.tenant_id],
    )
    for token, plain in zip(stored[:4], (NAME, EMAIL, ADDRESS, TAX_ID), strict=True):
        assert token.startswith("gAAAAA")
        assert plain not in token
        assert fernet_reads(token, key).decode() == plain
    assert stored[4:] == ("acme", "PL")  # the platform's id and the country stay plain
    tenant = Tenant.objects.get(external_id="acme")
    assert (tenant.name, tenant.billing_email, tenant.address, tenant.tax_id) == (NAME, EMAIL, ADDRESS, TAX_ID)
    # an empty value is a token too: the columns stay NOT NULL, '' reads back as ''
    tenant_upsert(external_id="bare", name="Bare Ltd")
    (email,) = raw("SELECT billing_email FROM subscriptions_tenant WHERE external_id = 'bare'", [])
    assert email.startswith("gAAAAA")
    assert Tenant.objects.get(external_id="bare").billing_email == ""

    (buyer,) = raw("SELECT buyer::text FROM invoicing_invoice WHERE id = %s", [invoice.pk])
    buyer = json.loads(buyer)
    assert {k: fernet_reads(buyer[k], key).decode() for k in ("name", "address", "tax_id", "email")} == {
        "name": NAME,
        "address": ADDRESS,
        "tax_id": TAX_ID,
        "email": EMAIL,
    }
    assert (buyer["reference"], buyer["country"]) == ("acme", "PL")
    assert Invoice.objects.get(pk=invoice.pk).buyer["name"] == NAME

    content, sha = raw("SELECT content, sha256 FROM invoicing_issueddocument WHERE invoice_id = %s", [invoice.pk])
    assert bytes(content).startswith(b"gAAAAA")
    assert b"%PDF" not in bytes(content)
    pdf = fernet_reads(bytes(content), key)
    assert pdf.startswith(b"%PDF-")
    assert hashlib.sha256(pdf).hexdigest() == sha
    reader = make_key("service", scopes=[BILLING_READ])
    response = api.get(f"/api/v1/invoices/{invoice.number}/pdf", **reader.header)
    assert response.status_code == 200
    assert response.content == pdf
    document = api.get(f"/api/v1/invoices/{invoice.number}", **reader.header).json()
    assert document["buyer"]["name"] == NAME
    assert document["buyer"]["tax_id"] == TAX_ID


def test_lookups_on_encrypted_fields_are_refused_not_silently_empty(invoice: Invoice) -> None:
    for lookup in ({"name": NAME}, {"name__icontains": "Café"}, {"billing_email": EMAIL}, {"tax_id__in": [TAX_ID]}):
        with pytest.raises(FieldError, match="subscriptions.Tenant.* is encrypted at rest"):
            list(Tenant.objects.filter(**lookup))
    with pytest.raises(FieldError, match="invoicing.Invoice.buyer is encrypted at rest"):
        list(Invoice.objects.filter(buyer__name=NAME))
    # what stays plain can still be asked: keys, the reference and country
    assert Invoice.objects.filter(buyer__has_key="name", buyer__country="PL").count() == 2  # both months
    assert Tenant.objects.filter(external_id="acme").values_list("name", flat=True).get() == NAME


def test_a_value_no_key_reads_is_an_error_naming_the_field(invoice: Invoice, settings: Any) -> None:
    settings.PERSONAL_DATA_KEY = Fernet.generate_key().decode()  # the old key lost from the environment
    with pytest.raises(PersonalDataUnreadable, match="subscriptions.Tenant.name"):
        Tenant.objects.get(external_id="acme")
    with pytest.raises(PersonalDataUnreadable, match="invoicing.Invoice.buyer"):
        Invoice.objects.get(pk=invoice.pk)
    with pytest.raises(CommandError, match="does not decrypt"):
        call_command("personal_data", "check")


def test_a_key_is_rotated_by_a_fallback_and_rekey_frozen_invoices_and_documents_included(
    api: Any, make_key: Any, invoice: Invoice, settings: Any
) -> None:
    old, new = settings.PERSONAL_DATA_KEY, Fernet.generate_key().decode()
    reader = make_key("service", scopes=[BILLING_READ])
    pdf = api.get(f"/api/v1/invoices/{invoice.number}/pdf", **reader.header).content
    call_command("personal_data", "check")  # all under the current key

    settings.PERSONAL_DATA_KEY, settings.PERSONAL_DATA_KEY_FALLBACKS = new, [old]
    assert Tenant.objects.get(external_id="acme").name == NAME  # read through the fallback
    tenant_upsert(external_id="newco", name="New Co")  # written under the new key
    with pytest.raises(CommandError, match=r"invoicing_invoice.buyer: [1-9].*subscriptions_tenant.name: 1\b") as stale:
        call_command("personal_data", "check")
    assert "invoicing_issueddocument.content: " in str(stale.value)

    call_command("personal_data", "rekey", "--batch", "1")
    call_command("personal_data", "check")
    call_command("personal_data", "rekey")  # again: nothing left to do, nothing changes
    settings.PERSONAL_DATA_KEY_FALLBACKS = []  # the old key retired
    (name,) = raw("SELECT name FROM subscriptions_tenant WHERE external_id = 'acme'", [])
    assert fernet_reads(name, new).decode() == NAME
    frozen = Invoice.objects.get(pk=invoice.pk)
    assert (frozen.buyer["name"], frozen.total, frozen.number) == (NAME, invoice.total, invoice.number)
    assert api.get(f"/api/v1/invoices/{invoice.number}/pdf", **reader.header).content == pdf
    chain_seal_all()
    assert chain_verify().ok  # the rewritten invoice rows were linked anew, not broken


def update(sql: str, params: list[Any], *, rekey: bool) -> None:
    """One UPDATE below the ORM, in a transaction that says it rekeys (or not)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if rekey:
            cursor.execute("SET LOCAL billing.personal_rekey = 'on'")
        cursor.execute(sql, params)


@pytest.mark.parametrize(
    "change",
    [
        "jsonb_set(buyer, '{name}', to_jsonb('Someone Else'::text))",  # a plain value, not a token
        "jsonb_set(buyer, '{reference}', to_jsonb('gAAAAAother'::text))",  # a plain key changed
        "buyer - 'email'",  # a key dropped
        "buyer || jsonb_build_object('phone', 'gAAAAAx')",  # a key added
    ],
)
def test_the_invoice_guard_lets_rekey_write_tokens_for_the_same_keys_only(invoice: Invoice, change: str) -> None:
    sql = f"UPDATE invoicing_invoice SET buyer = {change} WHERE id = %s"  # noqa: S608
    with pytest.raises(DatabaseError, match="its buyer changes only"):
        update(sql, [invoice.pk], rekey=True)


def test_the_guards_refuse_tokens_outside_a_rekey_and_documents_other_than_the_same_pdf(invoice: Invoice) -> None:
    token = b"gAAAAA" + Fernet.generate_key()  # token-looking; the database cannot read it
    with pytest.raises(DatabaseError, match="its buyer changes only"):  # a token, but no rekey said so
        update(
            "UPDATE invoicing_invoice SET buyer = jsonb_set(buyer, '{name}', to_jsonb('gAAAAAxyz'::text))"
            " WHERE id = %s",
            [invoice.pk],
            rekey=False,
        )
    document = "UPDATE invoicing_issueddocument SET {} WHERE invoice_id = %s"
    attempts: list[tuple[str, list[Any], bool]] = [
        ("content = %s", [token], False),  # no rekey said so
        ("content = %s, sha256 = %s", [token, "0" * 64], True),  # another checksum
        ("content = %s", [b"%PDF-1.4 forged"], True),  # not a token
    ]
    for change, params, rekey in attempts:
        with pytest.raises(DatabaseError, match="append-only"):
            update(document.format(change), [*params, invoice.pk], rekey=rekey)
    assert IssuedDocument.objects.get(invoice=invoice).content.startswith(b"%PDF-")


def test_a_bad_key_is_refused_at_start_up_without_printing_it(settings: Any) -> None:
    settings.PERSONAL_DATA_KEY = "not-a-fernet-key-but-a-secret"
    settings.PERSONAL_DATA_KEY_FALLBACKS = [Fernet.generate_key().decode(), "short"]
    errors = check_personal_data_keys()
    assert [(e.id, e.msg.split(" must")[0]) for e in errors] == [
        ("billing.E012", "PERSONAL_DATA_KEY"),
        ("billing.E012", "PERSONAL_DATA_KEY_FALLBACKS[1]"),
    ]
    assert not any("not-a-fernet" in e.msg or "short" in e.msg for e in errors)


def test_the_migrations_encrypt_what_was_stored_plain_and_their_reverse_decrypts(invoice: Invoice) -> None:
    tenants = importlib.import_module("subscriptions.migrations.0011_personal_data_encrypted")
    invoices = importlib.import_module("invoicing.migrations.0016_personal_data_encrypted")
    pdf = bytes(IssuedDocument.objects.get(invoice=invoice).content)
    for migration in (tenants, invoices):
        migration.decrypt(None, None)  # back to before: plain values (the guards check the PDF's checksum)
    assert raw("SELECT name FROM subscriptions_tenant WHERE id = %s", [invoice.tenant_id]) == (NAME,)
    (buyer,) = raw("SELECT buyer::text FROM invoicing_invoice WHERE id = %s", [invoice.pk])
    assert json.loads(buyer)["tax_id"] == TAX_ID
    assert bytes(raw("SELECT content FROM invoicing_issueddocument WHERE invoice_id = %s", [invoice.pk])[0]) == pdf
    for migration in (tenants, invoices):
        migration.encrypt(None, None)  # what the migrations do to a database with data
    (name,) = raw("SELECT name FROM subscriptions_tenant WHERE id = %s", [invoice.tenant_id])
    assert name.startswith("gAAAAA")
    assert Tenant.objects.get(pk=invoice.tenant_id).name == NAME
    assert Invoice.objects.get(pk=invoice.pk).buyer["tax_id"] == TAX_ID
    assert bytes(IssuedDocument.objects.get(invoice=invoice).content) == pdf
    chain_seal_all()
    assert chain_verify().ok
