"""A tenant's billing address and tax ID (issue 16, part 5): the tax ID checked for its
country's format (format only: VIES is not reachable), normalised, personal data (masked in
the audit log, erased with the tenant), printed on invoices with the seller's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from auditlog.models import LogEntry

from billing_project.errors import InvalidRequest
from billing_project.scopes import BILLING_READ
from invoicing.services import invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Tenant
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from subscriptions.taxids import tax_id_clean
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.mark.parametrize(
    ("country", "given", "stored"),
    [
        ("DE", "de 123 456 789", "DE123456789"),
        ("FR", "FR 40 303 265 045", "FR40303265045"),
        ("GR", "EL123456789", "EL123456789"),
        ("AT", "ATU12345678", "ATU12345678"),
        ("NL", "NL123456789B01", "NL123456789B01"),
        ("GB", "GB 123 4567 89", "GB123456789"),
        ("GB", "XI123456789", "XI123456789"),
        ("CH", "CHE-123.456.789 MWST", "CHE123456789MWST"),
        ("US", "123456789", "12-3456789"),
        ("US", "12-3456789", "12-3456789"),
        ("JP", "T1234567890123", "T1234567890123"),
        ("", "ABC-1234", "ABC1234"),
        ("DE", "", ""),
    ],
)
def test_a_tax_id_in_its_countrys_format_is_stored_normalised(country, given, stored):
    assert tax_id_clean(given, country) == stored


@pytest.mark.parametrize(
    ("country", "given"),
    [
        ("DE", "DE12345678"),  # a digit short
        ("DE", "ATU12345678"),  # another country's number
        ("FR", "FRIO303265045"),  # I and O are not used
        ("GB", "GB12345"),
        ("US", "12345"),
        ("", "AB"),
        ("DE", "DE123456789\x00"),
        ("IT", "IT１２３４５６７８９０１"),  # full-width digits
    ],
)
def test_a_tax_id_out_of_format_is_refused_with_what_is_expected(country, given):
    with pytest.raises(InvalidRequest) as refused:
        tax_id_clean(given, country)
    assert refused.value.code == "invalid_tax_id"
    assert "expected" in refused.value.message


def test_the_api_stores_the_address_and_tax_id_and_refuses_a_bad_one_writing_nothing(api, make_key):
    key = make_key("service")
    body = {"name": "Beta GmbH", "country": "de", "address": "Hauptstr. 1\n10115 Berlin", "tax_id": "DE 123456789"}
    response = api.put("/api/v1/tenants/beta", body, format="json", **key.header)
    assert response.status_code == 201, response.content
    assert (response.json()["address"], response.json()["tax_id"]) == ("Hauptstr. 1\n10115 Berlin", "DE123456789")
    bad = api.put("/api/v1/tenants/gamma", {**body, "tax_id": "DE1"}, format="json", **key.header)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_tax_id"
    assert not Tenant.objects.filter(external_id="gamma").exists()
    # a new country the stored tax ID does not fit is refused, the stored details stay
    moved = api.put("/api/v1/tenants/beta", {"name": "Beta GmbH", "country": "FR"}, format="json", **key.header)
    assert moved.status_code == 400
    assert moved.json()["error"]["code"] == "invalid_tax_id"
    assert Tenant.objects.get(external_id="beta").country == "DE"
    long = api.put("/api/v1/tenants/beta", {"name": "B", "address": "x\n" * 7}, format="json", **key.header)
    assert long.status_code == 400


def test_the_address_and_tax_id_are_masked_in_the_audit_log():
    tenant, _ = tenant_upsert(
        external_id="beta", name="Beta GmbH", country="DE", address="Hauptstr. 1", tax_id="DE123456789"
    )
    entry = LogEntry.objects.get_for_object(tenant).latest("id")
    assert "Hauptstr" not in str(entry.changes)
    assert "DE123456789" not in str(entry.changes)


def test_an_invoice_prints_both_parties_addresses_and_tax_ids(api, make_key, settings):
    settings.INVOICE_SELLER = {
        "name": "Platform GmbH",
        "address": "Seller Weg 2, 80331 München",
        "country": "DE",
        "tax_id": "DE987654321",
        "email": "billing@platform.example",
    }
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(
        external_id="acme",
        name="Acme SAS",
        country="FR",
        address="1 rue de la Paix\n75002 Paris",
        tax_id="FR40303265045",
    )[0]
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    invoice = acme.invoices.exclude(status="draft").order_by("id").first()
    assert invoice is not None
    assert invoice.buyer["tax_id"] == "FR40303265045"
    html = api.get(
        f"/api/v1/invoices/{invoice.number}",
        HTTP_ACCEPT="text/html",
        **make_key("service", scopes=[BILLING_READ]).header,
    ).content.decode()
    for printed in (
        "Acme SAS",
        "1 rue de la Paix",
        "75002 Paris",
        "France",
        "Tax ID FR40303265045",
        "Platform GmbH",
        "Germany",
        "Tax ID DE987654321",
        invoice.number,
        "Supply period",
        "Issued 2026-",
    ):
        assert printed in html, printed
