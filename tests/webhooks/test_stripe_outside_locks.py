"""A webhook's handler reads Stripe's current state before it locks anything: while Stripe
answers, the event's row (and the invoice's, the tenant's) is free and no transaction is
open, so nothing queues behind Stripe, nor does the aggregation watermark. Then one short
transaction locks the event and applies what was read, once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from billing_project.money import Money
from invoicing.models import Invoice
from subscriptions.selectors import live_subscription
from tests.invoicing import stripe_watch
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, finalized, ours, recorded
from webhooks.models import StripeEvent
from webhooks.services import stripe_event_process

from .conftest import make_event

pytestmark = [pytest.mark.django_db(transaction=True)]

acme = recorded_stripe.acme
watched_stripe = stripe_watch.watched_stripe


def stored(event_type: str, object_id: str) -> StripeEvent:
    event = make_event(event_type)
    event["data"]["object"]["id"] = object_id
    return StripeEvent.objects.create(
        stripe_id=event["id"], type=event_type, livemode=False, created=timezone.now(), payload=event
    )


def test_invoice_paid_reads_stripe_with_nothing_locked_then_applies_once(acme, watched_stripe):
    rsps, watch = watched_stripe
    invoice = finalized(acme)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=STRIPE_INVOICE)
    rsps.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    event = stored("invoice.paid", STRIPE_INVOICE)
    watch.lock("webhooks_stripeevent", event.pk)
    watch.lock("invoicing_invoice", invoice.pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert stripe_event_process(stripe_id=event.stripe_id) is True

    assert watch.calls == [f"GET /v1/invoices/{STRIPE_INVOICE}"]
    assert watch.problems == []
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    event.refresh_from_db()
    assert (event.processed_at is not None, event.attempts) == (True, 1)
    assert stripe_event_process(stripe_id=event.stripe_id) is False  # applied once: not even Stripe is asked again
    assert len(watch.calls) == 1


def test_checkout_completed_reads_the_session_with_nothing_locked(acme, watched_stripe):
    rsps, watch = watched_stripe
    rsps.get(f"{API}/v1/checkout/sessions/cs_test_c1SxZ03Qa7bC3dE4f", json=recorded("checkout_session_setup"))
    event = stored("checkout.session.completed", "cs_test_c1SxZ03Qa7bC3dE4f")
    watch.lock("webhooks_stripeevent", event.pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert stripe_event_process(stripe_id=event.stripe_id) is True

    assert watch.calls == ["GET /v1/checkout/sessions/cs_test_c1SxZ03Qa7bC3dE4f"]
    assert watch.problems == []
    live = live_subscription(acme)
    assert live is not None
    assert live.plan_version.plan.code == "pro"


def test_charge_refunded_reads_the_charges_refunds_with_nothing_locked_then_settles_ours(acme, watched_stripe):
    from invoicing.models import Refund
    from invoicing.services import refund_request
    from tests.invoicing.stripe_refunds import CHARGE, StripeRefunds, paid_at_stripe

    rsps, watch = watched_stripe
    stripe = StripeRefunds(rsps)
    invoice = paid_at_stripe(acme)
    refund = refund_request(
        invoice_id=invoice.pk, amount=Money(Decimal("15.00"), "USD"), reason="x", actor="staff:ana", request_key="k"
    )
    made = stripe.stripe_made(amount=refund.amount, billing_refund_id=refund.pk, status="succeeded")
    event = stored("charge.refunded", CHARGE)
    for table, pk in (
        ("webhooks_stripeevent", event.pk),
        ("invoicing_invoice", invoice.pk),
        ("invoicing_refund", refund.pk),
    ):
        watch.lock(table, pk)
    watch.lock("subscriptions_tenant", acme.pk)

    assert stripe_event_process(stripe_id=event.stripe_id) is True

    assert watch.calls == ["GET /v1/refunds"]
    assert watch.problems == []
    refund = Refund.objects.get(pk=refund.pk)
    assert (refund.status, refund.stripe_refund_id) == ("succeeded", made["id"])


def test_what_a_webhook_changes_is_audited_with_the_event_as_its_actor(acme, watched_stripe):
    """Item 9 of the fail-safe review: `invoice.paid` moved an invoice to paid with no audit
    record at all. Now the invoice's change is logged, and its actor is the Stripe event."""
    from auditlog.models import LogEntry

    from billing_project.audit import api_actor_of

    rsps, _ = watched_stripe
    invoice = finalized(acme)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=STRIPE_INVOICE)
    rsps.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    event = stored("invoice.paid", STRIPE_INVOICE)
    assert stripe_event_process(stripe_id=event.stripe_id) is True
    paid = [
        e
        for e in LogEntry.objects.get_for_object(invoice).filter(action=LogEntry.Action.UPDATE)
        if "paid" in str((e.changes_dict or {}).get("status", ""))
    ]
    assert len(paid) == 1, [e.changes_dict for e in LogEntry.objects.get_for_object(invoice)]
    assert api_actor_of(paid[0]) == f"stripe:{event.stripe_id}"
    assert paid[0].actor is not None
    assert paid[0].actor.username == "billing-system"
