"""Dunning retries on our schedule (DUNNING_RETRY_DAYS after the first failure): each retry
asks Stripe to charge the open invoice with a key of its own, applies Stripe's state, and
schedules the next; a redelivered retry never charges twice or early."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from invoicing.payments import invoice_retry_payment
from invoicing.services import invoice_payment_failed, payment_retries_due
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_payments import pushed
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, finalized, idempotency_keys, ours

acme = recorded_stripe.acme
stripe_api = recorded_stripe.stripe_api
PAY = f"{API}/v1/invoices/{STRIPE_INVOICE}/pay"
DECLINED = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}
# retries are scheduled in days from "now": the suite's clock, frozen (tests/clock.py)
pytestmark = [pytest.mark.usefixtures("clock")]


@pytest.mark.django_db
def test_retries_follow_the_schedule_until_paid(acme, stripe_api, settings):
    settings.DUNNING_RETRY_DAYS = [1, 3, 5]
    invoice = pushed(finalized(acme, amounts=("49.00",)))
    invoice = invoice_payment_failed(invoice_id=invoice.pk, error="card_declined")
    first_due = invoice.next_payment_retry_at
    assert first_due is not None
    assert payment_retries_due(now=first_due - timedelta(minutes=1)) == []
    assert payment_retries_due(now=first_due) == [invoice.pk]

    # retry 1: declined again; Stripe now counts two attempts
    stripe_api.post(PAY, status=402, json=DECLINED)
    stripe_api.get(
        f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_open_payment_failed", attempt_count=2)
    )
    invoice = invoice_retry_payment(invoice_id=invoice.pk, now=first_due)
    assert (invoice.payment_retries, invoice.collection_attempts, invoice.status) == (1, 2, "open")
    assert invoice.next_payment_retry_at == first_due + timedelta(days=2)  # day 3 of the schedule
    # the same task delivered again: not due yet, so Stripe is not asked
    calls = len(stripe_api.calls)
    invoice_retry_payment(invoice_id=invoice.pk, now=first_due + timedelta(hours=1))
    assert len(stripe_api.calls) == calls

    # retry 2: paid
    stripe_api.replace("POST", PAY, json=ours(invoice, "invoice_paid"))
    stripe_api.replace("GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    invoice = invoice_retry_payment(invoice_id=invoice.pk, now=invoice.next_payment_retry_at)
    assert (invoice.status, invoice.payment_retries, invoice.next_payment_retry_at) == ("paid", 2, None)
    assert idempotency_keys(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/pay") == [
        f"inv-{invoice.pk}-retry-1",
        f"inv-{invoice.pk}-retry-2",
    ]


@pytest.mark.django_db
def test_the_schedule_ends_and_leaves_the_rest_to_the_grace(acme, stripe_api, settings):
    settings.DUNNING_RETRY_DAYS = [1]
    invoice = pushed(finalized(acme, amounts=("49.00",)))
    invoice = invoice_payment_failed(invoice_id=invoice.pk, error="card_declined")
    stripe_api.post(PAY, status=402, json=DECLINED)
    stripe_api.get(
        f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_open_payment_failed", attempt_count=2)
    )
    invoice = invoice_retry_payment(invoice_id=invoice.pk, now=timezone.now() + timedelta(days=1, minutes=1))
    assert (invoice.payment_retries, invoice.next_payment_retry_at) == (1, None)
    assert payment_retries_due(now=timezone.now() + timedelta(days=30)) == []


@pytest.mark.django_db
def test_a_refusal_that_is_not_a_decline_is_loud_and_spends_no_retry(acme, stripe_api, settings):
    from invoicing.providers import ProviderRejected

    settings.DUNNING_RETRY_DAYS = [1, 3]
    invoice = pushed(finalized(acme, amounts=("49.00",)))
    invoice = invoice_payment_failed(invoice_id=invoice.pk, error="card_declined")
    due = invoice.next_payment_retry_at
    stripe_api.post(PAY, status=401, json={"error": {"type": "invalid_request_error", "message": "Invalid API Key"}})
    with pytest.raises(ProviderRejected):  # the task records a failure; the schedule is untouched
        invoice_retry_payment(invoice_id=invoice.pk, now=due)
    invoice.refresh_from_db()
    assert (invoice.payment_retries, invoice.next_payment_retry_at) == (0, due)
