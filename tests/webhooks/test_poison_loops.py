"""A Stripe event whose processing fails is tried again after a back-off, by the sweeper,
and ends blocked where staff see it; one Stripe refuses to show us is blocked at once. The
sweeper never takes up a blocked event, and staff reprocessing one lifts the block
(audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from auditlog.models import LogEntry
from django.apps import apps
from django.db.models.functions import Now
from django.utils import timezone

from invoicing.models import Invoice
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, finalized
from webhooks.models import StripeEvent
from webhooks.services import stripe_events_pending
from webhooks.tasks import process_stripe_event

from .conftest import make_event
from .test_admin import reprocess, staff

acme = recorded_stripe.acme
stripe_api = recorded_stripe.stripe_api
pytestmark = [pytest.mark.django_db]
OLDER = timedelta(minutes=5)


def stored(stripe_id: str = STRIPE_INVOICE) -> StripeEvent:
    event = make_event("invoice.paid")
    event["data"]["object"]["id"] = stripe_id
    return StripeEvent.objects.create(
        stripe_id=event["id"],
        type=event["type"],
        livemode=False,
        created=timezone.now(),
        payload=event,
        received_at=Now() - timedelta(minutes=10),  # the database's clock, as intake stamps it
    )


def item_of(event: StripeEvent) -> Any:
    return apps.get_model("billing_project", "WorkItem").objects.get(job="webhooks.event", object_id=event.pk)


@pytest.fixture
def ours_at_stripe(acme: Any) -> Invoice:
    invoice = finalized(acme)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=STRIPE_INVOICE)
    return invoice


def test_an_event_stripe_refuses_to_show_is_blocked_at_once_and_not_swept(ours_at_stripe, stripe_api, clock):
    stripe_api.get(
        f"{API}/v1/invoices/{STRIPE_INVOICE}",
        status=404,
        json={"error": {"type": "invalid_request_error", "message": f"No such invoice: '{STRIPE_INVOICE}'"}},
    )
    event = stored()
    process_stripe_event(event.stripe_id)  # handled: recorded, not raised into Celery's retries

    for _ in range(8):
        clock.shift(timedelta(hours=3))
        assert stripe_events_pending(older_than=OLDER) == []
    process_stripe_event(event.stripe_id)  # a stray delivery: blocked, so Stripe is not asked
    assert len(stripe_api.calls) == 1
    item = item_of(event)
    assert (item.state, item.attempts, item.subject) == ("blocked", 1, event.stripe_id)
    assert "No such invoice" in item.blocked_reason
    event.refresh_from_db()
    assert (event.processed_at, event.attempts) == (None, 1)


def test_a_failing_event_is_swept_again_after_its_back_off_then_blocked(ours_at_stripe, stripe_api, clock):
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", body=requests.ConnectionError("connection refused"))
    event = stored()
    attempts = [timezone.now()]
    process_stripe_event(event.stripe_id)
    for _ in range(4 * 48):
        clock.shift(timedelta(minutes=15))
        if stripe_events_pending(older_than=OLDER) == [event.stripe_id]:
            attempts.append(timezone.now())
            process_stripe_event(event.stripe_id)
    gaps = [int((b - a) / timedelta(minutes=1)) for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [15, 30, 60, 120, 240, 480, 960]
    item = item_of(event)
    assert (item.state, item.attempts) == ("blocked", 8)
    event.refresh_from_db()
    assert event.attempts == 8
    assert "connection refused" in event.last_error


def test_reprocessing_a_blocked_event_lifts_the_block_audited(
    ours_at_stripe, stripe_api, clock, django_capture_on_commit_callbacks
):
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", status=404, json={"error": {"type": "invalid_request_error"}})
    event = stored()
    process_stripe_event(event.stripe_id)
    assert item_of(event).state == "blocked"

    with django_capture_on_commit_callbacks() as queued:
        reprocess(staff("finance"), event)
    assert len(queued) == 1
    item = item_of(event)
    assert item.state == "retrying"
    assert any(e.actor is not None and e.actor.username == "finance" for e in LogEntry.objects.get_for_object(item))

    stripe_api.replace(
        "GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=recorded_stripe.ours(ours_at_stripe, "invoice_paid")
    )
    process_stripe_event(event.stripe_id)
    ours_at_stripe.refresh_from_db()
    assert ours_at_stripe.status == "paid"
    assert item_of(event).state == "done"
