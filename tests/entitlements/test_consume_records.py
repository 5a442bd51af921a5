"""A consume's record is its own: every unit it admits is a unit recorded, in an
idempotency space no reported event can occupy (usage.ingestion.usage_record_consumed).

Before, a counted feature's N uses were written as reported events keyed `key`, `key:2`
… `key:N`, truncated to 255 characters, and a `duplicate` answer counted as success:
255-character keys admitted uses that were never stored, `consume k` then `consume k:2`
wrote nothing for the second, and `consume req-1` after a usage event `req-1` answered
from the event that already existed."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitlements.models import ConsumeRecord
from plans.models import BillableMetric
from subscriptions.services import subscription_create, tenant_upsert
from tests.entitlements.conftest import SUBSCRIBED_AT
from usage.models import UsageEvent, UsageEventKey

pytestmark = [pytest.mark.django_db]
CONSUME = "/api/v1/entitlements/consume"
EVENTS = "/api/v1/usage/events"


def consume(api, key, idem, *, feature="api", quantity="1", tenant="acme"):
    body = {"tenant": tenant, "feature": feature, "quantity": quantity, "idempotency_key": idem}
    return api.post(CONSUME, body, format="json", **key.header)


def recorded(metric="api_calls", tenant="acme"):
    """What PostgreSQL holds for the metric: what billing will invoice and limits count."""
    events = UsageEvent.objects.filter(tenant__external_id=tenant, metric__code=metric)
    if BillableMetric.objects.get(code=metric).aggregation == "count":
        return Decimal(events.count())
    return events.aggregate(total=Sum("quantity"))["total"] or Decimal(0)


def test_long_keys_that_only_differ_at_the_end_record_every_use(api, reader, subscribed):
    """With 255-character keys, `key:2` truncated back to `key`: a consume of 2 stored 1."""
    base = "k" * 254
    assert consume(api, reader, base + "a", quantity="2").status_code == 201
    assert consume(api, reader, base + "b", quantity="2").status_code == 201
    assert recorded() == 4
    third = consume(api, reader, base + "c", quantity="2")  # 4 + 2 > the limit of 5
    assert (third.status_code, third.json()["allowed"], third.json()["used"]) == (200, False, "4")
    assert recorded() == 4


def test_a_key_that_looks_like_another_consumes_use_is_its_own_consume(api, reader, subscribed):
    first = consume(api, reader, "k", quantity="3")
    assert (first.status_code, first.json()["used"]) == (201, "3")
    second = consume(api, reader, "k:2", quantity="1")  # was the first's second use: "used 4", nothing written
    assert (second.status_code, second.json()["used"]) == (201, "4")
    assert recorded() == 4
    assert UsageEvent.objects.get(pk=second.json()["id"]).idempotency_key == "k:2"
    assert consume(api, reader, "k:3", quantity="2").json()["allowed"] is False  # 4 + 2 > 5


def test_a_consume_after_a_usage_event_with_its_key_records_its_own_use(api, reader, subscribed):
    event = {"tenant": "acme", "metric": "api_calls", "idempotency_key": "req-1"}
    reported = api.post(EVENTS, event, format="json", **reader.header)
    assert reported.status_code == 201
    consumed = consume(api, reader, "req-1")
    assert consumed.status_code == 201, consumed.content
    assert consumed.json()["id"] != reported.json()["id"]  # not the event that already existed
    assert consumed.json()["used"] == "2"
    assert recorded() == 2
    # and the reported space is untouched: the service's key still answers as its own event
    again = api.post(EVENTS, event, format="json", **reader.header)
    assert (again.status_code, again.json()["id"]) == (200, reported.json()["id"])


def test_a_usage_event_after_a_consume_with_its_key_is_its_own_event(api, reader, subscribed):
    consumed = consume(api, reader, "c-1", quantity="2")
    assert consumed.status_code == 201
    for key in ("c-1", "c-1:2"):
        event = {"tenant": "acme", "metric": "api_calls", "idempotency_key": key}
        response = api.post(EVENTS, event, format="json", **reader.header)
        assert (response.status_code, response.json()["status"]) == (201, "accepted"), response.content
    assert recorded() == 4


def test_a_summed_feature_records_one_event_of_the_quantity(api, reader, subscribed):
    consumed = consume(api, reader, "t" * 255, feature="tokens", quantity="12.5")
    assert consumed.status_code == 201
    event = UsageEvent.objects.get(pk=consumed.json()["id"])
    assert (event.origin, event.use, event.quantity, event.idempotency_key) == (
        "consume",
        1,
        Decimal("12.5"),
        "t" * 255,
    )
    assert recorded("tokens") == Decimal("12.5")


def test_the_database_keeps_the_two_spaces_apart(reader, subscribed):
    """Below the ORM, in the key table every event's key lives in (whatever month's
    partition the event is in): a reported event and a consume's use may share a key; two
    reported events, or two of one consume's uses, may not; a reported event has use 1."""
    from django.db import IntegrityError, transaction

    common = {"tenant": subscribed.tenant, "idempotency_key": "same", "payload_hash": "x"}
    UsageEventKey.objects.create(event_id=1, origin="reported", **common)
    UsageEventKey.objects.create(event_id=2, origin="consume", use=1, **common)
    UsageEventKey.objects.create(event_id=3, origin="consume", use=2, **common)
    extras: list[dict[str, Any]] = [
        {"origin": "reported"},
        {"origin": "consume", "use": 2},
        {"origin": "reported", "use": 2},
    ]
    for n, extra in enumerate(extras):
        with pytest.raises(IntegrityError), transaction.atomic():
            UsageEventKey.objects.create(event_id=10 + n, **common, **extra)


# ------------------------------------------------------------------ the property
# Keys from a tiny alphabet, with the suffixes the old scheme wrote and at the column's
# full length, so that every kind of collision the old scheme had is likely.
KEYS = st.one_of(
    st.sampled_from(["a", "b", "a:2", "a:3", "b:2"]),
    # 255 characters: `key:2` truncated to 255 was `key` itself
    st.builds(lambda c: "z" * 254 + c, st.sampled_from("xy")),
    st.builds(lambda c, n: "z" * 252 + c + f":{n}", st.sampled_from("xy"), st.integers(2, 3)),
)
STEPS = st.lists(
    st.tuples(st.sampled_from(["consume", "consume", "report"]), KEYS, st.integers(1, 3)), min_size=1, max_size=12
)
tenants = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_what_consumes_admit_is_what_is_recorded_under_any_keys(api, reader, world, clock, steps):
    """Whatever keys clients send to consume and to the usage API: the units consumes
    admitted (each key once) are exactly the consume's own stored uses, every answer's
    `used` is what PostgreSQL then holds, and a hard limit is never passed by consumes."""
    name = f"p{next(tenants)}"
    tenant = tenant_upsert(external_id=name, name=name, currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="basic", actor="test", at=SUBSCRIBED_AT)
    admitted = Decimal(0)
    reported = Decimal(0)
    for kind, key, quantity in steps:
        if kind == "report":
            event = {"tenant": name, "metric": "api_calls", "idempotency_key": key}
            body = api.post(EVENTS, event, format="json", **reader.header).json()
            reported += 1 if body["status"] == "accepted" else 0
            continue
        first_time = not ConsumeRecord.objects.filter(tenant=tenant, idempotency_key=key).exists()
        response = consume(api, reader, key, quantity=str(quantity), tenant=name)
        assert response.status_code in (200, 201, 409), response.content
        if response.status_code == 201 and first_time:
            admitted += quantity
            assert Decimal(response.json()["used"]) == recorded(tenant=name)
        if response.status_code == 201 and not first_time:  # a repeat records nothing more
            assert ConsumeRecord.objects.get(tenant=tenant, idempotency_key=key).quantity == quantity
    own = UsageEvent.objects.filter(tenant=tenant, origin="consume").count()
    assert own == admitted
    assert recorded(tenant=name) == admitted + reported
    assert (
        sum(r.quantity for r in ConsumeRecord.objects.filter(tenant=tenant, recorded=True) if r.quantity is not None)
        == admitted
    )
    if reported == 0:
        assert admitted <= 5  # the plan's hard limit on api


def test_keys_that_differ_only_in_white_space_are_different_consumes(api, reader, subscribed):
    """DRF trimmed the consume key: "job-7", "job-7 ", " job-7" and "job-7\\t" were one
    record, so each admitted again what the first had recorded once."""
    answers = [consume(api, reader, key, quantity="2") for key in ("job-7", "job-7 ", " job-7", "job-7\t")]
    assert [a.json()["allowed"] for a in answers] == [True, True, False, False]  # 2 + 2 of 5; then over
    assert recorded() == 4
    assert sorted(ConsumeRecord.objects.values_list("idempotency_key", flat=True)) == sorted(
        ["job-7", "job-7 ", " job-7", "job-7\t"]
    )
