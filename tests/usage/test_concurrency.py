"""The same event fired from many threads at once, on real PostgreSQL: one row, the rest duplicates;
the same key with different payloads: one accepted, the rest 409."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
import time_machine

from billing_project.api_keys import ApiPrincipal
from billing_project.errors import Conflict
from tests.subscriptions.test_races import race
from usage.ingestion import Outcome, usage_record
from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db(transaction=True)]
THREADS = 8


@pytest.fixture(autouse=True)
def _clock():
    # the events below must stay within the accepted window whatever the day the suite runs
    with time_machine.travel(datetime(2026, 11, 25, 12, tzinfo=UTC), tick=False):
        yield


def event(quantity: str = "100") -> dict[str, str]:
    return {
        "tenant": "acme",
        "metric": "ai_tokens",
        "quantity": quantity,
        "idempotency_key": "same-key",
        "occurred_at": "2026-11-25T10:00:00Z",
    }


def test_the_same_event_at_once_from_many_threads_is_stored_once(reporter):
    principal = ApiPrincipal.from_key(reporter.key)
    results, errors = race(lambda: usage_record(principal=principal, events=[event()])[0], THREADS)
    assert errors == []
    statuses = sorted(r.outcome for r in results)
    assert statuses == ["accepted"] + ["duplicate"] * (THREADS - 1)
    assert len({r.id for r in results}) == 1  # every answer names the one stored row
    assert UsageEvent.objects.count() == 1


def test_the_same_key_with_different_payloads_is_one_accept_and_conflicts(reporter):
    principal = ApiPrincipal.from_key(reporter.key)
    quantities = itertools.count(1)  # next() on a C iterator is atomic: each thread a different payload
    results, errors = race(lambda: usage_record(principal=principal, events=[event(str(next(quantities)))])[0], THREADS)
    assert errors == []
    accepted = [r for r in results if r.outcome is Outcome.ACCEPTED]
    conflicts = [r for r in results if isinstance(r.error, Conflict) and r.error.code == "idempotency_conflict"]
    assert len(accepted) == 1
    assert len(conflicts) == THREADS - 1
    assert UsageEvent.objects.count() == 1


def test_overlapping_batches_from_many_threads(reporter):
    principal = ApiPrincipal.from_key(reporter.key)
    batch = [{**event(), "idempotency_key": f"k{i}"} for i in range(200)]
    results, errors = race(lambda: usage_record(principal=principal, events=batch), THREADS)
    assert errors == []
    accepted = sum(1 for rs in results for r in rs if r.outcome is Outcome.ACCEPTED)
    assert accepted == 200
    assert UsageEvent.objects.count() == 200


def test_batches_sharing_keys_in_opposite_orders_do_not_deadlock(reporter):
    principal = ApiPrincipal.from_key(reporter.key)
    batch = [{**event(), "idempotency_key": f"k{i:04d}"} for i in range(1000)]
    orders = iter([batch, list(reversed(batch))] * 4)
    for _ in range(3):
        results, errors = race(lambda: usage_record(principal=principal, events=next(orders)), 2)
        assert errors == []
    assert UsageEvent.objects.count() == 1000
