"""Regressions found in review: credit with Stripe Tax, resuming a subscription canceled at
its period end, and late usage that moves down and back up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import Invoice, InvoiceLine
from invoicing.payments import invoice_collect
from invoicing.services import invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_apply, subscription_cancel, subscription_create, tenant_upsert
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, ours, posts, register_push
from tests.plans.factories import demo

acme = recorded_stripe.acme
stripe_api = recorded_stripe.stripe_api


@pytest.mark.django_db
def test_with_stripe_tax_credit_is_on_the_draft_stripe_taxes(acme, stripe_api, settings):
    """Credit is settled on the draft, before it goes to Stripe: the credit travels as an item,
    Stripe taxes what is charged, and both invoices finalize with the same total."""
    settings.STRIPE_TAX_ENABLED = True
    settings.STRIPE_COLLECTION_ENABLED = True
    credit_grant(tenant=acme, amount=Money(Decimal("10.00"), "USD"), reason="goodwill", actor="t")
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    from subscriptions.services import subscription_roll

    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 1, 16, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    invoice = Invoice.objects.get()
    assert invoice.status == "draft"  # waiting for Stripe's tax
    assert [(x.kind, x.amount) for x in invoice.lines.order_by("position")] == [
        ("base_fee", Decimal("49.00")),
        ("credit", Decimal("-10.00")),
    ]
    # Stripe's draft: 39.00 charged, 3.71 tax on it (19% in DE, recorded in the shape Stripe sends)
    taxed = ours(invoice, "invoice_draft_with_tax", subtotal=3900, total=4271, amount_due=4271)
    taxed["total_taxes"] = [{**taxed["total_taxes"][0], "amount": 371}]
    register_push(stripe_api, invoice, after_items="invoice_draft_with_tax")
    stripe_api.replace("GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=taxed)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=taxed)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open", total=4271))
    invoice = invoice_collect(invoice_id=invoice.pk)
    assert (invoice.status, invoice.subtotal, invoice.credit_applied, invoice.tax, invoice.total) == (
        "open",
        Decimal("49.00"),
        Decimal("10.00"),
        Decimal("3.71"),
        Decimal("42.71"),
    )
    assert invoice.total == sum(invoice.lines.values_list("amount", flat=True))
    assert len(posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize")) == 1


@pytest.mark.django_db
def test_a_subscription_canceled_at_period_end_ends_there_even_if_suspended():
    """Canceled at period end, then suspended (e.g. dunning): it ends at the period end, and a
    later resume cannot start (and bill) a period the customer canceled."""
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=t0)  # yearly, no trial
    subscription_cancel(tenant=acme, at_period_end=True, actor="t", at=t0 + timedelta(days=10))
    subscription_apply(subscription=sub, action="suspend", actor="t", reason="x", at=t0 + timedelta(days=20))
    from subscriptions.services import subscriptions_roll_due

    assert subscriptions_roll_due(at=datetime(2027, 1, 2, tzinfo=UTC)) == 1  # the beat ends it
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at) == ("ended", datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(Exception, match="resume"):
        subscription_apply(
            subscription=sub, action="resume", actor="t", reason="paid", at=datetime(2027, 2, 1, tzinfo=UTC)
        )
    invoices_close_due(now=datetime(2027, 2, 2, tzinfo=UTC))
    assert InvoiceLine.objects.filter(invoice__subscription=sub, kind="base_fee").count() == 1


@pytest.mark.django_db
def test_late_usage_of_a_latest_metric_that_returns_to_its_billed_value_is_never_billed(api, make_key):
    """_late_lines compares the price now with max(quantity) of the lines billed, not with the
    last billed quantity: 10 billed, late → 7 (credited), late → 10 again: skipped, 0.30 lost."""
    from tests.invoicing.test_period_close import report

    spec = demo()
    for metric in spec["metrics"]:
        if metric["code"] == "storage_gb":
            metric["aggregation"] = "latest"
    catalog_import(spec=catalog_validate(spec))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    key = make_key("service", metrics=["storage_gb"])
    from subscriptions.services import subscription_roll

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=t0)  # paid from Jan 15
    report(api, key, "storage_gb", 10, datetime(2026, 1, 20, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 15, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    report(api, key, "storage_gb", 7, datetime(2026, 1, 21, tzinfo=UTC))  # late: latest is now 7
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 15, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 20, tzinfo=UTC))
    late = list(InvoiceLine.objects.filter(kind="late_usage").values_list("quantity", "amount"))
    assert late == [(Decimal("7"), Decimal("-0.30"))]
    report(api, key, "storage_gb", 10, datetime(2026, 1, 22, tzinfo=UTC))  # late again: latest back to 10
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 4, 15, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 4, 20, tzinfo=UTC))
    jan = datetime(2026, 1, 15, tzinfo=UTC)
    billed = sum(InvoiceLine.objects.filter(metric="storage_gb", period_start=jan).values_list("amount", flat=True))
    assert billed == Decimal("1.00")  # January's storage prices at 1.00 again (latest 10 × 0.10)
