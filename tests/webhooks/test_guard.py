"""A stored Stripe event is what Stripe sent: the database refuses any other change than
the processing bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from webhooks.models import StripeEvent

from .conftest import make_event

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def event() -> StripeEvent:
    payload = make_event("invoice.paid")
    return StripeEvent.objects.create(
        stripe_id=payload["id"],
        type=payload["type"],
        api_version=payload["api_version"],
        livemode=False,
        created=timezone.now(),  # any instant: the changes below are to fixed ones, and the guard
        # compares values, never dates
        payload=payload,
    )


def refused(action) -> None:
    expected = "only processed_at|cannot change|only grow|append-only"
    with pytest.raises(DatabaseError, match=expected), transaction.atomic():
        action()


def rows(event: StripeEvent):
    return StripeEvent.objects.filter(pk=event.pk)


@pytest.mark.parametrize(
    "change",
    [
        {"stripe_id": "evt_other"},
        {"type": "invoice.voided"},
        {"payload": {"forged": True}},
        {"livemode": True},
        {"api_version": "2020-08-27"},
        # fixed instants, never the clock: each differs from the stored value whatever day it is
        {"created": datetime(2020, 1, 1, tzinfo=UTC)},
        {"received_at": datetime(2020, 1, 1, tzinfo=UTC)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_stripe_sent_cannot_change(event, change):
    refused(lambda: rows(event).update(**change))


def test_raw_sql_cannot_change_it_either(event):
    def raw() -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE webhooks_stripeevent SET payload = '{}'::jsonb WHERE id = %s", [event.pk])

    refused(raw)


def test_it_cannot_be_deleted_or_truncated(event):
    refused(lambda: rows(event).delete())

    def truncate() -> None:
        with connection.cursor() as cursor:
            # Test connections may TRUNCATE (to reset tables); nothing else may.
            cursor.execute("SET LOCAL billing.allow_truncate = off")
            cursor.execute("TRUNCATE webhooks_stripeevent")

    refused(truncate)
    assert rows(event).exists()


def test_processing_bookkeeping_may_change_and_processed_at_only_once(event):
    rows(event).update(attempts=1, last_error="CardError: declined")
    processed = timezone.now()
    rows(event).update(attempts=2, last_error="", processed_at=processed)
    refused(lambda: rows(event).update(processed_at=None))
    # another instant, whatever the clock does (a frozen one would give the same twice)
    refused(lambda: rows(event).update(processed_at=processed + timedelta(seconds=1)))
    refused(lambda: rows(event).update(attempts=1))
    event.refresh_from_db()
    assert event.attempts == 2
    assert event.processed_at is not None
