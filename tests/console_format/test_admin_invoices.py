"""Invoices, credit and refunds in the admin as finance reads them. Found by a new user:
amounts as `24000.0000`, seller and buyer as raw JSON, "Total" twice, an explanation
without the tier's flat fee."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from invoicing.models import CreditEntry, CreditNote, CreditNoteLine, Invoice, Refund
from subscriptions.models import Subscription

pytestmark = [pytest.mark.django_db]
RAW = re.compile(r"\d\.\d{4,}0\b|\dE-\d")  # a column's scale (24000.0000) or E notation (0E-10)


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    text: str = response.content.decode()
    return text


def labels(html: str) -> list[str]:
    """The labels of an admin change page's read-only fields."""
    return [x.strip() for x in re.findall(r"<label>([^<]*):</label>", html)]


def test_the_invoice_page_prints_money_once_each_at_the_currencys_precision(admin_client, usage_invoice):
    html = page(admin_client, f"/admin/invoicing/invoice/{usage_invoice.pk}/change/")
    assert not RAW.search(html), RAW.search(html)
    assert labels(html).count("Total due") == 1
    assert "Total" not in labels(html)  # the model's field and a display of it, both "Total"
    for label in ("Subtotal", "Tax", "Credit applied", "Total due"):
        assert label in labels(html)
    assert "25,318.00 USD" in html
    assert "24,000.00 USD" in html  # the base fee line
    assert "600,000,000" in html  # the tokens' quantity


def test_the_credit_applied_and_the_total_due(admin_client, fee_invoice):
    html = page(admin_client, f"/admin/invoicing/invoice/{fee_invoice.pk}/change/")
    assert "-250.00 USD" in html
    assert "23,750.00 USD" in html
    assert "Credit ledger entries" in html  # the application of the credit, beside the invoice


def test_seller_and_buyer_are_postal_addresses(admin_client, usage_invoice):
    html = page(admin_client, f"/admin/invoicing/invoice/{usage_invoice.pk}/change/")
    assert "&quot;reference&quot;" not in html
    assert "&quot;tax_id&quot;" not in html
    buyer = re.search(r"<address>(.*?)</address>", html.split("Buyer:")[1], re.S)
    assert buyer is not None
    assert buyer.group(1).split("<br>")[:-1] == [
        "Big Corp Holdings",
        "Germany",
        "ap@bigcorp.example",
        "Account bigcorp",
    ]
    assert "Example Platform Inc." in html.split("Seller:")[1].split("Buyer:")[0]


def test_the_line_explanation_adds_up(admin_client, usage_invoice):
    html = page(admin_client, f"/admin/invoicing/invoice/{usage_invoice.pk}/change/")
    assert "500,000,000 – ∞: 100,000,000 × 0.000008 + 500.00 = 1,300.00" in html
    assert "sum of the tiers: 0.00 + 1,300.00 = 1,300.00" in html
    assert "3 × 6.00 = 18.00" in html
    assert "100000000 × 0.000008 = 1300" not in html


def test_the_invoice_list_prints_totals_with_separators(admin_client, usage_invoice, fee_invoice):
    html = page(admin_client, "/admin/invoicing/invoice/")
    assert "25,318.00 USD" in html
    assert "23,750.00 USD" in html
    assert not RAW.search(html)


def test_the_document_has_addresses_one_total_and_explanations_that_add_up(admin_client, usage_invoice):
    html = page(admin_client, f"/admin/invoicing/invoice/{usage_invoice.pk}/document/")
    assert re.findall(r">(Total[^<]*)<", html) == ["Total due"]
    assert ">Subtotal<" in html
    assert ">Tax<" in html
    assert "25,318.00 USD" in html
    assert ">24,000.00<" in html
    assert ">1,300.00<" in html
    assert "Big Corp Holdings<br>Germany<br>ap@bigcorp.example<br>Account bigcorp" in html
    assert "100,000,000 × 0.000008 + 500.00 = 1,300.00" in html
    assert not RAW.search(html)


def test_the_receipt_says_paid_and_credit_applied_is_labelled(admin_client, fee_invoice):
    Invoice.objects.filter(pk=fee_invoice.pk).update(status="paid")
    html = page(admin_client, f"/admin/invoicing/invoice/{fee_invoice.pk}/document/")
    assert re.findall(r">(Total[^<]*)<", html) == ["Total paid"]
    assert ">Credit applied<" in html
    assert ">-250.00<" in html
    assert "23,750.00 USD" in html


def test_credit_entries_notes_and_refunds_print_money(admin_client, fee_invoice):
    entry = CreditEntry.objects.filter(kind="grant").get()
    for url in ("/admin/invoicing/creditentry/", f"/admin/invoicing/creditentry/{entry.pk}/change/"):
        html = page(admin_client, url)
        assert "250.00 USD" in html, url
        assert not RAW.search(html), url
    # paid, then a correction and a refund, written as the services would leave them
    Invoice.objects.filter(pk=fee_invoice.pk).update(status="paid", paid_at=fee_invoice.finalized_at)
    note = CreditNote.objects.create(
        invoice=fee_invoice,
        tenant=fee_invoice.tenant,
        number="CN-2026-000001",
        currency="USD",
        total=Decimal("1200.5000"),
        reason="seats billed twice",
        actor="staff:ann",
    )
    CreditNoteLine.objects.create(
        credit_note=note, invoice_line=fee_invoice.lines.first(), description="seats", amount=Decimal("1200.5000")
    )
    refund = Refund.objects.create(
        invoice=fee_invoice,
        tenant=fee_invoice.tenant,
        amount=Decimal("1000.0000"),
        currency="USD",
        reason="goodwill",
        request_key="k-1",
        requested_by="staff:ann",
    )
    for url in (
        "/admin/invoicing/creditnote/",
        f"/admin/invoicing/creditnote/{note.pk}/change/",
        f"/admin/invoicing/invoice/{fee_invoice.pk}/change/",
    ):
        html = page(admin_client, url)
        assert "1,200.50 USD" in html, url
        assert not RAW.search(html), url
    for url in ("/admin/invoicing/refund/", f"/admin/invoicing/refund/{refund.pk}/change/"):
        html = page(admin_client, url)
        assert "1,000.00 USD" in html, url
        assert not RAW.search(html), url


def test_proration_items_print_money(admin_client, catalog):
    from datetime import UTC, datetime

    from subscriptions.models import ProrationItem
    from subscriptions.services import subscription_change_plan, subscription_create, subscription_roll, tenant_upsert

    globex = tenant_upsert(external_id="globex", name="Globex", currency="USD")[0]
    sub = subscription_create(tenant=globex, plan_code="team", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=Subscription.objects.get(pk=sub.pk).trial_end)
    subscription_change_plan(tenant=globex, plan_code="pro", when="now", actor="t", at=datetime(2026, 2, 1, tzinfo=UTC))
    item = ProrationItem.objects.filter(kind="credit").get()
    for url in ("/admin/subscriptions/prorationitem/", f"/admin/subscriptions/prorationitem/{item.pk}/change/"):
        html = page(admin_client, url)
        assert re.search(r">-\d{2,3}\.\d\d USD<", html), url  # a credit, at the cent
        assert not RAW.search(html), url
