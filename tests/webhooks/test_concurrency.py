"""Parallel deliveries and parallel processing of one event, with the race made to happen:
each test holds a lock until every other party is queued behind it (PostgreSQL's lock
manager says so), so it fails if the guard it names is missing.

(A test of five deliveries in a row through the worker went: once intake stores an event
once it could not fail; test_intake's five-in-a-row test covers the same ground.)"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from billing_project.redis_client import get_redis, rkey
from tests.locks import backend_pid, raw_connection, waiting_behind
from tests.waiting import wait_for
from webhooks.handlers import handles
from webhooks.models import StripeEvent
from webhooks.services import stripe_event_process

from .conftest import make_event, post_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PARALLEL = 10


def in_parallel(action: Callable[[], Any]) -> list[Any]:
    start = threading.Barrier(PARALLEL)

    def run() -> Any:
        try:
            start.wait(10)
            return action()
        finally:
            connections.close_all()  # each thread's own connection

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda _: run(), range(PARALLEL)))


def test_ten_deliveries_inserting_at_once_store_one_row_and_all_answer_200():
    """All ten are inside their INSERT together: a session of the test inserted the same id
    first and holds it uncommitted until the ten wait on it, then rolls back. Intake that
    looked before inserting would see no row ten times and then fail on the unique index."""
    event = make_event()
    holder = raw_connection()
    try:
        holder.execute(
            "INSERT INTO webhooks_stripeevent (stripe_id, type, livemode, created, payload, received_at, attempts,"
            " last_error) VALUES (%s, 'test.held', false, now(), '{}', now(), 0, '')",
            [event["id"]],
        )
        with ThreadPoolExecutor(PARALLEL) as pool:
            futures = [
                pool.submit(lambda: _closing(lambda: post_event(event, client=Client(enforce_csrf_checks=True))))
                for _ in range(PARALLEL)
            ]
            assert wait_for(lambda: waiting_behind(backend_pid(holder)) == PARALLEL), "the deliveries never met"
            holder.rollback()
            responses = [f.result(timeout=30) for f in futures]
    finally:
        holder.close()
    assert [r.status_code for r in responses] == [200] * PARALLEL, [r.content for r in responses]
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["accepted"] + ["duplicate"] * (PARALLEL - 1)
    assert StripeEvent.objects.get().payload == event  # the delivered event, stored once


def _closing(action: Callable[[], Any]) -> Any:
    try:
        return action()
    finally:
        connections.close_all()


def test_concurrent_processing_of_one_event_runs_its_handler_once(registry):
    """The first processor's apply step holds the event until the nine others wait for its row
    lock (or, were there no lock, until a second one enters the handler too)."""
    event = make_event("test.held")
    entered: list[int] = []

    @handles("test.held")
    def read(row: StripeEvent) -> Callable[[], None]:
        def hold() -> None:  # the apply step, which runs under the event's lock
            entered.append(backend_pid())
            me = entered[0] if len(entered) == 1 else None
            if me is not None:
                wait_for(lambda: len(entered) > 1 or waiting_behind(me) == PARALLEL - 1)
            get_redis().incr(rkey("test-held", row.stripe_id))

        return hold

    # Stored directly (nothing queued): ten processors race instead of one worker.
    StripeEvent.objects.create(
        stripe_id=event["id"], type=event["type"], livemode=False, created=timezone.now(), payload=event
    )
    applied = in_parallel(lambda: stripe_event_process(stripe_id=event["id"]))
    assert len(entered) == 1, "the handler ran in parallel"
    assert sorted(applied) == [False] * (PARALLEL - 1) + [True]
    assert int(get_redis().get(rkey("test-held", event["id"])) or 0) == 1
    assert StripeEvent.objects.get().attempts == 1
