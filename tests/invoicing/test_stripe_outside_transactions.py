"""Collection calls Stripe with no transaction open and no row of ours locked, at every
step: the customer (and dj-stripe's mirror of it), the push, Stripe Tax, the finalization,
and a dunning retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from invoicing.models import Invoice
from invoicing.payments import invoice_collect, invoice_retry_payment
from tests.invoicing import stripe_watch
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, draft, finalized, ours, register_push

pytestmark = [pytest.mark.django_db(transaction=True)]

acme = recorded_stripe.acme
watched_stripe = stripe_watch.watched_stripe


def test_collecting_an_invoice_calls_stripe_outside_any_transaction(acme, watched_stripe):
    rsps, watch = watched_stripe
    invoice = finalized(acme, amounts=("49.00",))
    register_push(rsps, invoice)
    rsps.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))
    watch.lock("invoicing_invoice", invoice.pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert invoice_collect(invoice_id=invoice.pk).stripe_number == "7C1D2E3F-0001"

    assert f"POST /v1/invoices/{STRIPE_INVOICE}/finalize" in watch.calls
    assert "GET /v1/account" in watch.calls  # dj-stripe's, as it mirrors the customer
    assert watch.problems == []


def test_with_stripe_tax_every_call_is_outside_any_transaction(acme, watched_stripe, settings):
    rsps, watch = watched_stripe
    settings.STRIPE_TAX_ENABLED = True
    invoice = draft(acme, amounts=("49.00",))
    register_push(rsps, invoice, after_items="invoice_draft_with_tax")
    rsps.post(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_tax"))
    rsps.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))
    watch.lock("invoicing_invoice", invoice.pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert invoice_collect(invoice_id=invoice.pk).status == "open"

    assert f"POST /v1/invoices/{STRIPE_INVOICE}/finalize" in watch.calls
    assert watch.problems == []


def test_a_dunning_retry_charges_and_reads_stripe_outside_any_transaction(acme, watched_stripe):
    rsps, watch = watched_stripe
    invoice = finalized(acme)
    Invoice.objects.filter(pk=invoice.pk).update(
        stripe_invoice_id=STRIPE_INVOICE, next_payment_retry_at=timezone.now() - timedelta(minutes=1)
    )
    rsps.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/pay", json=ours(invoice, "invoice_paid"))
    rsps.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    watch.lock("invoicing_invoice", invoice.pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert invoice_retry_payment(invoice_id=invoice.pk).status == "paid"

    assert watch.calls == [f"POST /v1/invoices/{STRIPE_INVOICE}/pay", f"GET /v1/invoices/{STRIPE_INVOICE}"]
    assert watch.problems == []
