"""usage_usageevent is range-partitioned by month (issue 17, part 4): each event lies in its
month's partition; the idempotency guarantee holds across partitions (the key table); the
beat job makes partitions ahead and moves events the default partition caught into their
month, losing and doubling nothing; a month is detached only once no billing will read it
again, and a retry of a detached event is still a duplicate."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from billing_project.api_keys import ApiPrincipal
from billing_project.errors import Conflict
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription
from subscriptions.services import subscription_cancel, subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo
from tests.subscriptions.test_races import race
from usage.aggregation import usage_aggregate_all
from usage.ingestion import Outcome, usage_record
from usage.models import DetachedUsagePartition, UsageEvent, UsageEventKey, UsageRollup
from usage.partitions import (
    DEFAULT,
    PartitionsBlocked,
    default_partition_events,
    months_ahead,
    partition_detach,
    partitions_ensure,
    partitions_list,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

NOV = datetime(2026, 11, 25, 12, tzinfo=UTC)


def event(key: str, at: str, quantity: str = "10", tenant: str = "acme") -> dict[str, str]:
    return {"tenant": tenant, "metric": "ai_tokens", "quantity": quantity, "idempotency_key": key, "occurred_at": at}


def home(event_id: int) -> str:
    """The partition an event is stored in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM usage_usageevent WHERE id = %s", [event_id])
        return str(cursor.fetchone()[0])


def attached() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'usage_usageevent'::regclass"
        )
        return {name for (name,) in cursor.fetchall()}


def snapshot() -> list[tuple[int, int, str, object]]:
    return list(UsageEvent.objects.order_by("id").values_list("id", "tenant_id", "idempotency_key", "quantity"))


@pytest.fixture
def principal(reporter) -> ApiPrincipal:
    return ApiPrincipal.from_key(reporter.key)


@pytest.fixture(autouse=True)
def _drop_detached_tables():
    """Partitions made here outlive the test (DDL; the suite's reset truncates rows): a
    detached month's table is dropped, so the month can be made again by the next test."""
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'usage\\_usageevent\\_y%%'"
            " AND c.relkind = 'r' AND NOT c.relispartition"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE "{name}"')


def test_each_event_lies_in_its_months_partition_and_a_month_without_one_in_the_default(principal):
    # 2033: no other test makes partitions that far ahead
    may = datetime(2033, 5, 20, 12, tzinfo=UTC)
    with time_machine.travel(may, tick=False):
        partitions_ensure(now=may)
        assert {"usage_usageevent_y2033m05", "usage_usageevent_y2033m08", DEFAULT} <= attached()
        assert "usage_usageevent_y2033m04" not in attached()
        results = usage_record(
            principal=principal,
            events=[event("apr", "2033-04-30T23:59:59Z"), event("may", "2033-05-01T00:00:00Z")],
        )
    apr_id, may_id = (r.id for r in results)
    assert apr_id is not None
    assert may_id is not None
    assert home(may_id) == "usage_usageevent_y2033m05"  # a month begins at 00:00 UTC, inclusive
    # no partition for April: the default one catches the event, accepted all the same
    assert home(apr_id) == DEFAULT
    assert default_partition_events() == 1


def test_a_key_is_taken_across_months(principal):
    """The same key with the same event is a duplicate, and with another month's event (a
    different event) a conflict: never a second row in another partition."""
    with time_machine.travel(NOV, tick=False):
        partitions_ensure(now=NOV)
        first = usage_record(principal=principal, events=[event("k", "2026-11-20T10:00:00Z")])[0]
        again = usage_record(principal=principal, events=[event("k", "2026-11-20T10:00:00Z")])[0]
        elsewhere = usage_record(principal=principal, events=[event("k", "2026-10-20T10:00:00Z")])[0]
    assert first.outcome is Outcome.ACCEPTED
    assert (again.outcome, again.id) == (Outcome.DUPLICATE, first.id)
    assert elsewhere.outcome is Outcome.REJECTED
    assert isinstance(elsewhere.error, Conflict)
    assert elsewhere.error.code == "idempotency_conflict"
    assert UsageEvent.objects.filter(idempotency_key="k").count() == 1
    assert list(UsageEventKey.objects.filter(idempotency_key="k").values_list("event_id", flat=True)) == [first.id]


def test_the_same_key_raced_into_two_months_is_stored_once(principal):
    """Threads send one key with events of two different months at once (two partitions):
    exactly one is stored; the others are its duplicates or conflicts."""
    with time_machine.travel(NOV, tick=False):
        partitions_ensure(now=NOV)
        months = iter(["2026-11-20T10:00:00Z", "2026-12-01T00:00:00Z"] * 4)
        lock = threading.Lock()

        def send() -> object:
            with lock:
                at = next(months)
            return usage_record(principal=principal, events=[event("raced", at)])[0]

        results, errors = race(send, 8)
    assert errors == []
    accepted = [r for r in results if r.outcome is Outcome.ACCEPTED]
    assert len(accepted) == 1
    assert UsageEvent.objects.filter(idempotency_key="raced").count() == 1
    assert UsageEventKey.objects.filter(idempotency_key="raced").count() == 1
    assert all(r.outcome in (Outcome.DUPLICATE, Outcome.REJECTED) for r in results if r is not accepted[0])


def test_ensure_makes_the_months_ahead_once_and_moves_the_default_partitions_events(principal, settings):
    settings.USAGE_PARTITIONS_AHEAD = 2
    with time_machine.travel(NOV, tick=False):
        usage_record(principal=principal, events=[event("a", "2026-11-02T00:00:00Z")])
        usage_record(principal=principal, events=[event(f"b{i}", "2026-09-15T08:00:00Z", str(i)) for i in range(1, 6)])
    before = snapshot()
    sept_was_made = "usage_usageevent_y2026m09" in attached()  # only by an earlier run on this database
    assert default_partition_events() >= (0 if sept_was_made else 5)
    made = partitions_ensure(now=NOV)
    assert {"usage_usageevent_y2026m09", "usage_usageevent_y2026m11", "usage_usageevent_y2026m12"} <= attached()
    assert sept_was_made or "usage_usageevent_y2026m09" in made
    assert "usage_usageevent_y2027m01" in attached()  # this month and two ahead
    # every event kept, with its id and content, now in its month
    assert snapshot() == before
    assert default_partition_events() == 0
    assert {home(pk) for pk, *_ in before if pk} <= {"usage_usageevent_y2026m09", "usage_usageevent_y2026m11"}
    assert partitions_ensure(now=NOV) == []  # a rerun changes nothing
    assert months_ahead(now=NOV) >= 2
    # the moved events still hold their keys
    with time_machine.travel(NOV, tick=False):
        retry = usage_record(principal=principal, events=[event("b3", "2026-09-15T08:00:00Z", "3")])[0]
    assert retry.outcome is Outcome.DUPLICATE


def test_ensure_while_events_arrive_loses_and_doubles_nothing(principal):
    """Events keep arriving into the default partition while ensure moves it: each accepted
    event is stored exactly once, in its month."""
    with time_machine.travel(NOV, tick=False):
        usage_record(principal=principal, events=[event(f"pre{i}", "2026-11-10T00:00:00Z") for i in range(50)])
        stop = threading.Event()
        accepted: list[int] = []
        failures: list[BaseException] = []

        def ingest() -> None:
            from django.db import connection as own

            n = 0
            try:
                while not stop.is_set() and n < 400:
                    rs = usage_record(principal=principal, events=[event(f"live{n}", "2026-11-20T00:00:00Z")])
                    accepted.extend(r.id for r in rs if r.outcome is Outcome.ACCEPTED and r.id)
                    n += 1
            except BaseException as exc:  # noqa: BLE001  (reported below)
                failures.append(exc)
            finally:
                own.close()

        thread = threading.Thread(target=ingest)
        thread.start()
        try:
            partitions_ensure(now=NOV)
        finally:
            stop.set()
            thread.join()
    assert failures == []
    ids = list(UsageEvent.objects.values_list("id", flat=True))
    assert len(ids) == len(set(ids)) == 50 + len(accepted)
    assert set(accepted) <= set(ids)
    assert default_partition_events() == 0


def test_partitions_refuse_edits_deletes_and_truncation(principal):
    with time_machine.travel(NOV, tick=False):
        partitions_ensure(now=NOV)
        pk = usage_record(principal=principal, events=[event("a", "2026-11-20T10:00:00Z")])[0].id
    assert pk is not None
    for sql in (
        "UPDATE usage_usageevent_y2026m11 SET quantity = 0 WHERE id = %s",
        "DELETE FROM usage_usageevent_y2026m11 WHERE id = %s",
        "UPDATE usage_usageevent SET occurred_at = occurred_at - interval '1 month' WHERE id = %s",
        "DELETE FROM usage_usageeventkey WHERE event_id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [pk])
    for table in ("usage_usageevent_y2026m11", DEFAULT, "usage_usageeventkey"):
        with transaction.atomic(), connection.cursor() as c:
            c.execute("SET LOCAL billing.allow_truncate = off")  # what the suite's reset sets on
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                c.execute(f"TRUNCATE {table}")
    assert UsageEvent.objects.filter(pk=pk).exists()


# ------------------------------------------------------------------ detaching a month
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def january(db, make_key):
    """Two tenants on `pro` from 1 January 2026 (a 14-day trial, then monthly), with usage in
    January: `ended` cancels on 20 January; `live` runs on. Nothing is closed yet."""
    catalog_import(spec=catalog_validate(demo()))
    key = make_key("service", scopes=["usage:write"], metrics=["ai_tokens"])
    principal = ApiPrincipal.from_key(key.key)
    subs = {}
    with time_machine.travel(JAN, tick=False):
        partitions_ensure(now=JAN)
        for name in ("ended", "live"):
            tenant = tenant_upsert(external_id=name, name=name.title(), currency="USD")[0]
            subs[name] = subscription_create(tenant=tenant, plan_code="pro", actor="test", at=JAN)
    for name in subs:
        with time_machine.travel(at("2026-01-18T12:00:00"), tick=False):
            results = usage_record(
                principal=principal,
                events=[event(f"{name}-{i}", "2026-01-18T09:00:00Z", "50000", tenant=name) for i in range(3)],
            )
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
    with time_machine.travel(at("2026-01-20T00:00:00"), tick=False):
        subscription_cancel(tenant=subs["ended"].tenant, at_period_end=False, actor="test")
    return principal, subs


def refused(now: datetime, reason: str) -> None:
    with pytest.raises(Conflict, match=reason) as caught, time_machine.travel(now, tick=False):
        partition_detach(month=JAN, operator="ops:ann", now=now)
    assert caught.value.code == "partition_in_use"
    assert "usage_usageevent_y2026m01" in attached()


def close(now: datetime) -> None:
    with time_machine.travel(now, tick=False):
        invoices_close_due(now=now)


def test_a_month_is_detached_only_once_billing_will_never_read_it_again(january, settings):
    principal, subs = january
    may = at("2026-05-03T00:00:00")
    # still inside the late-usage window: an event of January could yet be accepted
    refused(at("2026-04-30T00:00:00"), "accepted until 2026-05-02")
    # `live`'s period runs on from January
    refused(may, "is still open")
    with time_machine.travel(at("2026-02-15T01:00:00"), tick=False):
        subscription_roll(subscription_id=subs["live"].pk)
    # both of January's paid periods closed, neither invoiced yet
    refused(may, "closed but not invoiced")
    close(at("2026-02-15T03:00:00"))
    assert Invoice.objects.filter(period__subscription=subs["ended"]).exists()
    # `live` is live: its next invoice re-prices its January period until 90 days and an
    # hour after that period's end have passed since its previous invoice
    refused(may, "may still be re-priced")
    with time_machine.travel(at("2026-05-20T00:00:00"), tick=False):
        subscription_roll(subscription_id=subs["live"].pk)
    close(at("2026-05-20T02:00:00"))
    usage_aggregate_all()
    rollups = list(UsageRollup.objects.order_by("id").values_list("tenant_id", "hour", "count", "sum"))
    invoices = list(Invoice.objects.order_by("id").values_list("id", "number", "total", "status"))
    january_events = UsageEvent.objects.filter(occurred_at__lt=at("2026-02-01T00:00:00")).count()
    assert january_events == 6

    now = at("2026-05-20T03:00:00")
    listed = {p.table: p for p in partitions_list(now=now)}
    assert listed["usage_usageevent_y2026m01"].detachable
    assert listed["usage_usageevent_y2026m01"].events == 6
    with time_machine.travel(now, tick=False):
        detached = partition_detach(month=JAN, operator="ops:ann", now=now)
    assert (detached.table, detached.events, detached.detached_by) == ("usage_usageevent_y2026m01", 6, "ops:ann")
    assert DetachedUsagePartition.objects.get().month == JAN
    assert "usage_usageevent_y2026m01" not in attached()
    assert UsageEvent.objects.filter(occurred_at__lt=at("2026-02-01T00:00:00")).count() == 0
    with connection.cursor() as cursor:  # the table stays, for the operator to archive
        cursor.execute("SELECT count(*) FROM usage_usageevent_y2026m01")
        assert cursor.fetchone()[0] == 6
    # the books are as they were: rollups and invoices untouched, and another close bills nothing more
    assert list(UsageRollup.objects.order_by("id").values_list("tenant_id", "hour", "count", "sum")) == rollups
    close(at("2026-05-20T04:00:00"))
    assert list(Invoice.objects.order_by("id").values_list("id", "number", "total", "status")) == invoices
    # the key of a detached event stays taken: the same key again (now, since January is
    # past the window) is a conflict, never a new event
    with time_machine.travel(now, tick=False):
        retry = usage_record(
            principal=principal,
            events=[{"tenant": "live", "metric": "ai_tokens", "quantity": "1", "idempotency_key": "live-1"}],
        )[0]
    assert retry.outcome is Outcome.REJECTED
    assert retry.error is not None
    assert retry.error.code == "idempotency_conflict"
    assert Subscription.objects.get(pk=subs["ended"].pk).status in ("canceled", "ended")
    # the detached table is the only copy of January's events until archived: still append-only
    for sql in (
        "UPDATE usage_usageevent_y2026m01 SET quantity = 0",
        "DELETE FROM usage_usageevent_y2026m01",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)
    # a window widened after the detach brings none of January back: its usage is refused,
    # and no close re-prices its periods without their events (which would credit them back)
    settings.LATE_USAGE_WINDOW_DAYS = 200
    with time_machine.travel(now, tick=False):
        late = usage_record(principal=principal, events=[event("late-jan", "2026-01-20T00:00:00Z", "9", "live")])[0]
    assert late.outcome is Outcome.REJECTED
    assert late.error is not None
    assert late.error.code == "occurred_at_too_old"
    close(at("2026-06-20T02:00:00"))
    assert not InvoiceLine.objects.filter(kind=InvoiceLine.Kind.LATE_USAGE).exists()
    settings.LATE_USAGE_WINDOW_DAYS = 90
    # until the operator drops the detached table, January's partition cannot be made again,
    # and the job says so instead of sending January's events to the default partition
    assert months_ahead(now=JAN) == -1
    with pytest.raises(PartitionsBlocked, match="cannot make usage_usageevent_y2026m01"):
        partitions_ensure(now=JAN)
    assert months_ahead(now=JAN) == -1
    assert {"usage_usageevent_y2026m02", "usage_usageevent_y2026m04"} <= attached()  # the others are there
    # one stray event of January in the default partition (a host's clock far behind) holds up
    # nothing else: later months are still made, the stray event stays, and the job says why
    with connection.cursor() as c:
        c.execute("INSERT INTO usage_usageevent SELECT * FROM usage_usageevent_y2026m01 ORDER BY id LIMIT 1")
    with pytest.raises(PartitionsBlocked):
        partitions_ensure(now=at("2031-07-10T00:00:00"))
    assert {"usage_usageevent_y2031m07", "usage_usageevent_y2031m10"} <= attached()
    assert default_partition_events() == 1
    with pytest.raises(Conflict, match="was detached already, on 2026-05-20 03:00 UTC by ops:ann"):
        partition_detach(month=JAN, operator="ops:bob", now=now)


def test_the_command_lists_ensures_and_detaches(january, capsys):
    with time_machine.travel(at("2026-03-10T00:00:00"), tick=False):
        call_command("usage_partitions", "list")
        out = capsys.readouterr().out
        assert "2026-01  usage_usageevent_y2026m01" in out
        assert "default" in out
        assert "accepted until 2026-05-02" in out
        with pytest.raises(CommandError, match="cannot be detached: events of this month are accepted"):
            call_command("usage_partitions", "detach", "2026-01")
        for bad in ("January", "0000-01", "2026-13"):
            with pytest.raises(CommandError, match="YYYY-MM"):
                call_command("usage_partitions", "detach", bad)
        with pytest.raises(CommandError, match="not a partition"):
            call_command("usage_partitions", "detach", "1999-01")
    with time_machine.travel(at("2031-03-10T00:00:00"), tick=False):
        new = "usage_usageevent_y2031m06" not in attached()  # unless an earlier run on this database made it
        call_command("usage_partitions", "ensure")
        out = capsys.readouterr().out
        assert ("made:" in out and "usage_usageevent_y2031m06" in out) if new else "every partition due" in out
        assert {"usage_usageevent_y2031m03", "usage_usageevent_y2031m06"} <= attached()  # March and three ahead
        call_command("usage_partitions", "ensure")
        assert "every partition due exists" in capsys.readouterr().out
    assert UsageEvent.objects.count() == 6
