"""Processing a stored event: its effect lands exactly once, whatever fails or repeats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db.models.functions import Now
from django.utils import timezone

from billing_project.redis_client import get_redis, rkey
from webhooks import handlers
from webhooks.handlers import HANDLERS, handles
from webhooks.models import StripeEvent
from webhooks.services import stripe_event_process, stripe_events_pending
from webhooks.tasks import process_pending_stripe_events, process_stripe_event

from .conftest import make_event, post_event

pytestmark = [pytest.mark.django_db]


class CardNetworkDown(Exception):
    pass


@pytest.fixture
def flaky(registry):
    """Writes its effect (a row), then fails on its first call only."""

    @handles("test.flaky")
    def read(event: StripeEvent) -> Callable[[], None]:
        def apply() -> None:
            Group.objects.create(name=f"effect {event.stripe_id} {timezone.now().isoformat()}")
            if get_redis().incr(rkey("test-flaky-calls", event.stripe_id)) == 1:
                raise CardNetworkDown("stripe unreachable")

        return apply


def effects(stripe_id: str) -> int:
    return Group.objects.filter(name__startswith=f"effect {stripe_id} ").count()


def test_a_handler_that_fails_once_applies_its_effect_exactly_once(flaky, django_capture_on_commit_callbacks, clock):
    event = make_event("test.flaky")
    with django_capture_on_commit_callbacks():
        assert post_event(event).status_code == 200

    process_stripe_event(event["id"])  # fails: counted and backed off, not raised into Celery
    row = StripeEvent.objects.get()
    assert row.processed_at is None
    assert row.attempts == 1
    assert row.last_error == "CardNetworkDown: stripe unreachable"
    assert effects(event["id"]) == 0  # the failed attempt's write rolled back with it
    process_stripe_event(event["id"])  # a stray delivery during the back-off: not attempted
    row.refresh_from_db()
    assert row.attempts == 1

    clock.shift(timedelta(minutes=15))
    process_stripe_event(event["id"])  # the sweeper's re-queue, once the back-off has passed
    process_stripe_event(event["id"])  # and a late duplicate delivery of the task
    assert post_event(event).json()["status"] == "duplicate"  # and Stripe's own retry

    row.refresh_from_db()
    assert row.processed_at is not None
    assert row.attempts == 2
    assert effects(event["id"]) == 1


def test_a_failing_handler_raises_to_its_caller(flaky):
    event = make_event("test.flaky")
    StripeEvent.objects.create(
        stripe_id=event["id"], type=event["type"], livemode=False, created=timezone.now(), payload=event
    )
    with pytest.raises(CardNetworkDown):
        stripe_event_process(stripe_id=event["id"])
    assert stripe_event_process(stripe_id=event["id"]) is True


def test_processing_an_unknown_event_id_is_a_logged_no_op(caplog):
    assert stripe_event_process(stripe_id="evt_never_stored") is False
    assert any(r.message == "stripe.event.missing" and r.levelname == "ERROR" for r in caplog.records)


def test_the_registry_refuses_a_second_handler_for_a_type(registry):
    with pytest.raises(ValueError, match="already has a handler"):
        handles("invoice.paid")(lambda event: lambda: None)


def test_invoicing_events_are_routed_to_invoicing():
    for event_type in ("invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"):
        assert HANDLERS[event_type] is handlers.invoice_changed
    assert HANDLERS["charge.refunded"] is handlers.charge_refunded
    for event_type in ("refund.created", "refund.updated", "refund.failed"):
        assert HANDLERS[event_type] is handlers.refund_changed
    assert HANDLERS["checkout.session.completed"] is handlers.checkout_session_completed


def test_an_event_without_an_object_id_fails_loudly():
    event = StripeEvent(stripe_id="evt_1", type="invoice.paid", payload={"data": {"object": {}}})
    with pytest.raises(ValueError, match="no data.object.id"):
        handlers.object_id(event)


def _stored(stripe_id: str, *, age: timedelta, attempts: int = 0, processed: bool = False) -> StripeEvent:
    now = timezone.now()
    return StripeEvent.objects.create(
        stripe_id=stripe_id,
        type="test.counted",
        livemode=False,
        created=now - age,
        payload=make_event(stripe_id=stripe_id),
        received_at=Now() - age,  # the database's clock, as intake stamps it
        attempts=attempts,
        processed_at=now if processed else None,
    )


def test_events_whose_processing_was_never_queued_are_swept_up(django_capture_on_commit_callbacks, clock):
    # the service's clock is elsewhere (the suite's frozen one): ages are the database's,
    # the clock received_at is stamped with
    _stored("evt_lost", age=timedelta(minutes=6))
    _stored("evt_fresh", age=timedelta(seconds=10))  # its task is probably still in the queue
    _stored("evt_retrying", age=timedelta(minutes=30), attempts=2)  # Celery owns its retries
    _stored("evt_done", age=timedelta(minutes=30), attempts=1, processed=True)
    assert stripe_events_pending(older_than=timedelta(minutes=5)) == ["evt_lost"]
    with django_capture_on_commit_callbacks() as queued:
        assert process_pending_stripe_events() == 1
    assert len(queued) == 1
