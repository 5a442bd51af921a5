"""A usage counter that missed an increment is never trusted (usage/counters.py).

Attacked on a running service: Redis was cut, usage was reported past a limit (stored in
PostgreSQL, the after-commit increment swallowed its error), Redis came back with its
data, and checks answered `allowed: true, used: 0` at 1,200 of 1,000 until the 5-minute
reconciliation. Here the same happens through a proxy in front of the suite's Redis,
and the first check after it comes back must deny: in the process that missed the
update, at once; in any other, once the counters' trust lease has lapsed; and after a
writer died between COMMIT and the increment, once its mark is past the grace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import usage.counters
from billing_project.redis_client import get_redis
from plans.models import BillableMetric
from tests.entitlements.test_fastpath import served
from tests.faults.proxy import FaultProxy
from usage.counters import MICRO, counter_key, trust_key
from usage.models import CounterRepair, UsageEvent

pytestmark = [pytest.mark.django_db]
LIMIT = 5  # the basic plan's hard limit on `api` (tests/entitlements/conftest.py)


@pytest.fixture
def proxy(settings: Any) -> Iterator[FaultProxy]:
    fault = FaultProxy(settings.REDIS_URL)
    settings.REDIS_URL = fault.url
    try:
        yield fault
    finally:
        fault.close()


def check(api, key, feature="api"):
    response = api.post(
        "/api/v1/entitlements/check", {"tenant": "acme", "feature": feature}, format="json", **key.header
    )
    assert response.status_code == 200, response.content
    return response.json()


def report(api, key, n, prefix="e"):
    events = [{"tenant": "acme", "metric": "api_calls", "idempotency_key": f"{prefix}{i}"} for i in range(n)]
    response = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == n


def cached_counter(subscribed) -> Decimal | None:
    metric = BillableMetric.objects.get(code="api_calls")
    raw = get_redis().get(counter_key(subscribed.tenant_id, metric.pk, subscribed.current_period_start))
    return None if raw is None else Decimal(int(raw)) / MICRO


def wait_until(condition, what: str, seconds: float = 5.0) -> None:
    """Wait for a state Redis reaches by its own clock (a TTL, a mark's age), bounded."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def redis_ms() -> int:
    seconds, micros = get_redis().time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_after_a_partition_the_first_check_denies(api, reader, subscribed, proxy):
    assert check(api, reader)["used"] == "0"  # warm: the key, the context and the counter are in Redis
    with proxy.fault("refuse"):
        report(api, reader, LIMIT + 1)  # stored in PostgreSQL; Redis missed every increment
    assert UsageEvent.objects.count() == LIMIT + 1
    assert cached_counter(subscribed) == 0  # Redis came back with its data: the counter says 0
    body = check(api, reader)
    assert (body["allowed"], body["reason"], body["used"]) == (False, "limit_exceeded", str(LIMIT + 1))
    assert cached_counter(subscribed) == LIMIT + 1  # rebuilt from PostgreSQL
    assert not CounterRepair.objects.exists()  # and the repair is done


def test_the_fast_lane_leaves_a_suspect_counter_to_the_view(api, reader, subscribed, proxy):
    status, _, answer, lane = served({"tenant": "acme", "feature": "api"}, key=reader)
    assert (status, lane, answer["used"]) == (200, "django", "0")
    assert served({"tenant": "acme", "feature": "api"}, key=reader)[3] == "fast"
    with proxy.fault("refuse"):
        report(api, reader, LIMIT + 1)
    status, _, answer, lane = served({"tenant": "acme", "feature": "api"}, key=reader)
    assert (status, answer["allowed"], answer["used"]) == (200, False, str(LIMIT + 1))
    assert lane == "django"
    assert served({"tenant": "acme", "feature": "api"}, key=reader)[2]["used"] == str(LIMIT + 1)


def test_another_process_stops_trusting_the_counter_once_the_lease_lapses(
    api, reader, subscribed, proxy, settings, monkeypatch
):
    settings.COUNTER_TRUST_MS = 300
    assert check(api, reader)["used"] == "0"
    with proxy.fault("refuse"):
        report(api, reader, LIMIT + 1)
    assert CounterRepair.objects.count() == 1  # recorded in PostgreSQL, in the ingesting transaction
    monkeypatch.setattr(usage.counters, "_suspect", False)  # a process that saw no failure
    wait_until(lambda: get_redis().pttl(trust_key()) < 0, "the trust lease lapses")
    body = check(api, reader)
    assert (body["allowed"], body["used"]) == (False, str(LIMIT + 1))
    assert not CounterRepair.objects.exists()


def test_an_increment_lost_after_commit_is_repaired(api, reader, subscribed, proxy, django_capture_on_commit_callbacks):
    """Redis answered the mark before COMMIT and was cut before the increment after it."""
    assert check(api, reader)["used"] == "0"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report(api, reader, LIMIT + 1)
    with proxy.fault("refuse"):
        for callback in callbacks:
            callback()  # the increment meets a Redis that does not answer
    assert CounterRepair.objects.count() == 1  # recorded in a transaction of its own
    assert cached_counter(subscribed) == 0
    assert check(api, reader)["allowed"] is False


def test_a_writer_that_died_between_commit_and_increment_is_not_trusted_past_the_grace(
    api, reader, subscribed, settings, django_capture_on_commit_callbacks
):
    """The process that committed never ran its after-commit increment (killed), so no one
    recorded a repair: its mark, left in Redis before COMMIT, outlives the grace."""
    settings.COUNTER_PENDING_GRACE_MS = 200
    assert check(api, reader)["used"] == "0"
    with django_capture_on_commit_callbacks(execute=False):  # the callbacks die with the process
        report(api, reader, LIMIT + 1)
    metric = BillableMetric.objects.get(code="api_calls")
    pending = counter_key(subscribed.tenant_id, metric.pk, subscribed.current_period_start) + ":pending"
    marks: list[tuple[bytes, float]] = get_redis().zrange(pending, 0, 0, withscores=True)  # type: ignore[assignment]
    marked_at = marks[0][1]
    wait_until(lambda: redis_ms() - marked_at > 200, "the mark is past the grace")
    body = check(api, reader)
    assert (body["allowed"], body["used"]) == (False, str(LIMIT + 1))
    assert get_redis().zcard(pending) == 0  # the stale mark went with the counter


def test_a_writer_that_finishes_clears_its_mark_and_counts(api, reader, subscribed, django_capture_on_commit_callbacks):
    assert check(api, reader)["used"] == "0"
    with django_capture_on_commit_callbacks(execute=True):
        report(api, reader, 2)
    metric = BillableMetric.objects.get(code="api_calls")
    pending = counter_key(subscribed.tenant_id, metric.pk, subscribed.current_period_start) + ":pending"
    assert get_redis().zcard(pending) == 0
    assert cached_counter(subscribed) == 2  # incremented, not dropped
    assert served({"tenant": "acme", "feature": "api"}, key=reader)[2]["used"] == "2"


def test_the_reconciliation_never_overwrites_an_increment_made_since_it_read(subscribed):
    """It read PostgreSQL, then SET the counter: an increment applied in between was lost
    (a low counter, trusted until the next run). It now corrects only a counter still at
    the value it read, with no writer between COMMIT and increment."""
    from usage.counters import RECONCILE

    metric = BillableMetric.objects.get(code="api_calls")
    key = counter_key(subscribed.tenant_id, metric.pk, subscribed.current_period_start)
    client = get_redis()
    client.set(key, 5 * int(MICRO))
    read_before = str(5 * int(MICRO))
    client.incrby(key, int(MICRO))  # a writer's increment after the reconciliation read
    assert client.eval(RECONCILE, 1, key, read_before, 0, 60, 5000) == 0
    assert int(client.get(key) or 0) == 6 * int(MICRO)  # kept
    client.zadd(f"{key}:pending", {"writer": redis_ms()})  # a writer between COMMIT and increment
    assert client.eval(RECONCILE, 1, key, str(6 * int(MICRO)), 0, 60, 5000) == 0
    client.zadd(f"{key}:pending", {"writer": redis_ms() - 10_000})  # …that died long ago
    assert client.eval(RECONCILE, 1, key, str(6 * int(MICRO)), 0, 60, 5000) == 1
    assert int(client.get(key) or -1) == 0


def test_a_counter_past_64_bits_is_dropped_and_answered_from_postgresql(
    api, reader, subscribed, django_capture_on_commit_callbacks
):
    """One event of 10^13 tokens made every later increment fail: each wrote a repair and
    marked the process suspect, although Redis answered."""
    body = {"tenant": "acme", "feature": "tokens"}
    assert api.post("/api/v1/entitlements/check", body, format="json", **reader.header).json()["used"] == "0"
    events = [{"tenant": "acme", "metric": "tokens", "quantity": "10000000000000", "idempotency_key": "huge"}]
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/usage/events", {"events": events}, format="json", **reader.header)
        api.post(
            "/api/v1/usage/events",
            {"events": [{**events[0], "quantity": "1", "idempotency_key": "small"}]},
            format="json",
            **reader.header,
        )
    assert not CounterRepair.objects.exists()
    assert usage.counters.counters_suspect() is False
    answer = api.post("/api/v1/entitlements/check", body, format="json", **reader.header).json()
    assert answer["used"] == "10000000000001"
