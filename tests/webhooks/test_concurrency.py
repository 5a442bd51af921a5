"""Parallel deliveries over real HTTP requests and a real Celery worker: one row, one
effect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from tests.waiting import wait_for
from webhooks.models import StripeEvent
from webhooks.services import stripe_event_process

from .conftest import handled, make_event, post_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PARALLEL = 10


def in_parallel(action: Callable[[], Any]) -> list[Any]:
    start = threading.Barrier(PARALLEL)

    def run() -> Any:
        try:
            start.wait()  # all at once, to make the race real
            return action()
        finally:
            connections.close_all()  # each thread's own connection

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda _: run(), range(PARALLEL)))


def test_ten_parallel_deliveries_store_one_row_and_apply_once(counted, worker):
    event = make_event()
    responses = in_parallel(lambda: post_event(event, client=Client(enforce_csrf_checks=True)))

    assert [r.status_code for r in responses] == [200] * PARALLEL
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["accepted"] + ["duplicate"] * (PARALLEL - 1)
    assert StripeEvent.objects.count() == 1
    assert wait_for(lambda: StripeEvent.objects.filter(processed_at__isnull=False).exists())
    assert handled(event["id"]) == 1
    assert StripeEvent.objects.get().attempts == 1


def test_five_deliveries_in_a_row_through_the_worker_apply_once(counted, worker):
    event = make_event()
    statuses = [post_event(event).json()["status"] for _ in range(5)]
    assert statuses == ["accepted"] + ["duplicate"] * 4
    assert wait_for(lambda: StripeEvent.objects.filter(processed_at__isnull=False).exists())
    assert StripeEvent.objects.count() == 1
    assert handled(event["id"]) == 1


def test_concurrent_processing_of_one_event_runs_its_handler_once(counted):
    event = make_event()
    # Stored directly (nothing queued): ten processors race instead of one worker.
    StripeEvent.objects.create(
        stripe_id=event["id"], type=event["type"], livemode=False, created=timezone.now(), payload=event
    )
    applied = in_parallel(lambda: stripe_event_process(stripe_id=event["id"]))
    assert sorted(applied) == [False] * (PARALLEL - 1) + [True]
    assert handled(event["id"]) == 1
