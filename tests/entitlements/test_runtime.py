"""Entitlements at runtime: fresh counters, zero SQL when warm, correct answers with Redis
down, an atomic consume under concurrency, and counter reconciliation."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from billing_project.api_keys import ApiPrincipal
from billing_project.redis_client import get_redis
from entitlements.models import ConsumeRecord, ReconciliationRun
from entitlements.services import counters_reconcile, entitlement_check, entitlement_consume
from plans.models import BillableMetric
from tests.subscriptions.test_races import race
from usage.counters import MICRO, counter_key
from usage.models import UsageEvent


def check(api, key, feature, quantity="1"):
    response = api.post(
        "/api/v1/entitlements/check",
        {"tenant": "acme", "feature": feature, "quantity": quantity},
        format="json",
        **key.header,
    )
    assert response.status_code == 200, response.content
    return response.json()


def report(api, key, metric, keys, **extra):
    events = [{"tenant": "acme", "metric": metric, "quantity": "1", "idempotency_key": k, **extra} for k in keys]
    response = api.post("/api/v1/usage/events", {"events": events}, format="json", **key.header)
    assert response.json()["accepted"] == len(keys)


@pytest.mark.django_db(transaction=True)
def test_reported_usage_is_visible_within_a_second(api, reader, subscribed):
    assert check(api, reader, "api")["used"] == "0"  # the counter exists now
    report(api, reader, "api_calls", ["a", "b", "c"])
    started = time.monotonic()
    while check(api, reader, "api")["used"] != "3":
        assert time.monotonic() - started < 1.0, "usage not visible within a second"
        time.sleep(0.02)
    report(api, reader, "seats", ["s1", "s2", "s3"], properties={"user_ref": "u1"})
    report(api, reader, "seats", ["s4"], properties={"user_ref": "u2"})
    assert check(api, reader, "seats")["used"] == "2"  # distinct users, not events


@pytest.mark.django_db
def test_a_warm_check_runs_no_sql(api, reader, subscribed, django_assert_num_queries):
    check(api, reader, "api")  # warms the key, the context and the counter
    check(api, reader, "chat")
    with django_assert_num_queries(0):
        body = check(api, reader, "api")
        check(api, reader, "chat")
    assert body["reason"] == "ok"


@pytest.mark.django_db
def test_a_warm_check_is_one_redis_round_trip(api, reader, subscribed, monkeypatch):
    check(api, reader, "api")  # warm
    sends = []
    real_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        sends.append(command)
        return real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)
    body = check(api, reader, "api", quantity="2")
    assert len(sends) == 1, sends  # key, rate count, context and counter in one pipeline
    assert body["reason"] == "ok"
    assert body["used"] == "0"


@pytest.mark.django_db
def test_a_check_survives_redis_forgetting_its_scripts(api, reader, subscribed):
    """After a Redis restart (SCRIPT FLUSH) the prefetched EVALSHA fails with NOSCRIPT:
    the check must reload the script and answer the same, never fail or allow by error."""
    report(api, reader, "api_calls", ["a", "b"])
    assert check(api, reader, "api")["used"] == "2"
    get_redis().script_flush()
    again = check(api, reader, "api")
    assert again["used"] == "2"
    assert again["reason"] == "ok"
    assert check(api, reader, "api")["used"] == "2"  # and the reloaded script serves the next


@pytest.mark.django_db
def test_a_prefetch_for_another_body_is_never_used(api, reader, subscribed):
    """The prefetch peeks at the raw body; a body it reads differently from the parser
    (duplicate keys: both take the last, but nothing may rely on it) must not leak a
    different feature's answer."""
    check(api, reader, "api")
    raw = '{"tenant": "acme", "feature": "chat", "feature": "api", "quantity": "1"}'
    response = api.post("/api/v1/entitlements/check", raw, content_type="application/json", **reader.header)
    assert response.status_code == 200
    assert response.json()["feature"] == "api"


@pytest.mark.django_db
def test_with_redis_down_checks_answer_from_postgresql(api, reader, subscribed, settings):
    report(api, reader, "api_calls", ["a", "b", "c", "d", "e"])  # the limit is 5
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    body = check(api, reader, "api")
    assert (body["allowed"], body["reason"], body["used"]) == (False, "limit_exceeded", "5")
    assert check(api, reader, "chat")["allowed"] is True
    assert check(api, reader, "tokens", "50")["reason"] == "ok"


@pytest.mark.django_db
def test_a_stale_counter_is_corrected_and_counted(api, reader, subscribed, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the increments after commit, as in production
        report(api, reader, "api_calls", ["a", "b"])
    assert check(api, reader, "api")["used"] == "2"
    metric = BillableMetric.objects.get(code="api_calls")
    key = counter_key(subscribed.tenant_id, metric.pk, subscribed.current_period_start)
    get_redis().set(key, int(Decimal(9) * MICRO))  # drift (a lost update, a restore…)
    assert check(api, reader, "api")["used"] == "9"
    run = counters_reconcile()
    assert run.corrected == 1
    assert run.checked >= 1
    assert ReconciliationRun.objects.filter(corrected=1).exists()
    assert check(api, reader, "api")["used"] == "2"
    assert counters_reconcile().corrected == 0


@pytest.mark.django_db
def test_consume_records_when_allowed_and_nothing_when_denied(api, reader, subscribed):
    def consume(key, quantity="1"):
        return api.post(
            "/api/v1/entitlements/consume",
            {"tenant": "acme", "feature": "api", "quantity": quantity, "idempotency_key": key},
            format="json",
            **reader.header,
        )

    first = consume("c1", "4")
    assert first.status_code == 201
    body = first.json()
    assert (body["allowed"], body["used"], body["remaining"]) == (True, "4", "1")
    assert UsageEvent.objects.count() == 4  # a counted feature: four uses are four events
    denied = consume("c2", "2")
    assert (denied.status_code, denied.json()["reason"]) == (200, "limit_exceeded")
    assert UsageEvent.objects.count() == 4
    # a repeated key answers as the first time did, even once the answer would differ
    again = consume("c1", "4")
    assert (again.status_code, again.json()) == (201, body)
    assert consume("c2", "2").json() == denied.json()
    assert ConsumeRecord.objects.count() == 2


@pytest.mark.django_db
def test_consume_of_a_summed_feature_records_one_event_of_that_quantity(api, reader, subscribed):
    response = api.post(
        "/api/v1/entitlements/consume",
        {"tenant": "acme", "feature": "tokens", "quantity": "40.5", "idempotency_key": "t1"},
        format="json",
        **reader.header,
    )
    assert response.status_code == 201
    assert UsageEvent.objects.get(pk=response.json()["id"]).quantity == Decimal("40.5")


@pytest.mark.django_db
def test_consume_refuses_what_does_not_add_up(api, reader, subscribed):
    for feature, quantity, code in [
        ("seats", "1", "validation_error"),
        ("chat", "1", "validation_error"),
        ("api", "1.5", "invalid_quantity"),
    ]:
        response = api.post(
            "/api/v1/entitlements/consume",
            {"tenant": "acme", "feature": feature, "quantity": quantity, "idempotency_key": "z"},
            format="json",
            **reader.header,
        )
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)


@pytest.mark.django_db
def test_agent_keys_cannot_consume(api, agent_key, subscribed):
    response = api.post(
        "/api/v1/entitlements/consume",
        {"tenant": "acme", "feature": "api", "quantity": "1", "idempotency_key": "x"},
        format="json",
        **agent_key.header,
    )
    assert response.json()["error"]["code"] == "agent_write_forbidden"
    assert (
        api.post(
            "/api/v1/entitlements/check", {"tenant": "acme", "feature": "api"}, format="json", **agent_key.header
        ).status_code
        == 200
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_consumes_admit_exactly_the_limit(reader, subscribed):
    principal = ApiPrincipal.from_key(reader.key)
    keys = iter(f"k{i}" for i in range(100))
    taken = [next(keys) for _ in range(12)]
    index = iter(range(12))

    def consume():
        return entitlement_consume(
            principal=principal, tenant="acme", feature="api", quantity=Decimal(1), idempotency_key=taken[next(index)]
        )

    results, errors = race(consume, 12)
    assert errors == []
    assert sorted(result.recorded for result in results) == [False] * 7 + [True] * 5  # the limit is 5
    assert UsageEvent.objects.count() == 5
    assert entitlement_check(tenant="acme", feature="api", quantity=Decimal(1))["reason"] == "limit_exceeded"


@pytest.mark.django_db
def test_consume_of_a_metric_the_key_may_not_report_is_403_and_records_nothing(api, make_key, subscribed):
    narrow = make_key("service", scopes=["entitlements:read", "usage:write"], metrics=["seats"])
    response = api.post(
        "/api/v1/entitlements/consume",
        {"tenant": "acme", "feature": "api", "quantity": "1", "idempotency_key": "n1"},
        format="json",
        **narrow.header,
    )
    assert response.status_code == 403  # as the usage API answers the same rule
    assert response.json()["error"]["code"] == "metric_not_allowed"
    assert not UsageEvent.objects.exists()
    assert not ConsumeRecord.objects.exists()
