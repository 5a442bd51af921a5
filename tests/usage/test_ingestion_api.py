"""POST /api/v1/usage/events: every case of API.md's Usage table, single and batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import DatabaseError, transaction

from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db]
URL = "/api/v1/usage/events"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)  # the events below happen on this day


@pytest.fixture(autouse=True)
def _clock():
    # a fixed clock: whether an event is in the future or too old must not depend on the day the suite runs
    with time_machine.travel(NOW, tick=False):
        yield


def event(**overrides):
    body = {
        "tenant": "acme",
        "metric": "ai_tokens",
        "quantity": "1500",
        "idempotency_key": "req-7f3a",
        "occurred_at": "2026-11-25T10:00:00Z",
        "properties": {"model": "large"},
        "correlation_id": "trace-abc",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def send(api, key, body):
    return api.post(URL, body, format="json", **key.header)


def code(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


def test_new_event_is_201_accepted_and_stored_as_sent(api, reporter):
    response = send(api, reporter, event())
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "accepted"
    stored = UsageEvent.objects.get(pk=body["id"])
    assert stored.quantity == Decimal("1500")
    assert stored.properties == {"model": "large"}
    assert stored.occurred_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert stored.correlation_id == "trace-abc"
    assert stored.reported_by_id == reporter.key.pk  # from the key, never the body
    assert stored.received_at is not None


def test_same_key_same_payload_is_200_duplicate_with_the_first_id(api, reporter):
    first = send(api, reporter, event()).json()["id"]
    again = send(api, reporter, event(correlation_id="retry-trace"))  # tracing metadata may differ
    assert again.status_code == 200
    assert again.json() == {"id": first, "status": "duplicate"}
    assert UsageEvent.objects.count() == 1


def test_same_key_different_payload_is_409(api, reporter):
    send(api, reporter, event())
    assert code(send(api, reporter, event(quantity="1501")), 409) == "idempotency_conflict"
    assert UsageEvent.objects.get().quantity == Decimal("1500")


def test_the_same_key_under_another_tenant_is_another_event(api, reporter):
    send(api, reporter, event())
    assert send(api, reporter, event(tenant="globex")).status_code == 201


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"tenant": "nobody"}, 400, "unknown_tenant"),
        ({"metric": "bananas"}, 400, "unknown_metric"),
        ({"quantity": "-1"}, 400, "invalid_quantity"),
        ({"quantity": "lots"}, 400, "invalid_quantity"),
        ({"quantity": True}, 400, "invalid_quantity"),
        ({"quantity": "0.0000001"}, 400, "invalid_quantity"),
        ({"quantity": "1e30"}, 400, "invalid_quantity"),
        ({"properties": {"model": "large", "email": "a@b.c"}}, 400, "undeclared_property"),
        ({"idempotency_key": None}, 400, "validation_error"),
        ({"occurred_at": "yesterday"}, 400, "validation_error"),
        ({"occurred_at": "2026-11-25T10:00:00"}, 400, "validation_error"),  # no offset
        ({"occurred_at": "2026-02-30T00:00:00Z"}, 400, "validation_error"),  # no such day
        ({"occurred_at": "0001-01-01T00:00:00+01:00"}, 400, "validation_error"),  # before year 1 in UTC
        ({"quantity": "1000000000000000000000000"}, 400, "invalid_quantity"),  # 1e24: past the column
        ({"idempotency_key": "nul\u0000byte"}, 400, "validation_error"),
        ({"properties": {"model": "x" * 300}}, 400, "validation_error"),
        ({"properties": {"model": 10**300}}, 400, "validation_error"),
        ({"properties": {"model": "nul\u0000"}}, 400, "validation_error"),
    ],
)
def test_bad_events_are_refused_and_nothing_is_stored(api, reporter, overrides, status, error):
    assert code(send(api, reporter, event(**overrides)), status) == error
    assert not UsageEvent.objects.exists()


def test_occurred_at_more_than_five_minutes_ahead_is_refused(api, reporter):
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    later = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    assert send(api, reporter, event(occurred_at=soon, idempotency_key="a")).status_code == 201
    assert code(send(api, reporter, event(occurred_at=later, idempotency_key="b")), 400) == "occurred_at_in_future"


def test_occurred_at_defaults_to_the_time_received(api, reporter):
    pk = send(api, reporter, event(occurred_at=None)).json()["id"]
    stored = UsageEvent.objects.get(pk=pk)
    # the service's clock, the one that chose the event's period and counter (frozen at NOW
    # here), never the database's now(), which is another clock
    assert stored.occurred_at == NOW
    assert stored.received_at is not None


def test_a_metric_the_key_may_not_report_is_403(api, make_key, usage_world):
    key = make_key("service", scopes=["usage:write"], metrics=["api_calls"])
    assert code(send(api, key, event()), 403) == "metric_not_allowed"


def test_offsets_are_stored_in_utc(api, reporter):
    pk = send(api, reporter, event(occurred_at="2026-11-25T11:00:00+01:00")).json()["id"]
    assert UsageEvent.objects.get(pk=pk).occurred_at == datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_the_largest_quantities_are_stored_exactly(api, reporter):
    # 15 digits and 6 decimals, the most an event may carry
    pk = send(api, reporter, event(quantity="999999999999999.123456")).json()["id"]
    assert UsageEvent.objects.get(pk=pk).quantity == Decimal("999999999999999.123456")
    refused = send(api, reporter, event(quantity="1000000000000000", idempotency_key="too-big"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_quantity")


def test_trailing_zeros_do_not_count_as_decimals(api, reporter):
    assert send(api, reporter, event(quantity="1.500000000")).status_code == 201


def test_numbers_are_accepted_for_quantity(api, reporter):
    pk = send(api, reporter, event(quantity=12.5)).json()["id"]
    assert UsageEvent.objects.get(pk=pk).quantity == Decimal("12.5")


class TestBatch:
    def test_each_event_is_decided_on_its_own(self, api, reporter):
        send(api, reporter, event(idempotency_key="old"))
        batch = {
            "events": [
                event(idempotency_key="new-1"),
                event(idempotency_key="old"),  # duplicate of a stored event
                event(idempotency_key="old", quantity="9"),  # conflicts with it
                event(idempotency_key="bad", metric="bananas"),
                event(idempotency_key="new-2", metric="api_calls", quantity="1", properties={"endpoint": "/v1/chat"}),
                event(idempotency_key="new-1"),  # repeated inside the batch
            ]
        }
        response = send(api, reporter, batch)
        assert response.status_code == 200
        body = response.json()
        statuses = [(r["index"], r["status"]) for r in body["results"]]
        assert statuses == [
            (0, "accepted"),
            (1, "duplicate"),
            (2, "rejected"),
            (3, "rejected"),
            (4, "accepted"),
            (5, "duplicate"),
        ]
        results = body["results"]
        assert results[2]["error"]["code"] == "idempotency_conflict"
        assert results[3]["error"]["code"] == "unknown_metric"
        assert results[5]["id"] == results[0]["id"]
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 2)
        assert UsageEvent.objects.count() == 3

    def test_more_than_1000_events_is_413(self, api, reporter):
        batch = {"events": [event(idempotency_key=f"k{i}") for i in range(1001)]}
        assert code(send(api, reporter, batch), 413) == "batch_too_large"
        assert not UsageEvent.objects.exists()

    def test_a_full_batch_is_one_statement(self, api, reporter, django_assert_max_num_queries):
        batch = {"events": [event(idempotency_key=f"k{i}") for i in range(1000)]}
        send(api, reporter, {"events": batch["events"][:1]})  # warm the key cache
        with django_assert_max_num_queries(8):
            response = send(api, reporter, batch)
        assert response.json()["accepted"] == 999  # k0 was sent above
        assert UsageEvent.objects.count() == 1000

    def test_an_empty_batch_is_400(self, api, reporter):
        assert code(send(api, reporter, {"events": []}), 400) == "validation_error"


def test_events_are_append_only(api, reporter):
    pk = send(api, reporter, event()).json()["id"]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        UsageEvent.objects.filter(pk=pk).update(quantity=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        UsageEvent.objects.filter(pk=pk).delete()


def test_agent_keys_cannot_report_usage(api, agent_key, usage_world):
    assert code(send(api, agent_key, event()), 403) == "agent_write_forbidden"


def test_an_event_for_a_closed_period_is_stored_and_flagged_late(api, reporter):
    import time_machine

    from subscriptions.periods import utc
    from subscriptions.services import subscription_create, subscriptions_roll_due, tenant_upsert

    initech = tenant_upsert(external_id="initech", name="Initech", currency="USD")[0]
    with time_machine.travel(utc(2025, 10, 1), tick=False):
        subscription_create(tenant=initech, plan_code="enterprise", actor="t")
    with time_machine.travel(utc(2026, 11, 25), tick=False):
        subscriptions_roll_due()  # the first yearly period closed on 2026-10-01
    late = send(api, reporter, event(tenant="initech", occurred_at="2026-09-30T23:59:59Z", idempotency_key="old-one"))
    on_time = send(
        api, reporter, event(tenant="initech", occurred_at="2026-10-01T00:00:00Z", idempotency_key="new-one")
    )
    assert (late.status_code, late.json().get("late")) == (201, True)
    assert on_time.json().get("late") is None
    assert UsageEvent.objects.get(pk=late.json()["id"]).late is True
    assert UsageEvent.objects.get(pk=on_time.json()["id"]).late is False


def test_a_subscribed_tenants_batch_keeps_every_key(api, reporter):
    # (a regression: the entitlement counter's key once shadowed the idempotency key)
    from subscriptions.services import subscription_create, tenant_upsert

    initech = tenant_upsert(external_id="initech", name="Initech", currency="USD")[0]
    subscription_create(tenant=initech, plan_code="enterprise", actor="t")
    batch = {"events": [event(tenant="initech", idempotency_key=f"k{i}", occurred_at=None) for i in range(4)]}
    assert send(api, reporter, batch).json()["accepted"] == 4
    assert UsageEvent.objects.count() == 4


class TestOutsideEveryPeriod:
    """Usage that no billing period holds could never be billed: it is refused with 400
    `no_billing_period`, never accepted and dropped (it was stored, and billed by nobody)."""

    @staticmethod
    def initech(*, start=None, cancel_at=None):
        import time_machine

        from subscriptions.services import subscription_cancel, subscription_create, tenant_upsert

        tenant = tenant_upsert(external_id="initech", name="Initech", currency="USD")[0]
        if start is not None:
            with time_machine.travel(start, tick=False):
                subscription_create(tenant=tenant, plan_code="enterprise", actor="t")
        if cancel_at is not None:
            subscription_cancel(tenant=tenant, at_period_end=False, actor="t", at=cancel_at)
        return tenant

    def test_a_tenant_without_a_subscription(self, api, reporter):
        self.initech()
        response = send(api, reporter, event(tenant="initech", occurred_at=None))
        assert code(response, 400) == "no_billing_period"
        assert response.json()["error"]["details"] == {"tenant": "initech", "occurred_at": NOW.isoformat()}
        assert not UsageEvent.objects.exists()

    def test_before_the_subscription_started(self, api, reporter):
        self.initech(start=NOW - timedelta(days=10))
        before = (NOW - timedelta(days=10, seconds=1)).isoformat()
        assert code(send(api, reporter, event(tenant="initech", occurred_at=before)), 400) == "no_billing_period"
        at_start = (NOW - timedelta(days=10)).isoformat()
        assert send(api, reporter, event(tenant="initech", occurred_at=at_start)).status_code == 201

    def test_after_the_subscription_ended(self, api, reporter):
        self.initech(start=NOW - timedelta(days=20), cancel_at=NOW - timedelta(days=5))
        during = (NOW - timedelta(days=6)).isoformat()
        after = (NOW - timedelta(days=5)).isoformat()
        assert send(api, reporter, event(tenant="initech", occurred_at=during, idempotency_key="d")).status_code == 201
        refused = send(api, reporter, event(tenant="initech", occurred_at=after, idempotency_key="a"))
        assert code(refused, 400) == "no_billing_period"
        assert code(send(api, reporter, event(tenant="initech", occurred_at=None, idempotency_key="n")), 400) == (
            "no_billing_period"
        )

    def test_in_a_batch_only_that_event_is_rejected(self, api, reporter):
        self.initech()
        batch = {"events": [event(idempotency_key="ok"), event(tenant="initech", idempotency_key="no")]}
        body = send(api, reporter, batch).json()
        assert (body["accepted"], body["rejected"]) == (1, 1)
        assert body["results"][1]["error"]["code"] == "no_billing_period"


class TestTooOld:
    """An event older than the re-pricing window could never be billed: it is refused,
    never accepted and dropped. The window is inclusive at its edge, as the period close's
    `period_end >= now - LATE_USAGE_WINDOW_DAYS` is."""

    def test_an_event_older_than_the_window_is_400_and_not_stored(self, api, reporter, settings):
        settings.LATE_USAGE_WINDOW_DAYS = 90
        edge = NOW - timedelta(days=90)
        response = send(api, reporter, event(occurred_at=(edge - timedelta(microseconds=1)).isoformat()))
        assert code(response, 400) == "occurred_at_too_old"
        error = response.json()["error"]
        assert error["details"] == {
            "occurred_at": "2026-08-27T11:59:59.999999+00:00",
            "oldest_accepted": "2026-08-27T12:00:00+00:00",
            "window_days": 90,
        }
        assert "90 days" in error["message"]
        assert not UsageEvent.objects.exists()

    def test_an_event_at_the_edge_of_the_window_is_accepted(self, api, reporter, settings):
        settings.LATE_USAGE_WINDOW_DAYS = 90
        edge = (NOW - timedelta(days=90)).isoformat()
        assert send(api, reporter, event(occurred_at=edge)).status_code == 201

    def test_the_window_is_the_setting(self, api, reporter, settings):
        settings.LATE_USAGE_WINDOW_DAYS = 10
        eleven_days = (NOW - timedelta(days=11)).isoformat()
        assert code(send(api, reporter, event(occurred_at=eleven_days)), 400) == "occurred_at_too_old"
        nine_days = (NOW - timedelta(days=9)).isoformat()
        assert send(api, reporter, event(occurred_at=nine_days, idempotency_key="k2")).status_code == 201

    def test_in_a_batch_it_is_one_rejected_result(self, api, reporter, settings):
        settings.LATE_USAGE_WINDOW_DAYS = 90
        old = (NOW - timedelta(days=91)).isoformat()
        batch = {"events": [event(idempotency_key="a"), event(idempotency_key="b", occurred_at=old)]}
        body = send(api, reporter, batch).json()
        assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
        assert body["results"][1]["error"]["code"] == "occurred_at_too_old"
        assert UsageEvent.objects.count() == 1


class TestCountMetrics:
    """An event of a `count` metric is one occurrence: a quantity other than 1 would be
    silently counted as 1, so it is refused; an absent quantity is 1."""

    def count_event(self, **overrides):
        return event(**{"metric": "api_calls", "quantity": None, "properties": {"endpoint": "/v1/chat"}, **overrides})

    @pytest.mark.parametrize("quantity", ["500", "0", "2", "0.5"])
    def test_a_quantity_other_than_1_is_400_and_not_stored(self, api, reporter, quantity):
        response = send(api, reporter, self.count_event(quantity=quantity))
        assert code(response, 400) == "invalid_quantity"
        error = response.json()["error"]
        assert "counts events" in error["message"]
        assert error["details"] == {"quantity": quantity, "metric": "api_calls", "aggregation": "count"}
        assert not UsageEvent.objects.exists()

    @pytest.mark.parametrize("quantity", ["1", "1.000", 1, None])
    def test_1_or_no_quantity_is_one_event_of_quantity_1(self, api, reporter, quantity):
        response = send(api, reporter, self.count_event(quantity=quantity))
        assert response.status_code == 201, response.content
        assert UsageEvent.objects.get(pk=response.json()["id"]).quantity == 1

    def test_a_summed_metric_still_needs_its_quantity(self, api, reporter):
        assert code(send(api, reporter, event(quantity=None)), 400) == "invalid_quantity"

    def test_in_a_batch_it_is_one_rejected_result(self, api, reporter):
        batch = {"events": [self.count_event(idempotency_key="a"), self.count_event(idempotency_key="b", quantity="3")]}
        body = send(api, reporter, batch).json()
        assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
        assert body["results"][1]["error"]["code"] == "invalid_quantity"
